"""Keyword queries and reciprocal-rank fusion, the two pieces of hybrid search."""

from __future__ import annotations

from streamscribe.embed.store.base import Hit
from streamscribe.embed.store.fusion import fuse
from streamscribe.embed.store.sqlite import fts_query


def hit(name: str, score: float = 0.0) -> Hit:
    return Hit(name, "m", "u", 0.0, 1.0, name, score)


def test_a_keyword_query_quotes_each_word_and_drops_stop_words() -> None:
    assert fts_query('What did the council say about "budget" 2025?') == (
        '"council" OR "say" OR "budget" OR "2025"'
    )


def test_a_query_of_stop_words_only_keeps_them() -> None:
    assert fts_query("the of the") == '"the" OR "of"'


def test_fts_syntax_in_a_query_is_only_words() -> None:
    assert fts_query('NEAR(x* y) -z "') == '"near" OR "x" OR "y" OR "z"'
    assert fts_query("?!") == ""


def test_fusion_ranks_a_hit_in_both_lists_above_one_first_in_only_one() -> None:
    vector = [hit("a"), hit("b"), hit("c")]
    keyword = [hit("c"), hit("d")]
    fused = fuse([vector, keyword], 10)
    # c: 3rd and 1st; a: 1st only; b and d: 2nd in one list each (a tie, broken by id)
    assert [h.id for h in fused] == ["c", "a", "b", "d"]
    assert fused[0].score == 1 / 63 + 1 / 61
    assert [h.id for h in fuse([vector, keyword], 2)] == ["c", "a"]
