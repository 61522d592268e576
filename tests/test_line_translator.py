"""The text side every engine shares, with a fake engine that "translates" a piece into its own ids: every
sentence of every line in one search, the line's spacing kept, empty lines empty, split "none" the same as one
search of the whole line, alignments that index the joined line's words, n-best lists joined piece by piece,
and 5,000-token lines translated whole, never cut."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from helpers import SAMPLE

from nmt.config import DecodeConfig
from nmt.hypotheses import Hypothesis, normalise
from nmt.line_translator import LineTranslator, Translation
from nmt.textio import clean
from nmt.tokenizer import Tokenizer, train_bpe

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    lines = (SAMPLE / "train.en").read_text(encoding="utf-8").splitlines()[:2000]
    return Tokenizer(train_bpe([clean(line) for line in lines], 400))


class Echo(LineTranslator):
    """A piece's translation is its own ids (the k-th of the n-best drops its last k ids), scored -1 an id;
    its alignment pairs word i with word i. Every call of `search_ids` is kept."""

    can_align = True

    def __init__(self, tok: Tokenizer, config: DecodeConfig, max_src_tokens: int = 100, align: bool = False):
        self.src_tok = self.tgt_tok = tok
        self.config, self.max_src_tokens, self.align = config, max_src_tokens, align
        self.calls: list[list[list[int]]] = []

    def with_config(self, align: bool | None = None, **changes: Any) -> Echo:
        return Echo(self.src_tok, replace(self.config, **changes), self.max_src_tokens, bool(align))

    def search_ids(self, ids: list[list[int]]) -> list[list[Hypothesis]]:
        self.calls.append([list(seq) for seq in ids])
        out = []
        for seq in ids:
            kept = [seq[: len(seq) - k] for k in range(min(self.config.nbest, len(seq)))]
            out.append([Hypothesis(k, -float(len(k) + 1) * 0.5, -float(len(k) + 1)) for k in kept])
        return out

    def alignment(self, src_ids: list[int], tokens: list[int]) -> str:
        words = sum(1 for i, p in enumerate(self.src_tok.to_pieces(src_ids)) if i == 0 or p.startswith("▁"))
        return " ".join(f"{i}-{i}" for i in range(words))


def old_translate_batch(engine: LineTranslator, lines: list[str]) -> list[Translation]:
    """What translate_batch did before sentences (issue 29), for lines the model takes whole."""
    ids = engine.src_tok.encode_batch([clean(line) for line in lines])
    out = []
    for src_ids, found in zip(ids, engine.search_ids(ids)):
        if not found:
            out.append(Translation("", 0.0, [("", 0.0, 0.0)], alignment="" if engine.align else None))
            continue
        texts = [" ".join(t.split()) for t in engine.tgt_tok.decode_batch([h.tokens for h in found])]
        pieces = tuple(engine.tgt_tok.to_pieces(found[0].tokens))
        alignment = engine.alignment(src_ids, found[0].tokens) if engine.align else None
        nbest = [(t, h.score, h.log_prob) for t, h in zip(texts, found)]
        out.append(Translation(texts[0], found[0].score, nbest, pieces, alignment))
    return out


LINES = [
    "Hello! How was your day? I hope the meeting went well.",
    "",
    "   \t ",
    "One sentence without a final stop",
    "  Two  spaces\tinside.  And a tab after.\t",
    "Mr. Smith arrived at 3 p.m. on Monday. He left on 5.5.2026, late.",
    "\x00\x07",
]


def test_one_search_holds_every_sentence_of_every_line(tok):
    engine = Echo(tok, DecodeConfig(beam_size=1))
    engine.translate_batch(LINES)
    assert len(engine.calls) == 1
    searched = [tok.decode(ids) for ids in engine.calls[0]]
    assert searched[:3] == ["Hello!", "How was your day?", "I hope the meeting went well."]
    assert "One sentence without a final stop" in searched and "He left on 5.5.2026, late." in searched
    assert len(searched) == 3 + 1 + 2 + 2  # no empty line, no line of control characters, searched


def test_the_line_spacing_is_kept_and_empty_lines_stay_empty(tok):
    found = Echo(tok, DecodeConfig(beam_size=1)).translate_batch(LINES)
    # the echo's translation of a sentence is the sentence, cleaned: so the line comes back as it was
    for line, t in zip(LINES, found):
        if line.strip(" \t\x00\x07"):
            assert t.text == line.replace("Two  spaces\tinside", "Two spaces inside")  # inside a sentence: cleaned
    assert [t.text for t in found[1:3]] == ["", ""] and found[6].text == "" and found[1].sentences == ()
    assert [s.source for s in found[0].sentences] == ["Hello!", "How was your day?", "I hope the meeting went well."]
    assert len(found[3].sentences) == 1


def test_split_none_is_the_translation_of_the_whole_line_as_before(tok):
    for config in (DecodeConfig(beam_size=1, split="none"), DecodeConfig(beam_size=3, nbest=3, split="none")):
        for align in (False, True):
            engine = Echo(tok, config, align=align and config.nbest == 1)
            new = engine.translate_batch(LINES)
            old = old_translate_batch(engine, LINES)
            assert [replace(t, sentences=()) for t in new] == old
            assert len(engine.calls[0]) == 4  # one a line with something to translate


def test_the_alignment_indexes_the_joined_line_words(tok):
    engine = Echo(tok, DecodeConfig(beam_size=1), align=True)
    lines = ["Hello there! How was your day? I hope the meeting went well.", "日本語の文です。次の文です。"]
    for line, t in zip(lines, engine.translate_batch(lines)):
        assert t.alignment
        pairs = [tuple(map(int, pair.split("-"))) for pair in t.alignment.split()]
        src, tgt = line.split(), t.text.split()
        # the echo aligns each word with itself: the shifted pairs must name the same word on both sides
        assert all(src[i] == tgt[j] for i, j in pairs)
        assert sorted({i for i, _ in pairs}) == list(range(len(src)))  # every source word, once


def test_nbest_joins_each_sentences_kth_best_falling_back_to_its_last(tok):
    engine = Echo(tok, DecodeConfig(beam_size=4, nbest=4))
    [t] = engine.translate_batch(["Hi! How was your day?"])
    first, second = [s.source for s in t.sentences]
    one, two = engine.calls[0]
    assert len(t.nbest) == max(min(4, len(one)), min(4, len(two)))
    for k, (text, score, log_prob) in enumerate(t.nbest):
        a, b = one[: len(one) - min(k, len(one) - 1)], two[: len(two) - min(k, len(two) - 1)]
        assert text == f"{tok.decode(a)} {tok.decode(b)}"
        assert log_prob == -(len(a) + 1) - (len(b) + 1)
        assert score == pytest.approx(normalise(log_prob, len(a) + len(b) + 2))
    assert (t.text, t.score) == t.nbest[0][:2] and t.tokens == tuple(tok.to_pieces(one + two))


@pytest.mark.parametrize("split", ["sentence", "none"])
@pytest.mark.parametrize(
    "line",
    [
        " ".join(["word"] * 5000),
        "; ".join(f"a clause that goes on, and on, number {i}" for i in range(400)) + ".",
        "x" * 5000,
    ],
)
def test_a_5000_token_line_is_translated_whole(tok, line, split):
    engine = Echo(tok, DecodeConfig(beam_size=1, split=split), max_src_tokens=100)
    warned: list[str] = []
    [t] = engine.translate_batch([line], warned.append)
    searched = engine.calls[0]
    assert len(tok.encode(clean(line))) >= 5000 and len(searched) > 1
    assert all(0 < len(ids) <= 100 for ids in searched)  # every piece reached the search, within the limit
    assert all(s.text for s in t.sentences) and len(t.sentences) == len(searched)  # and gave output
    assert "".join(t.text.split()) == "".join(line.split())  # nothing cut: the echo gives the whole line back
    assert len(warned) == 1 and f"translated in {len(searched)} parts" in warned[0] and warned[0].startswith("line 1")
    assert t.warnings == (warned[0].removeprefix("line 1: "),)


def test_encode_still_cuts_for_callers_that_need_one_sequence_a_line(tok):
    engine = Echo(tok, DecodeConfig(beam_size=1), max_src_tokens=10)
    warned: list[str] = []
    [ids] = engine.encode([" ".join(["word"] * 50)], warned.append)
    assert len(ids) == 10 and "using its first 10" in warned[0]
