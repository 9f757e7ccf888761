"""The `streamscribe` command. Settings come from STREAMSCRIBE_* variables (see the README)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Coroutine
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from streamscribe.common.errors import StreamscribeError
from streamscribe.common.kafka import ensure_topics
from streamscribe.common.settings import CommonSettings

if TYPE_CHECKING:
    from streamscribe.embed.settings import EmbedSettings

logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the CLI reports failures itself
T = TypeVar("T")
S = TypeVar("S", bound=CommonSettings)

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
dlq_app = typer.Typer(no_args_is_help=True, help="Inspect and replay dead letters.")
app.add_typer(dlq_app, name="dlq")
console = Console()
errors = Console(stderr=True)


class Service(StrEnum):
    ingest = "ingest"
    transcribe = "transcribe"
    embed = "embed"
    all = "all"  # every stage in one process, for one small box


class Format(StrEnum):
    txt = "txt"
    srt = "srt"
    vtt = "vtt"
    json = "json"


def _fail(message: str, code: int = 1) -> typer.Exit:
    errors.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; turn the errors a user can act on into one line and an exit code."""
    try:
        return asyncio.run(coro)
    except (StreamscribeError, LookupError, OSError) as exc:
        raise _fail(str(exc)) from exc
    except Exception as exc:
        if type(exc).__module__.startswith("aiokafka"):
            servers = CommonSettings().kafka.bootstrap_servers
            raise _fail(
                f"cannot use the Kafka broker at {servers} ({exc}); is the pipeline up "
                "(`streamscribe up`), or is STREAMSCRIBE_KAFKA__BOOTSTRAP_SERVERS right?"
            ) from exc
        raise


def _settings(cls: type[S]) -> S:
    try:
        return cls()
    except ValidationError as exc:
        raise _fail(f"invalid setting: {exc}", 2) from exc


@app.command()
def up(
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait for readiness.")] = 600,
    replicas: Annotated[
        int,
        typer.Option(
            min=1, max=16, help="Workers per service (replica r serves on its port + 10r)."
        ),
    ] = 1,
    single_process: Annotated[
        bool,
        typer.Option(
            "--single-process",
            help="All three stages in one process (one port: embed's), for a small host.",
        ),
    ] = False,
) -> None:
    """Start the pipeline: embedded broker if needed, topics, and the three services."""
    from streamscribe.cli.supervisor import Supervisor
    from streamscribe.embed.settings import EmbedSettings
    from streamscribe.ingest.settings import IngestSettings
    from streamscribe.transcribe.settings import TranscribeSettings

    index = _settings(EmbedSettings)
    sections = {
        "ingest": _settings(IngestSettings).ingest,
        "transcribe": _settings(TranscribeSettings).transcribe,
        "embed": index.embed,
    }
    if single_process:
        sections = {"all": sections["embed"]}
    supervisor = Supervisor(
        _settings(CommonSettings), sections, lambda line: print(line, flush=True), replicas, index
    )
    raise typer.Exit(asyncio.run(supervisor.run(ready_timeout)))


@app.command()
def worker(service: Service) -> None:
    """Run one service process (what `up` starts; run more to scale out)."""
    from streamscribe.common.service import run

    if service is Service.ingest:
        from streamscribe.ingest.app import create_app as ingest_app
        from streamscribe.ingest.settings import IngestSettings

        ingest = _settings(IngestSettings)
        run(ingest_app(ingest), ingest.ingest, ingest.log_level)
    elif service is Service.transcribe:
        from streamscribe.transcribe.app import create_app as transcribe_app
        from streamscribe.transcribe.settings import TranscribeSettings

        transcribe = _settings(TranscribeSettings)
        run(transcribe_app(transcribe), transcribe.transcribe, transcribe.log_level)
    elif service is Service.embed:
        from streamscribe.embed.app import create_app as embed_app
        from streamscribe.embed.settings import EmbedSettings

        embed = _settings(EmbedSettings)
        run(embed_app(embed), embed.embed, embed.log_level)
    else:
        _run_all()


def _run_all() -> None:
    from streamscribe.cli.onebox import create_app as onebox_app
    from streamscribe.common.service import run
    from streamscribe.embed.settings import EmbedSettings
    from streamscribe.ingest.settings import IngestSettings
    from streamscribe.transcribe.settings import TranscribeSettings

    ingest, embed = _settings(IngestSettings), _settings(EmbedSettings)
    onebox = onebox_app(ingest, _settings(TranscribeSettings), embed)
    run(onebox, embed.embed, ingest.log_level)  # on embed's port: the API's address


@app.command()
def submit(
    source: Annotated[str, typer.Argument(help="A media URL or a local file.")],
    media_id: Annotated[str | None, typer.Option("--id", help="Name the media.")] = None,
    language: Annotated[str | None, typer.Option(help="Spoken language, e.g. en.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow progress until indexed or failed.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 3600,
) -> None:
    """Submit a URL (as a media.requested event) or a local file (chunked here)."""
    from streamscribe.ingest.settings import IngestSettings

    settings = _settings(IngestSettings)
    path = Path(source)
    if "://" not in source and not path.is_file():
        raise _fail(f"{source} is neither a URL nor a readable file", 2)
    code = _run(_submit(settings, source, path, media_id, language, wait, timeout))
    raise typer.Exit(code)


async def _submit(
    settings: CommonSettings,
    source: str,
    path: Path,
    media_id: str | None,
    language: str | None,
    wait: bool,
    timeout: float,
) -> int:
    from streamscribe.cli.progress import follow, show_progress
    from streamscribe.cli.submit import submit_file, submit_url
    from streamscribe.embed.settings import EmbedSettings
    from streamscribe.embed.store.ledger import open_ledger
    from streamscribe.ingest.settings import IngestSettings

    assert isinstance(settings, IngestSettings)
    await ensure_topics(settings.kafka, settings.topics)
    if path.is_file():
        media_id, count, run = await submit_file(settings, path, media_id, language)
        errors.print(f"published {count} chunks of {path.name}")
    else:
        media_id, run = await submit_url(settings, source, media_id, language)
        _note_request(_settings(EmbedSettings), media_id, run, source)
    print(media_id, flush=True)
    if not wait:
        return 0
    ledger = open_ledger(_settings(EmbedSettings))
    try:
        return await show_progress(follow(ledger, media_id, run), timeout, errors)
    finally:
        ledger.close()


def _note_request(settings: EmbedSettings, media_id: str, run: str, url: str) -> None:
    """On the pipeline's own host, record the request in the ledger at once: the embedded
    broker forgets on a restart, and `up` resumes what the ledger holds as unfinished. Elsewhere
    (no database here) the embed stage records it when it reads the request."""
    from streamscribe.embed.store.ledger import open_ledger

    if settings.database_path.exists():
        ledger = open_ledger(settings)
        try:
            ledger.request(media_id, run, url)
        finally:
            ledger.close()


def _ledger_rows(media_id: str | None) -> list[dict[str, Any]]:
    from streamscribe.embed.settings import EmbedSettings
    from streamscribe.embed.store.ledger import open_ledger

    ledger = open_ledger(_settings(EmbedSettings))
    try:
        if media_id is None:
            return [record.as_dict() for record in ledger.recent()]
        record = ledger.get(media_id)
        return [record.as_dict()] if record else []
    finally:
        ledger.close()


@app.command()
def status(
    media_id: Annotated[str | None, typer.Argument(help="One media; all when omitted.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Per-media state and chunks stored, read from the ledger (the newest 1000 when no id)."""
    try:
        rows = _ledger_rows(media_id)
    except StreamscribeError as exc:
        raise _fail(str(exc)) from exc
    if media_id and not rows:
        raise _fail(f"no media {media_id}")
    if as_json:
        print(json.dumps(rows[0] if media_id else rows, indent=2))
        return
    table = Table("media", "state", "chunks (stored/total)", "source / reason")
    for row in rows:
        chunks = row["chunks"]
        failure = row["failure"]
        detail = f"{failure['reason']}: {failure['detail']}" if failure else ""
        table.add_row(
            row["media_id"],
            row["state"],
            f"{chunks['stored']}/{chunks['total'] or '?'}",
            escape(detail or (row["source_url"] or "")),
        )
    console.print(table)


class Mode(StrEnum):
    hybrid = "hybrid"
    vector = "vector"
    keyword = "keyword"


@app.command()
def search(
    query: str,
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="How many passages.")] = 5,
    mode: Annotated[
        Mode | None,
        typer.Option(help="hybrid (default: vector and keyword fused), vector or keyword."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Best passages for a query, with media id, source URL, start and end seconds, score."""
    from streamscribe.embed.search import search as search_index
    from streamscribe.embed.settings import EmbedSettings

    settings = _settings(EmbedSettings)
    try:
        hits = search_index(settings, query, k, mode.value if mode else settings.embed.search_mode)
    except StreamscribeError as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        print(json.dumps([hit.__dict__ for hit in hits], indent=2))
        return
    table = Table("score", "media", "start", "end", "text", "source")
    for hit in hits:
        table.add_row(
            f"{hit.score:.3f}",
            hit.media_id,
            f"{hit.start:.1f}",
            f"{hit.end:.1f}",
            escape(hit.text),
            hit.source_url,
        )
    console.print(table)


@app.command()
def transcript(
    media_id: str,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.txt,
) -> None:
    """Print the transcript of one indexed media (streamed, any length)."""
    from streamscribe.embed.settings import EmbedSettings
    from streamscribe.embed.store.ledger import open_ledger
    from streamscribe.embed.transcript_format import render

    try:
        ledger = open_ledger(_settings(EmbedSettings))
    except StreamscribeError as exc:
        raise _fail(str(exc)) from exc
    try:
        record = ledger.get(media_id)
        if record is None:
            raise _fail(f"no media {media_id} (streamscribe status lists them)")
        if record.state != "indexed":
            total = record.chunk_count or "?"
            raise _fail(
                f"{media_id} is {record.state}, {record.chunks_stored}/{total} chunks stored: "
                f"no whole transcript yet (see `streamscribe status {media_id}`)"
            )
        for block in render(ledger.segments(media_id), fmt.value):
            sys.stdout.write(block)
    finally:
        ledger.close()


TopicArgument = Annotated[str, typer.Argument(help="Origin topic, e.g. media.requested.")]


@dlq_app.command("list")
def dlq_list(
    topic: TopicArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Every dead letter of TOPIC with its stage, attempts and error."""
    from streamscribe.cli.dlq import list_dead_letters

    letters = _run(list_dead_letters(_settings(CommonSettings), topic))
    if as_json:
        print(json.dumps([letter.as_dict() for letter in letters], indent=2))
        return
    table = Table("partition:offset", "stage", "attempts", "error", "body")
    for row in (letter.as_dict() for letter in letters):
        table.add_row(
            f"{row['partition']}:{row['offset']}", row["stage"], row["attempts"], row["error"],
            row["body"][:80],
        )  # fmt: skip
    console.print(table)


@dlq_app.command("replay")
def dlq_replay(topic: TopicArgument) -> None:
    """Re-publish TOPIC's dead letters not replayed before, with fresh attempts."""
    from streamscribe.cli.dlq import replay_dead_letters

    count = _run(replay_dead_letters(_settings(CommonSettings), topic))
    print(f"replayed {count} dead letters")
