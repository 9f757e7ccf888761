"""Every setting of every service as a Markdown table: env var, default, meaning.

`python -m streamscribe.cli.settings_table` prints what the README's settings table holds; a test
keeps the two in step."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

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
    for model in (CommonSettings, IngestSettings, TranscribeSettings, EmbedSettings):
        for env, default, meaning in rows(model):
            seen.setdefault(env, (default, meaning))
    lines = ["| env var | default | meaning |", "|---|---|---|"]
    lines += [f"| `{env}` | `{d}` | {m} |" if d else f"| `{env}` | | {m} |" for env, (d, m) in
              seen.items()]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
