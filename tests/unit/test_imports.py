"""The module graph of streamscribe: no import cycles, and the CLI is a client of the services,
not a caller of their insides. Built from the source (ast), so it sees imports inside functions
and under TYPE_CHECKING too: a cycle there is still two modules that each need the other."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).parents[2]
SOURCES = [
    ROOT / "src",
    ROOT / "libs" / "common" / "src",
    *sorted((ROOT / "services").glob("*/src")),
]
SERVICES = (
    "streamscribe.ingest",
    "streamscribe.transcribe",
    "streamscribe.embed",
    "streamscribe.api",
)
CLIENT_FACING = {
    # the app factories `worker` and `up --single-process` start, and `make docs` documents
    "streamscribe.ingest.app",
    "streamscribe.transcribe.app",
    "streamscribe.embed.app",
    "streamscribe.api.app",
    # the settings the CLI reads to reach the services (ports, topics, data dir)
    "streamscribe.ingest.settings",
    "streamscribe.transcribe.settings",
    "streamscribe.embed.settings",
    "streamscribe.api.settings",
    # `submit FILE`: ingest's public chunk source
    "streamscribe.ingest.chunk_source",
    # `up` on the embedded broker: the ledger is what it resumes after a restart
    "streamscribe.embed.store.ledger",
}


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for source in SOURCES:
        for path in source.rglob("*.py"):
            parts = path.relative_to(source).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """The streamscribe modules `name` imports (a `from package import module` names the
    module, else the package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                ).strip(".")
            for alias in node.names:
                if f"{base}.{alias.name}" in known:
                    yield f"{base}.{alias.name}"
                elif base in known:
                    yield base


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: set(imports(name, path, known)) - {name} for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while (member := stack.pop()) != node:
                component.append(member)
            component.append(node)
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return components


def test_the_graph_sees_the_packages() -> None:
    edges = graph()
    assert "streamscribe.embed.handlers" in edges["streamscribe.embed.app"]
    assert "streamscribe.common.errors" in edges["streamscribe.common.events"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_the_cli_imports_only_the_services_client_facing_modules() -> None:
    edges = graph()
    reached = {
        (module, target)
        for module, targets in edges.items()
        if module.startswith("streamscribe.cli")
        for target in targets
        if target.startswith(SERVICES)
    }
    assert reached, "the CLI starts the services: it must import their app factories"
    outside = sorted(pair for pair in reached if pair[1] not in CLIENT_FACING)
    assert outside == []
    assert not [pair for pair in reached if pair[1].endswith(".handlers")]
