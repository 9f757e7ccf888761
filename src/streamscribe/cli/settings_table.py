"""Every setting of every service as a Markdown table: env var, default, meaning.

`python -m streamscribe.cli.settings_table [README.md]` prints the table, or writes it between
the README's markers; a test keeps the two in step."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from streamscribe.api.settings import ApiSettings
from streamscribe.common.settings import CommonSettings
from streamscribe.embed.settings import EmbedSettings
from streamscribe.ingest.settings import IngestSettings
from streamscribe.transcribe.settings import TranscribeSettings

PREFIX = "STREAMSCRIBE_"


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        return "" if isinstance(value, BaseModel) else repr(value)
    if field.default is PydanticUndefined or field.default is None:
        return ""
    return str(field.default)


def rows(model: type[BaseModel], path: str = "") -> Iterator[tuple[str, str, str]]:
    """(env var, default, meaning) for every leaf field, nested sections flattened with `__`."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        env = f"{path}{name.upper()}"
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from rows(annotation, f"{env}__")
        else:
            yield PREFIX + env, _default(field), (field.description or "").replace("|", "\\|")


def table() -> str:
    seen: dict[str, tuple[str, str]] = {}
    for model in (CommonSettings, IngestSettings, TranscribeSettings, EmbedSettings, ApiSettings):
        for env, default, meaning in rows(model):
            seen.setdefault(env, (default, meaning))
    lines = ["| env var | default | meaning |", "|---|---|---|"]
    lines += [f"| `{env}` | `{d}` | {m} |" if d else f"| `{env}` | | {m} |" for env, (d, m) in
              seen.items()]  # fmt: skip
    return "\n".join(lines)


START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


def write_into(path: Path) -> None:
    text = path.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    path.write_text(f"{head}{START}\n{table()}\n{END}{tail}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        write_into(Path(sys.argv[1]))
    else:
        print(table())
