"""Word times kept from the transcriber to the export and search: in the event (optional, so
older events still parse), in the ledger, and as the start of a search hit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from streamscribe.common.events import Segment, Transcript, TranscriptSource, Word, parse_event
from streamscribe.embed.passages import passages_for
from streamscribe.embed.store.index import Index, first_match
from streamscribe.embed.store.ledger import Ledger
from streamscribe.embed.store.sqlite import SQLiteVectors
from streamscribe.transcribe.transcriber import _sentences
from tests.factories import first_ledger, transcript_chunk

WORDS = [
    Word(start=31.0, end=31.4, word="The", probability=0.9),
    Word(start=31.4, end=31.9, word="council", probability=0.8),
    Word(start=32.5, end=33.0, word="approved", probability=0.95),
    Word(start=33.0, end=33.2, word="the", probability=0.99),
    Word(start=33.2, end=33.9, word="budgets.", probability=0.7),
]
SEGMENT = Segment(start=31.0, end=33.9, text="The council approved the budgets.", words=WORDS)


def test_an_event_without_words_or_source_still_parses() -> None:
    old = transcript_chunk(0, 1).model_dump(mode="json", exclude={"source"})
    for segment in old["segments"]:
        segment.pop("words", None)
    parsed = parse_event(Transcript, json.dumps(old).encode())
    assert parsed.source is TranscriptSource.ASR
    assert parsed.segments[0].words is None


def test_aligned_words_come_out_absolute_rounded_and_increasing() -> None:
    raw = [
        {"word": " Good", "start": 0.10000001, "end": 0.4, "probability": 0.91},
        {"word": " morning.", "start": 0.35, "end": 0.9, "probability": 0.88},  # overlaps
    ]
    [segment] = _sentences(raw, offset=57.8090625)
    assert segment.words is not None
    assert [(w.start, w.end, w.word) for w in segment.words] == [
        (57.909, 58.209, "Good"),
        (58.209, 58.709, "morning."),
    ]
    assert (segment.start, segment.end) == (57.909, 58.709)


def test_the_ledger_keeps_words_and_the_transcript_source(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "db")
    chunk = transcript_chunk(1, 2).model_copy(
        update={"segments": [SEGMENT], "source": TranscriptSource.CAPTIONS, "language": "en"}
    )
    ledger.store_chunk(chunk, passages=1)
    assert ledger.chunk_segments("m1", 1) == [SEGMENT]
    record = ledger.get("m1")
    assert record is not None
    assert (record.source, record.language) == ("captions", "en")
    assert record.as_dict()["source"] == "captions"


def test_an_older_ledger_gains_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "db"
    first_ledger(path, "old")
    record = Ledger(path).get("old")
    assert record is not None
    assert (record.state, record.language, record.source) == ("requested", None, None)


def test_a_hit_starts_at_its_first_matching_word(tmp_path: Path) -> None:
    assert first_match([SEGMENT], 31.0, 33.9, "what about the budget") == 33.2
    assert first_match([SEGMENT], 31.0, 33.9, "Council approval") == 31.4
    assert first_match([SEGMENT], 31.0, 33.9, "weather") is None
    assert first_match([SEGMENT], 33.0, 33.9, "council") is None  # outside the passage

    index = Index(Ledger(tmp_path / "db"), SQLiteVectors(tmp_path / "db"))
    chunk = transcript_chunk(1, 2).model_copy(update={"segments": [SEGMENT]})
    passages = passages_for(chunk)
    index.store(chunk, passages, np.ones((len(passages), 4), dtype=np.float32) / 2)
    [hit] = index.search("approved budget", None, 5, "keyword")
    assert (hit.start, hit.end) == (32.5, 33.9)  # the passage starts at 31.0
    assert (hit.language, hit.source) == ("en", "asr")
    index.close()
