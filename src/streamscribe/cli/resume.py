"""Resuming after the embedded broker lost its memory (a restart of `up`, a kill -9, a recycle).

The embedded broker keeps nothing across a restart, so the ledger is the record: every media it
holds as unfinished is requested again, as a new run, so it ends indexed or failed without a new
submit. A new run, not the old one: chunking may differ between two starts (chunk length follows
the memory found at start), and a run's chunks must all come from one chunking. A local file
cannot be fetched again by ingest (it never reads `file://`): it fails as `interrupted`, saying
to submit it again. With Apache Kafka nothing of this runs: the topics still hold the work.
"""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from streamscribe.common.delivery import publish_event
from streamscribe.common.events import MediaFailed, MediaRequested, Reason, new_run
from streamscribe.common.settings import CommonSettings
from streamscribe.embed.store.ledger import Ledger

INTERRUPTED = "the pipeline restarted while this local file was in progress; submit the file again"


async def resume_unfinished(broker: KafkaBroker, settings: CommonSettings, ledger: Ledger) -> int:
    """Request every unfinished media again; return how many were resumed or failed."""
    unfinished = ledger.unfinished()
    for record in unfinished:
        url = record.source_url or ""
        if url.startswith(("http://", "https://")):
            run = new_run()
            # the new run keeps the callback (its outcome is still owed to the submitter) and
            # what is known of the media (shown while it runs again; the probe fills gaps)
            ledger.request(record.media_id, run, url, record.callback_url, metadata=record.metadata)
            event = MediaRequested(
                url=url,
                media_id=record.media_id,
                run=run,
                callback_url=record.callback_url,
                metadata=record.metadata,
            )
            await publish_event(broker, settings.topics.requested, event, record.media_id.encode())
        else:
            failed = MediaFailed(
                media_id=record.media_id, stage="up", reason=Reason.INTERRUPTED,
                detail=INTERRUPTED, source_url=record.source_url, run=record.run,
            )  # fmt: skip
            ledger.fail(record.media_id, record.run, _failure(failed), record.source_url)
            await publish_event(broker, settings.topics.failed, failed, record.media_id.encode())
    return len(unfinished)


def _failure(event: MediaFailed) -> dict[str, str]:
    return {"stage": event.stage, "reason": event.reason.value, "detail": event.detail}
