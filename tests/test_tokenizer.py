"""Tests for nmt/tokenizer.py: SentencePiece with its own ids (nmt's fixed specials) and through a vocabulary map
(Marian's vocab.json over a source and a target SentencePiece model): round trips, unknown pieces, special ids,
and the one-line errors of a damaged vocabulary."""

from __future__ import annotations

import pytest
from helpers import marian_spm, marian_vocab, sample_lines

from nmt.errors import CheckpointError
from nmt.tokenizer import SPECIAL, SpecialIds, Tokenizer, train_bpe

pytestmark = pytest.mark.unit

EN, FR = sample_lines("en"), sample_lines("fr")


@pytest.fixture(scope="module")
def marian() -> tuple[bytes, bytes, dict[str, int]]:
    source, target = marian_spm(EN), marian_spm(FR)
    return source, target, marian_vocab(source, target)


def test_nmts_own_vocabularies_keep_the_fixed_special_ids():
    tok = Tokenizer(train_bpe(EN + FR, 400))
    assert tok.specials == SPECIAL == SpecialIds(pad=0, unk=1, bos=2, eos=3)
    assert tok.vocab is None
    assert tok.decode(tok.encode(EN[0])) == EN[0]


def test_a_vocabulary_map_gives_marians_ids_and_special_ids(marian):
    source, target, vocab = marian
    src, tgt = Tokenizer(source, "source.spm", vocab=vocab), Tokenizer(target, "target.spm", vocab=vocab)
    assert len(src) == len(tgt) == len(vocab)
    # Marian: </s> 0, <unk> 1, <pad> last; the decoder starts from <pad>
    assert src.specials == tgt.specials == SpecialIds(pad=len(vocab) - 1, unk=1, bos=len(vocab) - 1, eos=0)
    assert src.pieces() == sorted(vocab, key=vocab.__getitem__)
    for line in EN[:50]:
        ids = src.encode(line)
        assert ids == [vocab.get(p, 1) for p in src.sp.encode(line, out_type=str)]
        assert src.to_pieces(ids) == src.sp.encode(line, out_type=str)
    for line in FR[:50]:  # the target side decodes what it encodes
        assert tgt.decode(tgt.encode(line)) == line
    assert tgt.encode_batch(FR[:20], threads=2) == [tgt.encode(line) for line in FR[:20]]
    assert tgt.decode_batch([tgt.encode(line) for line in FR[:20]]) == FR[:20]


def test_pieces_the_vocabulary_lacks_are_unk_and_specials_are_dropped_when_decoding(marian):
    source, target, vocab = marian
    text = "le chat ☃ mange"  # ☃ is in neither model: SentencePiece gives it as a piece, the vocabulary as <unk>
    pieces = Tokenizer(target, vocab=vocab).sp.encode(text, out_type=str)
    assert "☃" in pieces and pieces[0] == "▁le"
    smaller = {p: i for p, i in vocab.items() if p != "▁le"}  # and a piece SentencePiece knows, left out
    smaller = {p: n for n, p in enumerate(sorted(smaller, key=smaller.__getitem__))}  # ids 0..n-1 again
    tok = Tokenizer(target, vocab=smaller)
    ids = tok.encode(text)
    assert [i for i, p in zip(ids, pieces) if p in ("☃", "▁le")] == [tok.specials.unk] * 2
    assert ids.count(tok.specials.unk) == sum(p not in smaller for p in pieces)
    full = Tokenizer(target, vocab=vocab)
    s = full.specials
    assert full.decode([s.pad, *full.encode("le chien"), s.unk, s.eos, s.pad]) == "le chien"


def test_a_leading_language_code_is_one_piece_as_marian_makes_it(marian):
    source, _, vocab = marian
    vocab = {**vocab, ">>fra<<": len(vocab)}
    tok = Tokenizer(source, vocab=vocab)
    assert tok.encode(">>fra<< the cat") == [vocab[">>fra<<"], *tok.encode("the cat")]
    assert tok.encode(">>deu<< the cat")[0] == tok.specials.unk


@pytest.mark.parametrize(
    "damage, says",
    [
        (lambda v: {**v, "extra": len(v) + 3}, "not 0.."),
        (lambda v: {p: i for p, i in v.items() if p != "<pad>"}, "no <pad>"),
        (lambda v: {**v, "<unk>": "1"}, "not a vocabulary"),
    ],
)
def test_a_damaged_vocabulary_is_one_line_naming_it(marian, damage, says):
    source, _, vocab = marian
    with pytest.raises(CheckpointError, match=says) as e:
        Tokenizer(source, "source.spm", vocab=damage(vocab), vocab_source="vocab.json")
    assert str(e.value).startswith("vocab.json: ") and "\n" not in str(e.value)


def test_without_a_vocabulary_a_model_with_other_special_ids_is_refused(marian):
    with pytest.raises(CheckpointError, match="special ids"):
        Tokenizer(marian[0], "source.spm")
