"""Reading parallel text: cleaning, aligned reading, and a clear error for every bad input."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from nmt.data import ParallelIds, collate, read_lines, read_parallel, token_batches
from nmt.errors import DataError
from nmt.textio import clean
from nmt.tokenizer import SPECIAL

pytestmark = pytest.mark.unit

P, B, E = SPECIAL.pad, SPECIAL.bos, SPECIAL.eos
FIRST_WORD = max(SPECIAL.pad, SPECIAL.unk, SPECIAL.bos, SPECIAL.eos) + 1  # ids from here on are words


def write(path, text: str | bytes) -> None:
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)


def test_clean_normalises_nfc_and_whitespace():
    decomposed = "Comment s'est passe\u0301e ta journe\u0301e ?"
    assert clean(f"  {decomposed}\t \u00a0 ") == "Comment s'est passée ta journée ?"
    assert clean("a\x00b\x1b c") == "ab c"
    assert clean("   ") == ""


def test_reads_prefix_pairs_plain_and_gzip(tmp_path):
    write(tmp_path / "c.en", "Hello.\r\nHow was your day?\n")
    (tmp_path / "c.fr.gz").write_bytes(gzip.compress("Bonjour.\nComment s'est passée ta journée ?".encode()))
    text = read_parallel(tmp_path / "c", "en", "fr")
    assert text.src == ["Hello.", "How was your day?"]
    assert text.tgt == ["Bonjour.", "Comment s'est passée ta journée ?"]


def test_unicode_line_separators_do_not_split_lines(tmp_path):
    write(tmp_path / "c.en", "one\u2028still one\x0cand one\nsecond\n")
    write(tmp_path / "c.fr", "un\ndeux\n")
    assert len(read_parallel(tmp_path / "c", "en", "fr")) == 2


def test_reads_tsv(tmp_path):
    write(tmp_path / "c.tsv", "Hello.\tBonjour.\nThanks!\tMerci !\n")
    text = read_parallel(tmp_path / "c.tsv", "en", "fr")
    assert text.tgt == ["Bonjour.", "Merci !"]


@pytest.mark.parametrize(
    "files, message",
    [
        ({"c.en": "a\nb\nc\n", "c.fr": "x\ny\n"}, r"c\.en:3: misaligned corpus: .*c\.en has 3 lines but .*c\.fr has 2"),
        ({"c.en": "", "c.fr": "x\n"}, r"c\.en: file is empty"),
        ({"c.en": "a\n", "c.fr": b"ok\ncaf\xe9\n"}, r"c\.fr:2: invalid UTF-8 \(byte 0xe9 at column 4\); re-encode"),
        ({"c.en": "a\n"}, r"c\.fr: no such file \(nor c\.fr\.gz\)"),
        ({"c.en": "a\n", "c.fr.gz": b"not gzip"}, r"c\.fr\.gz: not a valid gzip file"),
    ],
)
def test_bad_prefix_corpora_raise_clear_errors(tmp_path, files, message):
    for name, content in files.items():
        write(tmp_path / name, content)
    with pytest.raises(DataError, match=message):
        read_parallel(tmp_path / "c", "en", "fr")


def test_tsv_line_without_two_fields(tmp_path):
    write(tmp_path / "c.tsv", "Hello.\tBonjour.\nno tab here\n")
    with pytest.raises(DataError, match=r"c\.tsv:2: expected 2 tab-separated fields \(en, fr\), found 1"):
        read_parallel(tmp_path / "c.tsv", "en", "fr")


def test_read_lines_final_line_without_newline(tmp_path):
    write(tmp_path / "f", "a\nb")
    assert read_lines(tmp_path / "f") == ["a", "b"]


def test_token_batches_cover_every_sentence_once_within_budget():
    rng = np.random.default_rng(0)
    src_lens, tgt_lens = rng.integers(1, 40, 500), rng.integers(1, 40, 500)
    batches = token_batches(src_lens, tgt_lens, batch_tokens=256, seed=3)
    seen = np.sort(np.concatenate(batches))
    assert np.array_equal(seen, np.arange(500))
    for b in batches:
        assert len(b) == 1 or len(b) * (np.maximum(src_lens[b], tgt_lens[b]) + 1).max() <= 256
    assert [b.tolist() for b in batches] == [b.tolist() for b in token_batches(src_lens, tgt_lens, 256, seed=3)]
    assert [b.tolist() for b in batches] != [b.tolist() for b in token_batches(src_lens, tgt_lens, 256, seed=4)]


def test_oversized_sentence_gets_its_own_batch():
    batches = token_batches(np.array([3, 100, 4]), np.array([3, 90, 5]), batch_tokens=50, seed=None)
    assert sorted(len(b) for b in batches) == [1, 2]


def test_collate_adds_bos_eos_and_pads():
    w = [FIRST_WORD + i for i in range(7)]
    ids = ParallelIds.from_lists([[w[0], w[1]], [w[2]]], [[w[3]], [w[4], w[5], w[6]]])
    batch = collate(ids, np.array([0, 1]), pad_id=P, bos_id=B, eos_id=E)
    assert batch.src.tolist() == [[w[0], w[1], E], [w[2], E, P]]
    assert batch.src_len.tolist() == [3, 2]
    assert batch.tgt_in.tolist() == [[B, w[3], P, P], [B, w[4], w[5], w[6]]]
    assert batch.tgt_out.tolist() == [[w[3], E, P, P], [w[4], w[5], w[6], E]]
    assert batch.n_tokens == 6


def test_collate_of_random_batches_row_by_row():
    """collate gathers the whole batch at once; each row must still be its own sentence, in the
    order of `index`, with empty sentences (translation's empty targets) and a single row."""
    rng = np.random.default_rng(5)
    src = [rng.integers(FIRST_WORD, 50, rng.integers(1, 9)).tolist() for _ in range(40)]
    tgt = [rng.integers(FIRST_WORD, 50, rng.integers(0, 9)).tolist() for _ in range(40)]
    for data, tgt_of in (
        (ParallelIds.from_lists(src, tgt), tgt),
        (ParallelIds.from_lists(src, [[] for _ in src]), None),
    ):
        for index in (rng.permutation(40)[:13], np.array([7])):
            batch = collate(data, index, pad_id=P, bos_id=B, eos_id=E)
            for row, i in enumerate(index):
                s, t = src[i], tgt_of[i] if tgt_of else []
                pad_s, pad_t = batch.src.size(1) - len(s) - 1, batch.tgt_in.size(1) - len(t) - 1
                assert batch.src[row].tolist() == s + [E] + [P] * pad_s
                assert batch.tgt_in[row].tolist() == [B] + t + [P] * pad_t
                assert batch.tgt_out[row].tolist() == t + [E] + [P] * pad_t
            assert batch.index.tolist() == index.tolist()
            assert batch.n_tokens == sum(len(tgt_of[i]) + 1 if tgt_of else 1 for i in index)


def test_ids_round_trip_through_safetensors(tmp_path):
    ids = ParallelIds.from_lists([[1, 2, 3], [], [4]], [[5], [6, 7], []])
    ids.save(tmp_path / "x.safetensors")
    back = ParallelIds.load(tmp_path / "x.safetensors")
    assert [back.src(i).tolist() for i in range(3)] == [[1, 2, 3], [], [4]]
    assert [back.tgt(i).tolist() for i in range(3)] == [[5], [6, 7], []]


def test_training_data_leaves_long_pairs_out_and_replays_each_epoch(prepared_sample):
    from nmt.data import TrainingData

    path = prepared_sample / "train.ids.safetensors"
    every = TrainingData(path, 300, seed=1, max_src_len=10_000, max_tgt_len=10_000)
    short = TrainingData(path, 300, seed=1, max_src_len=12, max_tgt_len=14)
    assert every.skipped_long == 0 and 0 < short.skipped_long < len(every)
    assert len(short) + short.skipped_long == len(every)
    assert (short.pairs.src_lens <= 12).all() and (short.pairs.tgt_lens <= 14).all()
    for data in (every, short):
        first, again, second = data.epoch(0), data.epoch(0), data.epoch(1)
        assert [b.tolist() for b in first] == [b.tolist() for b in again]  # what resuming mid-epoch relies on
        assert [b.tolist() for b in first] != [b.tolist() for b in second]
        assert sorted(i for b in first for i in b.tolist()) == list(range(len(data)))  # each pair once an epoch
    batch = short.batch(short.epoch(0)[0], 0, 2, 3)
    assert batch.src.shape[1] <= 13 and batch.tgt_in.shape[1] <= 15  # + EOS / + BOS
