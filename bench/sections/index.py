"""The section of `make bench-index`, from docs/bench/index.json."""

from __future__ import annotations

import statistics
from typing import Any

from bench.sections.common import MB, conditions, mb, ms, ok, table

HEADING = "## Index (SQLite + sqlite-vec + FTS5) (make bench-index)"
TARGET_EMBED_RSS = 200 * MB
TARGET_SEARCH_P50 = 0.200
TARGET_HTTP_P50 = 0.2  # issue 21: GET /search through HTTP at 200 000 passages
TARGET_STATUS_RATIO = 1.5


def _rows(s: dict[str, Any], f: dict[str, Any]) -> list[list[str]]:
    w, passages = f["worker"], f["shape"]["counts"]["passages"]
    status, k = f["status"], s["k"]
    ratio = status["1000"]["cli_seconds"] / status["1"]["cli_seconds"]
    rows = [
        [f"a. embed worker peak RSS, {s['media_minutes']}-min media ({w['passages']:,} passages)"
         f" into {passages:,}", f"{mb(w['peak'])} MB (at ready: {mb(w['peak_ready'])} MB)",
         f"≤ {mb(TARGET_EMBED_RSS)} MB", ok(w["peak"] <= TARGET_EMBED_RSS)],
        ["a. time to index the media (publish to ledger `indexed`)",
         f"{w['index_seconds']:.1f} s", "", ""],
    ]  # fmt: skip
    for mode in ("vector", "keyword", "hybrid"):
        lat = f["search"]["latency"][mode]
        rows.append([f"b. `Index.search` {mode}, k={k}, p50 / p95",
                     f"{ms(lat['p50'])} / {ms(lat['p95'])}", f"p50 ≤ {ms(TARGET_SEARCH_P50)}",
                     ok(lat["p50"] <= TARGET_SEARCH_P50)])  # fmt: skip
    naive = f["naive"]
    if "http_search_seconds" in f:  # older results lack it
        http = f["http_search_seconds"]
        p50 = statistics.median(http)
        rows.append([f"b. `GET /search` hybrid through HTTP, k={k}, p50 / p95 of {len(http)}",
                     f"{ms(p50)} / {ms(statistics.quantiles(http, n=20)[-1])}",
                     f"p50 ≤ {ms(TARGET_HTTP_P50)}", ok(p50 <= TARGET_HTTP_P50)])  # fmt: skip
    rows += [
        ['b. `streamscribe search "…" --json` (hybrid), whole process asking the HTTP API '
         "(its model loaded), median of 5",
         f"{ms(f['cli_search_seconds'])} (peak {mb(f['cli_search_peak_bytes'])} MB)", "", ""],
        [f"b. naive: numpy brute-force cosine top-{k} over the same vectors in memory, p50 / p95",
         f"{ms(naive['p50'])} / {ms(naive['p95'])} (peak {mb(naive['peak'])} MB, "
         f"{f['naive_load_seconds']:.1f} s to load)", "", ""],
        ["c. `streamscribe status MEDIA --json`, median of 7, 1 media in the ledger",
         ms(status["1"]["cli_seconds"]), "", ""],
        [f"c. the same, 1 000 media ({s['ledger_chunks']} chunks each)",
         f"{ms(status['1000']['cli_seconds'])} ({ratio:.2f}x)", f"≤ {TARGET_STATUS_RATIO}x",
         ok(ratio <= TARGET_STATUS_RATIO)],
        ["c. `Ledger.get` in-process, median, 1 / 1 000 media",
         f"{status['1']['get_seconds'] * 1e6:.0f} µs / {status['1000']['get_seconds'] * 1e6:.0f}"
         " µs", "", ""],
        [f"d. peak RSS: open the index, {s['queries']} vector + {s['queries']} hybrid searches "
         f"at {passages:,}", f"{mb(f['search_peak']['peak'])} MB", "", ""],
    ]  # fmt: skip
    return rows


def render(results: dict[str, Any]) -> str:
    s, f = results["settings"], results["figures"]
    shape, lat = f["shape"], f["search"]["latency"]
    passages = shape["counts"]["passages"]
    matched = statistics.median(f["search"]["matched"]) if f["search"]["matched"] else 0
    return "\n".join(
        [
            HEADING,
            "",
            f"Made by `{s['command']}`. {conditions(results)} The database was pre-filled with "
            f"{passages:,} passages of {shape['media']:,} media "
            f"({shape['passages'] // shape['chunk_passages']:,} chunks): generated English "
            f"sentences of 15-40 words and random unit vectors of {s['dimension']} floats, "
            "written through `SQLiteVectors.upsert` and `Ledger.store_chunk` "
            f"({shape['bytes'] / MB:,.0f} MB on disk, {shape['seconds']:.0f} s to write). "
            f"Queries: {s['query_source']}; each mode is warmed by one search first, the OS page "
            "cache is warm.",
            "",
            *table(["measure", "figure", "target", "met"], _rows(s, f)),
            "",
            "Notes, from the same run:",
            "",
            f"- Hybrid is a vector and a keyword search of {s['candidates']} candidates each, "
            f"fused: p50 {ms(lat['hybrid']['p50'])}, against {ms(lat['vector']['p50'])} + "
            f"{ms(lat['keyword']['p50'])} for the two apart.",
            f"- A keyword query matches a median of {matched:,.0f} of the {passages:,} passages "
            "(any of its words other than stop words may match), and BM25 scores every match "
            f"before the top {s['candidates']} are kept.",
            f"- sqlite-vec searches exactly (every vector, every query): "
            f"{ms(lat['vector']['p50'])} against {ms(f['naive']['p50'])} for numpy over the same "
            f"vectors held in memory, which costs {mb(f['naive']['peak'])} MB of RSS where the "
            f"index costs {mb(f['search_peak']['peak'])} MB.",
            "- The CLI's `search` and `status` are whole processes: `python -c 'import "
            f"streamscribe.cli.main'` alone takes {ms(f['cli_import_seconds'])} (median of 7).",
            "",
        ]
    )
