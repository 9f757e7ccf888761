"""The section of `make bench-box`, from docs/bench/box.json. Memory in MiB."""

from __future__ import annotations

from typing import Any

from bench.sections.common import conditions, ok, table

HEADING = "## One box (512 MiB cgroup) (make bench-box)"
MiB = 2**20
ANON_TARGET = 480 * MiB
# the broker's peak in the second half of the load: at most this times the first half's
BROKER_GROWTH = 1.10
PROCESS_ROWS = [
    ("embedded broker (tansu)", ["broker"], ["broker"]),
    ("`up` (supervisor)", ["up"], ["up"]),
    ("worker(s)", ["worker all"], ["worker ingest", "worker transcribe", "worker embed"]),
    ("ingest's decoder child", ["decoder"], ["decoder"]),
]


STACK_RAN = "The multi-process stack took the same two inputs after the box."
STACK_SKIPPED = "The multi-process stack was not run (`--no-stack`)."


def mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value / MiB:.0f}"


def _wall(run: dict[str, Any] | None) -> str:
    if run is None or run["seconds"] is None:
        return "n/a"
    minutes, seconds = divmod(round(run["seconds"]), 60)
    return f"{minutes}:{seconds:02d} ({run['minutes'] * 60 / run['seconds']:.1f}x)"


def _media(box: dict[str, Any], stack: dict[str, Any] | None) -> list[str]:
    rows = []
    for key in ("long", "file"):
        ours, theirs = box["inputs"][key], stack["inputs"][key] if stack else None
        rows.append([ours["name"], ours["state"], _wall(ours),
                     theirs["state"] if theirs else "not run", _wall(theirs)])  # fmt: skip
    return table(["media", "box: state", "box: wall (audio x)", "stack: state",
                  "stack: wall (audio x)"], rows)  # fmt: skip


def _cgroup(s: dict[str, Any], box: dict[str, Any], limit: int) -> list[str]:
    anon = s["anon_peak"]
    rows = [
        ["limit", mib(limit)],
        ["`memory.max_usage_in_bytes` (the kernel's peak of usage: anon + page cache)",
         mib(box["max_usage"])],
        ["peak sampled usage", mib(s["usage_peak"])],
        ["**peak sampled anon (`total_rss`)**", f"**{mib(anon['anon'] if anon else None)}**"],
        ["peak sampled page cache (`total_cache`)", mib(s["cache_peak"])],
        ["peak sampled sum of the processes' RSS", mib(s["peak_sum"])],
        ["OOM kills (`oom_kill` before → after)", f"{box['oom_before']} → {box['oom_after']}"],
        ["`memory.failcnt` (charges the limit refused)", str(box["failcnt"])],
    ]  # fmt: skip
    lines = table(["the box's cgroup", "MiB"], rows)
    if anon:
        held = ", ".join(f"{k} {mib(v)}" for k, v in sorted(anon["rss"].items()) if v)
        lines += [
            "",
            f"At the anon peak ({anon['at'] / 60:.1f} min in) the processes held: {held}.",
        ]
    return lines


def _phases(s: dict[str, Any]) -> list[str]:
    rows = [[p["name"], f"{p['from_seconds'] / 60:.1f} min", mib(p["anon_median"]),
             mib(p["anon_peak"]), mib(p["worker_median"]), mib(p["worker_peak"]),
             mib(p["broker_at_end"])] for p in s["phases"]]  # fmt: skip
    return table(["phase (box)", "from", "anon: median", "anon: peak", "worker RSS: median",
                  "worker RSS: peak", "broker RSS at its end"], rows)  # fmt: skip


def _processes(box: dict[str, Any], stack: dict[str, Any] | None) -> list[str]:
    ours, theirs = box["sampled"], stack["sampled"] if stack else None
    rows = []
    for title, box_labels, stack_labels in PROCESS_ROWS:
        mine = " + ".join(mib(ours["peaks"].get(label)) for label in box_labels)
        other = "n/a"
        if theirs:
            named = [f"{x.removeprefix('worker ')} {mib(theirs['peaks'].get(x))}"
                     for x in stack_labels]  # fmt: skip
            other = (
                " / ".join(named) if len(named) > 1 else mib(theirs["peaks"].get(stack_labels[0]))
            )
        rows.append([title, mine, other])
    rows.append(["peak sampled sum of RSS", mib(ours["peak_sum"]),
                 mib(theirs["peak_sum"]) if theirs else "n/a"])  # fmt: skip
    for title, key in (("`submit FILE --wait` (the CLI, outside any cgroup)", "submit_peak"),
                       ("its decoder child", "decoder_peak")):  # fmt: skip
        rows.append([title, mib(box["inputs"][key]), mib(stack["inputs"][key]) if stack else "n/a"])
    return table(["process", "box (in the cgroup)", "multi-process stack"], rows)


def _broker(b: dict[str, Any]) -> tuple[list[str], list[str] | None]:
    """The broker under steady load, and its target row: its peak RSS over the second half of
    the run against the first half's."""
    rss = b["rss"]
    middle = rss[-1][0] / 2 if rss else 0
    first = max((r for at, r in rss if at < middle), default=0)
    second = max((r for at, r in rss if at >= middle), default=0)
    complete = b["published"] >= b["planned"] and not b["error"]
    lines = [
        f"Broker under steady load: a fresh `up --single-process` (not in the cgroup) on its "
        f"default recycle and drain marks; {b['published'] / 1e6:.0f} MB (of "
        f"{b['planned'] / 1e6:.0f} planned) of 100 KB messages published without pause to a "
        f"topic nothing consumes, while {b['media']} short media went through the pipeline one "
        f"after another ({b['not_indexed']} not indexed), so `up` never found it idle. Broker RSS"
        f" at start {mib(b['baseline'])}, peak in the first half of the run {mib(first)}, in the "
        f"second half {mib(second)}; drains {b['drains']}, recycles {b['recycles']}, broker pids "
        f"{b['pids']}, pieces sent again {b['send_errors']}."
        + (f" The load ended early: {b['error']}." if b["error"] else ""),
    ]
    if not first:
        return lines, None
    met = complete and b["recycles"] > 0 and second <= first * BROKER_GROWTH
    row = [f"broker RSS bounded under steady load: second half's peak within "
           f"{BROKER_GROWTH - 1:.0%} of the first's, recycled by draining",
           f"{mib(first)} → {mib(second)} MiB, {b['recycles']} recycles", ok(met)]  # fmt: skip
    return lines, row


def render(results: dict[str, Any]) -> str:
    s, f = results["settings"], results["figures"]
    box, stack, s_box = f["box"], f["stack"], f["box"]["sampled"]
    load = f["load_during"]
    during = f"mean {sum(load) / len(load):.1f}, max {max(load):.1f}" if load else "not sampled"
    anon = s_box["anon_peak"]["anon"] if s_box["anon_peak"] else 0
    oom = box["oom_after"] - box["oom_before"]
    states = [box["inputs"][k]["state"] for k in ("long", "file")]
    lines = [
        HEADING, "",
        f"Made by `{s['command']}`. {conditions(results)} 1-minute load average during the run: "
        f"{during}. Linux {s['kernel']}, cgroup {box['cgroup_version']}. The box: a memory "
        f"cgroup with a {mib(s['limit_bytes'])} MiB limit (swap limited alike), `streamscribe up "
        "--single-process` inside it. Both media went in at the same time: the long one by URL, "
        "the other as `streamscribe submit FILE --wait` run outside the cgroup. "
        f"{STACK_SKIPPED if s.get('no_stack') else STACK_RAN} Samples every "
        f"{s['sample_seconds']} s; per-process peaks are each process's own high-water mark.",
        "", *_media(box, stack), "", *_cgroup(s_box, box, s["limit_bytes"]), "",
        *_phases(s_box), "", *_processes(box, stack), "",
    ]  # fmt: skip
    targets = [
        ["both media indexed in the box", ", ".join(states), ok(states == ["indexed"] * 2)],
        [f"cgroup anon peak ≤ {mib(ANON_TARGET)} MiB", f"{mib(anon)} MiB",
         ok(anon <= ANON_TARGET)],
        ["OOM kills 0", str(oom), ok(oom == 0)],
    ]  # fmt: skip
    if f["broker"]:
        said, row = _broker(f["broker"])
        lines += [*said, ""]
        targets += [row] if row else []
    if box["soak"]:
        soak = box["soak"]
        marks = "; ".join(f"after {h:.2f} h: worker {mib(w)}, broker {mib(b)}"
                          for h, w, b in soak["marks"])  # fmt: skip
        lines += [f"Soak in the box: {soak['media']} media one after another ({soak['hours']:g} h"
                  f" of media, {soak['failed']} not indexed); RSS {marks}.", ""]  # fmt: skip
    if f["failures"]:
        lines += ["Failed: " + "; ".join(f["failures"]), ""]
    return "\n".join([*lines, *table(["target", "measured", "met"], targets), ""])
