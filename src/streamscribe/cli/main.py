"""The `streamscribe` command. Settings come from STREAMSCRIBE_* variables (see the README)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Coroutine
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from streamscribe.cli.tables import console, search_table, status_table
from streamscribe.common.errors import StreamscribeError
from streamscribe.common.settings import CommonSettings
from streamscribe.common.vocabulary import Format, Scope, SearchMode

if TYPE_CHECKING:
    from streamscribe.cli.client import ApiClient

# the CLI reports failures itself. Kafka's and FastStream's modules are imported only by the
# commands that use them: `search` and `status` start in a fraction of a second without them
logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
T = TypeVar("T")
S = TypeVar("S", bound=CommonSettings)

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
dlq_app = typer.Typer(no_args_is_help=True, help="Inspect and replay dead letters.")
app.add_typer(dlq_app, name="dlq")
keys_app = typer.Typer(no_args_is_help=True, help="API keys (scope admin; see the README).")
app.add_typer(keys_app, name="keys")
errors = Console(stderr=True)
INTERRUPTED = 130  # the shell's code for Ctrl-C
ApiOption = Annotated[
    str | None,
    typer.Option(
        "--api",
        help="URL of the HTTP API (embed's port); default: STREAMSCRIBE_API_URL, else the "
        "local embed service.",
    ),
]


class Service(StrEnum):
    ingest = "ingest"
    transcribe = "transcribe"
    embed = "embed"
    all = "all"  # every stage in one process, for one small box


def _fail(message: str, code: int = 1) -> typer.Exit:
    # a Text, not markup: messages quote yt-dlp ("[generic] ...") and URLs verbatim
    errors.print(Text.assemble(("error:", "red"), " ", message), highlight=False)
    return typer.Exit(code)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; turn the errors a user can act on into one line and an exit code, and
    Ctrl-C into a quiet exit."""
    import asyncio  # here: `search` and `status` start faster without it

    try:
        return asyncio.run(coro)
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        raise typer.Exit(INTERRUPTED) from exc
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
    import asyncio

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
        from streamscribe.api.settings import ApiSettings
        from streamscribe.cli.onebox import embed_with_api

        embed = _settings(ApiSettings)
        run(embed_with_api(embed), embed.embed, embed.log_level)
    else:
        _run_all()


def _run_all() -> None:
    from streamscribe.api.settings import ApiSettings
    from streamscribe.cli.onebox import create_app as onebox_app
    from streamscribe.common.service import run
    from streamscribe.ingest.settings import IngestSettings
    from streamscribe.transcribe.settings import TranscribeSettings

    ingest, embed = _settings(IngestSettings), _settings(ApiSettings)
    onebox = onebox_app(ingest, _settings(TranscribeSettings), embed)
    run(onebox, embed.embed, ingest.log_level)  # on embed's port: the API's address


@app.command()
def submit(
    source: Annotated[str, typer.Argument(help="A media URL or a local file.")],
    media_id: Annotated[str | None, typer.Option("--id", help="Name the media.")] = None,
    language: Annotated[str | None, typer.Option(help="Spoken language, e.g. en.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow progress until indexed or failed.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 3600,
    api: ApiOption = None,
) -> None:
    """Submit a URL (as a media.requested event) or a local file (chunked here)."""
    from streamscribe.ingest.settings import IngestSettings

    settings = _settings(IngestSettings)
    path = Path(source)
    if "://" not in source and not path.is_file():
        raise _fail(f"{source} is neither a URL nor a readable file", 2)
    client = _client(api) if wait else None
    code = _run(_submit(settings, source, path, media_id, language, client, timeout))
    raise typer.Exit(code)


async def _submit(
    settings: CommonSettings,
    source: str,
    path: Path,
    media_id: str | None,
    language: str | None,
    api: ApiClient | None,
    timeout: float,
) -> int:
    from streamscribe.cli.progress import follow, show_progress
    from streamscribe.cli.submit import submit_file, submit_url
    from streamscribe.common.kafka import ensure_topics
    from streamscribe.ingest.settings import IngestSettings

    assert isinstance(settings, IngestSettings)
    await ensure_topics(settings.kafka, settings.topics)
    if path.is_file():
        media_id, count, run = await submit_file(settings, path, media_id, language)
        errors.print(f"published {count} chunks of {path.name}")
    else:
        media_id, run = await submit_url(settings, source, media_id, language)
    print(media_id, flush=True)
    if api is None:
        return 0
    try:
        return await show_progress(follow(api, media_id, run), timeout, errors)
    finally:
        api.close()


def _client(option: str | None) -> ApiClient:
    """The HTTP API's client: `--api`, else STREAMSCRIBE_API_URL, else the local embed's port."""
    from streamscribe.cli.client import ApiClient, api_url
    from streamscribe.embed.settings import EmbedSettings

    embed = _settings(EmbedSettings)
    key = embed.api_key.get_secret_value() if embed.api_key else None
    return ApiClient(_ask(lambda: api_url(option, embed, embed.embed)), key=key)


def _ask(call: Callable[[], T]) -> T:
    """One call to the API: its refusal or absence becomes one line and exit 1."""
    try:
        return call()
    except StreamscribeError as exc:
        raise _fail(str(exc)) from exc
    except KeyboardInterrupt as exc:
        raise typer.Exit(INTERRUPTED) from exc


@app.command()
def status(
    media_id: Annotated[str | None, typer.Argument(help="One media; all when omitted.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    api: ApiOption = None,
) -> None:
    """Per-media state and chunks stored, from the ledger (the newest 1000 when no id)."""
    client = _client(api)
    try:
        if media_id is None:
            rows = _ask(client.recent)
        elif (one := _ask(lambda: client.media(media_id))) is None:
            raise _fail(f"no media {media_id}")
        else:
            rows = [one]
    finally:
        client.close()
    if as_json:
        print(json.dumps(rows[0] if media_id else rows, indent=2))
        return
    console().print(status_table(rows))


@app.command()
def search(
    query: str,
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="How many passages.")] = 5,
    mode: Annotated[
        SearchMode | None,
        typer.Option(help="hybrid (default: vector and keyword fused), vector or keyword."),
    ] = None,
    media: Annotated[str | None, typer.Option("--media", help="Only this media.")] = None,
    author: Annotated[
        str | None, typer.Option("--author", help="Only media whose author contains this.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only media published on or after YYYY-MM-DD.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Only media published on or before YYYY-MM-DD.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    api: ApiOption = None,
) -> None:
    """Best passages for a query, with their media (title, author, date, id), start and score;
    --json adds the source URL, end and the whole id."""
    filters = {"media": media, "author": author, "since": _day(since), "until": _day(until)}
    client = _client(api)
    try:
        found = _ask(lambda: client.search(query, k, mode, filters))
    finally:
        client.close()
    hits: list[dict[str, Any]] = found["hits"]
    if as_json:
        print(json.dumps(hits, indent=2))
    if found.get("index_empty"):
        raise _fail("nothing is indexed yet: submit media first (`streamscribe submit URL`)")
    if not hits:
        raise _fail(f"no passage matches {query!r}")
    if as_json:
        return
    out = console()
    out.print(search_table(hits, out.width))


def _day(value: str | None) -> str | None:
    """An ISO date checked here, so that a typo is one line, not the API's 422."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError as exc:
        raise _fail(f"{value!r} is not a date: YYYY-MM-DD", 2) from exc


@app.command()
def transcript(
    media_id: str,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = "txt",
    api: ApiOption = None,
) -> None:
    """Print the transcript of one indexed media (streamed, any length)."""
    from streamscribe.cli.client import ApiError

    client = _client(api)
    try:
        with client.transcript(media_id, fmt) as pieces:
            for piece in pieces:
                sys.stdout.write(piece)
    except ApiError as exc:
        hint = {
            404: " (streamscribe status lists them)",
            409: f" (see `streamscribe status {media_id}`)",
        }
        raise _fail(f"{exc}{hint.get(exc.status, '')}") from exc
    except KeyboardInterrupt as exc:
        raise typer.Exit(INTERRUPTED) from exc
    finally:
        client.close()


@app.command()
def forget(media_id: str, api: ApiOption = None) -> None:
    """Remove a media from the index: its passages, transcript and ledger record."""
    client = _client(api)
    if not _ask(lambda: client.forget(media_id)):
        raise _fail(f"no media {media_id} (streamscribe status lists them)")
    print(f"forgot {media_id}")


@keys_app.command("create")
def keys_create(
    name: str,
    scope: Annotated[
        Scope,
        typer.Option(
            help="read: search, status, transcripts; submit: and submit, forget; admin: all."
        ),
    ] = "read",
    api: ApiOption = None,
) -> None:
    """Create an API key and print it (once: only its hash is stored)."""
    created = _ask(lambda: _client(api).create_key(name, scope))
    errors.print(f"key {created['name']} (scope {created['scope']}); shown once, keep it:")
    print(created["key"])


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    api: ApiOption = None,
) -> None:
    """Every key with its scope and dates (never its secret)."""
    rows = _ask(_client(api).keys)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("name", "scope", "created", "revoked")
    for row in rows:
        table.add_row(row["name"], row["scope"], row["created_at"], row["revoked_at"] or "")
    console().print(table)


@keys_app.command("revoke")
def keys_revoke(name: str, api: ApiOption = None) -> None:
    """Revoke a key: its next request is refused."""
    if not _ask(lambda: _client(api).revoke_key(name)):
        raise _fail(f"no key {name} that is not revoked (streamscribe keys list)")
    print(f"revoked {name}")


TopicArgument = Annotated[str, typer.Argument(help="Origin topic, e.g. media.requested.")]


@dlq_app.command("list")
def dlq_list(
    topic: TopicArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Every dead letter of TOPIC with its stage, attempts and error."""
    from streamscribe.common.dead_letters import list_dead_letters

    letters = _run(list_dead_letters(_settings(CommonSettings), topic))
    if as_json:
        print(json.dumps([letter.as_dict() for letter in letters], indent=2))
        return
    table = Table("partition:offset", "stage", "attempts", "error")
    table.add_column("body", overflow="fold")
    for row in (letter.as_dict() for letter in letters):
        table.add_row(
            f"{row['partition']}:{row['offset']}", row["stage"], row["attempts"],
            escape(row["error"] or ""), escape(row["body"][:200]),
        )  # fmt: skip
    console().print(table)


@dlq_app.command("replay")
def dlq_replay(topic: TopicArgument) -> None:
    """Re-publish TOPIC's dead letters not replayed before, with fresh attempts."""
    from streamscribe.common.dead_letters import replay_dead_letters

    count = _run(replay_dead_letters(_settings(CommonSettings), topic))
    print(f"replayed {count} dead letters")
