"""A line as the pieces the model translates: sentences with their spacing, an over-long sentence cut at
punctuation then between words then between subword pieces (never losing text, every piece within the limit),
translations joined back in the line's spacing, and word offsets that index the joined line's words."""

from __future__ import annotations

import pytest
from helpers import SAMPLE

from nmt.segments import fit, join, sentences, spacing, word_offsets
from nmt.textio import clean
from nmt.tokenizer import Tokenizer, train_bpe

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    """A small BPE model of the sample's English (a second to train)."""
    lines = (SAMPLE / "train.en").read_text(encoding="utf-8").splitlines()[:2000]
    return Tokenizer(train_bpe([clean(line) for line in lines], 400))


def test_sentences_keep_the_spacing_around_them():
    line = "  Hello!  How was your day?\tFine. "
    lead, found = sentences(line, "sentence", "en")
    assert [core for core, _ in found] == ["Hello!", "How was your day?", "Fine."]
    assert lead + "".join(core + after for core, after in found) == line
    assert sentences(line, "none", "en") == ("", [(line.strip(), "")])
    assert sentences(" \t ", "sentence", "en") == ("", []) == sentences("", "none", None)


def test_line_breaks_in_the_spacing_become_spaces():
    assert spacing("\u2028 \x0b\t") == "   \t"
    lead, found = sentences("\u2028One.\u2028Two.\x85", "sentence", "en")
    assert lead == " " and [after for _, after in found] == [" ", " "]


def pieces_of(text: str, limit: int, tok: Tokenizer):
    ids = tok.encode(clean(text))
    return ids, fit(text, ids, limit, tok)


@pytest.mark.parametrize(
    "text",
    [
        "; ".join(f"clause {i} of the sentence, with a comma and more words" for i in range(60)),
        " ".join(["word"] * 5000),
        "a, " * 400 + "end",
        "x" * 3000,  # one word: cut between its pieces
        "我们" * 500 + "，" + "他们" * 500,  # byte fallback: never cut inside a character
    ],
)
def test_fit_loses_nothing_and_keeps_every_piece_within_the_limit(text, tok):
    limit = 40
    ids, pieces = pieces_of(text, limit, tok)
    assert len(pieces) > 1 and all(0 < len(p.ids) <= limit for p in pieces)
    assert "".join(p.source + p.after for p in pieces) == text  # the sources are the text itself, in order
    assert all(tok.decode(p.ids) == clean(p.source) for p in pieces)  # and each piece's ids spell its source
    if " " not in text and "，" not in text:  # one word: cut between its pieces, the ids are the word's
        assert [i for p in pieces for i in p.ids] == ids


def test_fit_cuts_at_the_strongest_punctuation_first(tok):
    clauses = [", ".join(f"part {i}.{j} goes here" for j in range(3)) for i in range(20)]
    text = "; ".join(clauses)
    one = len(tok.encode(clean(clauses[0] + ";")))
    _, pieces = pieces_of(text, 3 * one, tok)
    # every cut is after a semicolon (whole clauses packed together while they fit), none after a comma
    assert all(p.source.endswith(";") for p in pieces[:-1])
    assert all(1 <= p.source.count(";") <= 3 for p in pieces[:-1]) and pieces[0].source.count(";") == 3


def test_fit_leaves_a_short_text_whole(tok):
    ids, pieces = pieces_of("Hello, world; how are you?", 50, tok)
    assert [(p.source, p.ids, p.after) for p in pieces] == [("Hello, world; how are you?", ids, "")]


def test_a_long_word_is_cut_at_a_word_start_when_there_is_one(tok):
    from nmt.segments import _between_pieces

    ids = tok.encode(clean("abc " * 30))
    cut = _between_pieces(ids, 25, tok)
    assert [i for piece in cut for i in piece.ids] == ids and all(len(piece.ids) <= 25 for piece in cut)
    assert all(tok.to_pieces(piece.ids)[0].startswith("▁") for piece in cut)


def test_join_keeps_the_spacing_and_puts_a_space_between_sentences_written_with_spaces():
    assert join("  ", ["Bonjour !", "Ça va ?"], ["\t", " "]) == ("  Bonjour !\tÇa va ? ", ["\t", " "])
    # Japanese sentences have no space between them; their French translations need one, Chinese ones do not
    assert join("", ["Bonjour.", "Au revoir."], ["", ""])[0] == "Bonjour. Au revoir."
    assert join("", ["你好。", "再见。"], ["", ""])[0] == "你好。再见。"
    # an empty translation takes no spacing after it, so that no double space appears
    assert join("", ["A.", "", "C."], [" ", " ", ""])[0] == "A. C."


@pytest.mark.parametrize(
    ("texts", "afters"),
    [
        (["One two.", "Three.", "Four five six."], [" ", "  ", ""]),
        (["glued", "word", "then more"], ["", "", " "]),
        (["", "after an empty one", "x"], [" ", " ", ""]),
    ],
)
def test_word_offsets_index_the_joined_words(texts, afters):
    """Each text's offset is the index of the joined line's word that holds its first character."""
    joined = "".join(t + a for t, a in zip(texts, afters))
    starts = [sum(len(t) + len(a) for t, a in zip(texts[:i], afters[:i])) for i in range(len(texts))]
    for text, start, offset in zip(texts, starts, word_offsets(texts, afters)):
        if text:
            assert offset == len(joined[: start + 1].split()) - 1
