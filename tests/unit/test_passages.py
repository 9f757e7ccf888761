"""Passages follow whisper segments; only short segments are merged, within a word budget."""

from __future__ import annotations

from streamscribe.common.events import Segment, Transcript
from streamscribe.embed.passages import Passage, passages_for


def words(n: int, word: str = "word") -> str:
    return " ".join([word] * n)


def transcript(*texts: str, seq: int = 3) -> Transcript:
    """One segment per text, two seconds each, from 100 s into the media."""
    segments = [
        Segment(start=100.0 + 2 * i, end=102.0 + 2 * i, text=text) for i, text in enumerate(texts)
    ]
    return Transcript(
        media_id="m-test",
        seq=seq,
        start=100.0,
        end=100.0 + 2 * len(texts),
        source_url="https://example.com/talk.mp3",
        language="en",
        segments=segments,
    )


def spans(passages: list[Passage]) -> list[tuple[float, float, int]]:
    return [(p.start, p.end, len(p.text.split())) for p in passages]


def test_each_long_enough_segment_is_a_passage_with_deterministic_ids() -> None:
    passages = passages_for(transcript(words(10), words(12)))

    assert passages == [
        Passage("m-test:000003:000", "m-test", 3, 0, 100.0, 102.0, words(10)),
        Passage("m-test:000003:001", "m-test", 3, 1, 102.0, 104.0, words(12)),
    ]
    assert passages_for(transcript(words(10), words(12))) == passages


def test_short_segment_joins_the_following_one() -> None:
    passages = passages_for(transcript(words(3, "short"), words(10)))

    assert spans(passages) == [(100.0, 104.0, 13)]
    assert passages[0].text.startswith("short short short word")


def test_consecutive_short_segments_gather_until_long_enough() -> None:
    passages = passages_for(transcript(words(3), words(3), words(3), words(10)))

    assert spans(passages) == [(100.0, 106.0, 9), (106.0, 108.0, 10)]


def test_short_segment_at_the_end_joins_the_previous_one() -> None:
    passages = passages_for(transcript(words(10), words(2)))

    assert spans(passages) == [(100.0, 104.0, 12)]


def test_merging_never_exceeds_max_words() -> None:
    passages = passages_for(transcript(words(5), words(58), words(4)), max_words=60)

    assert spans(passages) == [(100.0, 102.0, 5), (102.0, 104.0, 58), (104.0, 106.0, 4)]


def test_a_long_segment_is_never_split() -> None:
    passages = passages_for(transcript(words(90)), max_words=60)

    assert spans(passages) == [(100.0, 102.0, 90)]


def test_a_chunk_of_only_short_segments_is_one_passage() -> None:
    passages = passages_for(transcript(words(2), words(2)))

    assert spans(passages) == [(100.0, 104.0, 4)]


def test_blank_segments_are_dropped_and_whitespace_collapsed() -> None:
    passages = passages_for(transcript("  ", " one  two\tthree four\nfive six seven eight ", ""))

    assert [p.text for p in passages] == ["one two three four five six seven eight"]
    assert spans(passages) == [(102.0, 104.0, 8)]


def test_a_silent_chunk_has_no_passages() -> None:
    assert passages_for(transcript()) == []
    assert passages_for(transcript(" ", "\n")) == []
