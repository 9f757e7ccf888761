"""What every section says the same way: the run's conditions, numbers, verdicts."""

from __future__ import annotations

from typing import Any

MB = 1_000_000


def conditions(results: dict[str, Any]) -> str:
    """Date, commit, machine and load of a run, as one sentence."""
    m = results["machine"]
    changed = {
        True: " with uncommitted changes",
        False: "",
        None: " (uncommitted changes not recorded)",  # results written before the field
    }[results.get("uncommitted_changes")]
    return (
        f"Run on {results['date'][:10]} at commit `{results['commit'][:10]}`{changed}: "
        f"{m['cores']} cores "
        f"({m['cpu']}), {m['ram_bytes'] / 2**30:.0f} GiB RAM, no GPU; 1-minute load average "
        f"{results['load_before']:.2f} before, {results['load_after']:.2f} after."
    )


def mb(value: float) -> str:
    return f"{value / MB:.0f}"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def ok(passed: bool) -> str:
    return "✅" if passed else "❌"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
