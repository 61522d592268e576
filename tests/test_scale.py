"""Corpora of millions of pairs, tested on small ones: streaming `nmt prepare` writes the bytes the
in-memory way writes; the SentencePiece sample is deterministic; memory-mapped splits give the same
batches; a killed prepare leaves nothing half-written; a bad line deep in a corpus is found as it streams."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nmt.data import (
    ParallelIds,
    collate,
    iter_line_blocks,
    iter_parallel,
    read_parallel,
    token_batches,
    write_ids,
)
from nmt.errors import DataError
from nmt.prepare import PrepareConfig, prepare
from nmt.textio import clean, clean_lines
from nmt.tokenizer import Tokenizer, train_bpe

pytestmark = pytest.mark.unit


def _config(corpus: Path, **extra) -> PrepareConfig:
    return PrepareConfig(
        src="en",
        tgt="fr",
        train=str(corpus / "train"),
        valid=str(corpus / "val"),
        tests=(str(corpus / "test"),),
        vocab_size=1000,
        **extra,
    )


def test_streaming_prepare_writes_what_the_in_memory_way_writes(sample_dir, tmp_path):
    """The reference is built whole in memory from the library's pieces, as nmt prepare did before it
    streamed: every sentence to SentencePiece, src then tgt; encode; filter; save."""
    cfg = _config(sample_dir, max_len=30, max_ratio=2.0, dedup=True)
    prepare(cfg, tmp_path / "out", threads=2)
    out = tmp_path / "out"

    train = read_parallel(sample_dir / "train", "en", "fr")
    proto = train_bpe(train.src + train.tgt, cfg.vocab_size)
    assert (out / "spm.model").read_bytes() == proto
    tok = Tokenizer(proto)
    src, tgt = tok.encode_batch(train.src), tok.encode_batch(train.tgt)
    seen, keep = set(), []
    for i, (s, t) in enumerate(zip(src, tgt)):
        long_, short = max(len(s), len(t)), min(len(s), len(t))
        if s and t and long_ <= 30 and long_ <= 2.0 * max(1, short) and (train.src[i], train.tgt[i]) not in seen:
            seen.add((train.src[i], train.tgt[i]))
            keep.append(i)
    assert 0 < len(keep) < len(train)  # the filters did something
    ParallelIds.from_lists([src[i] for i in keep], [tgt[i] for i in keep]).save(tmp_path / "ref.safetensors")
    assert (out / "train.ids.safetensors").read_bytes() == (tmp_path / "ref.safetensors").read_bytes()
    assert (out / "train.en").read_text(encoding="utf-8") == "".join(f"{train.src[i]}\n" for i in keep)
    for split in ("val", "test"):
        text = read_parallel(sample_dir / split, "en", "fr")
        name = "valid" if split == "val" else split
        ParallelIds.from_lists(tok.encode_batch(text.src), tok.encode_batch(text.tgt)).save(tmp_path / "r.st")
        assert (out / f"{name}.ids.safetensors").read_bytes() == (tmp_path / "r.st").read_bytes()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("n", [0, 1, 7, 500])
def test_ids_written_in_blocks_are_what_safetensors_writes(tmp_path, n):
    rng = np.random.default_rng(n)
    src = [rng.integers(0, 8000, rng.integers(0, 20)).tolist() for _ in range(n)]
    tgt = [rng.integers(0, 8000, rng.integers(0, 20)).tolist() for _ in range(n)]
    ids = ParallelIds.from_lists(src, tgt)
    ids.save(tmp_path / "a.st")
    ids.src_ids.astype("<i4").tofile(tmp_path / "s.raw")
    ids.tgt_ids.astype("<i4").tofile(tmp_path / "t.raw")
    write_ids(tmp_path / "b.st", tmp_path / "s.raw", ids.src_lens, tmp_path / "t.raw", ids.tgt_lens)
    assert (tmp_path / "a.st").read_bytes() == (tmp_path / "b.st").read_bytes()


def test_sampled_sentencepiece_is_deterministic(sample_dir, tmp_path):
    """1,971 pairs: 3,942 sentences for the joint model; a sample of 1,000 is the same twice, differs
    from all of them, and a sample at least as large as the text (the default here) is all of it: every
    output file, prepare.json included, is what --spm-sample 0 writes."""
    models = {}
    for name, sample in (("a", 1000), ("b", 1000), ("all", 0), ("big", 3942), ("default", None)):
        prepare(_config(sample_dir, **({} if sample is None else {"spm_sample": sample})), tmp_path / name)
        models[name] = (tmp_path / name / "spm.model").read_bytes()
    assert models["a"] == models["b"]
    assert models["a"] != models["all"]
    assert json.loads((tmp_path / "a" / "prepare.json").read_text())["settings"]["spm_sample"] == 1000
    for name in ("big", "default"):
        assert {p.name: p.read_bytes() for p in (tmp_path / name).iterdir()} == {
            p.name: p.read_bytes() for p in (tmp_path / "all").iterdir()
        }


def test_memory_mapped_split_gives_the_same_batches(prepared_sample):
    path = prepared_sample / "train.ids.safetensors"
    mapped, loaded = ParallelIds.load(path), ParallelIds.load(path, mmap=False)
    assert isinstance(mapped.src_ids, np.memmap) and not isinstance(loaded.src_ids, np.memmap)
    row = mapped.select(np.array([5])).tgt(0)  # read from the file, not a view of its mapped pages
    assert np.array_equal(row, loaded.tgt(5)) and not isinstance(row, np.memmap) and not isinstance(row.base, np.memmap)
    keep = np.flatnonzero(loaded.src_lens <= 12)  # a filter: an index, and the copy it replaces
    copied = ParallelIds.from_lists(
        [loaded.src(int(i)).tolist() for i in keep], [loaded.tgt(int(i)).tolist() for i in keep]
    )
    for data in (mapped, mapped.select(keep)):
        reference = loaded if data.rows is None else copied
        assert np.array_equal(data.src_lens, reference.src_lens) and np.array_equal(data.tgt_lens, reference.tgt_lens)
        batches = token_batches(data.src_lens, data.tgt_lens, 300, seed=3)
        assert [b.tolist() for b in batches] == [
            b.tolist() for b in token_batches(reference.src_lens, reference.tgt_lens, 300, seed=3)
        ]
        for index in batches[:20]:
            a, b = collate(data, index, 0, 2, 3), collate(reference, index, 0, 2, 3)
            assert all(
                np.array_equal(getattr(a, f).numpy(), getattr(b, f).numpy())
                for f in ("src", "src_len", "tgt_in", "tgt_out")
            )


def _big_corpus(folder: Path, n: int, bad_line: int | None = None) -> Path:
    """n pairs of varied sentences (plain text), with invalid UTF-8 on line `bad_line` of the French side."""
    folder.mkdir(parents=True, exist_ok=True)
    words = "the a cat dog house river garden small old new big walked saw under over near tree car road".split()
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(words), size=(n, 8))
    for lang, shift in (("en", 0), ("fr", 3)):
        lines = [" ".join(words[(w + shift) % len(words)] for w in row) + f" {i}" for i, row in enumerate(picks)]
        encoded = [line.encode() for line in lines]
        if lang == "fr" and bad_line:
            encoded[bad_line - 1] = b"\xff" + encoded[bad_line - 1]
        (folder / f"train.{lang}").write_bytes(b"\n".join(encoded) + b"\n")
        (folder / f"val.{lang}").write_text("\n".join(lines[:50]) + "\n", encoding="utf-8")
    return folder / "train"


@pytest.mark.system
def test_a_bad_line_deep_in_a_corpus_is_found_as_it_streams(tmp_path):
    n, bad = 300_000, 250_001
    train = _big_corpus(tmp_path / "c", n, bad_line=bad)
    pairs = iter_parallel((Path(f"{train}.en"), Path(f"{train}.fr")), "en", "fr")
    assert next(pairs)[0].endswith(" 0")  # lazily: the first pair comes before the bad line is read
    with pytest.raises(DataError, match=rf"train\.fr:{bad}: invalid UTF-8"):
        for _ in pairs:
            pass
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nmt_cli.main",
            "prepare",
            "--src",
            "en",
            "--tgt",
            "fr",
            "--train",
            str(train),
            "--valid",
            str(tmp_path / "c" / "val"),
            "--out",
            str(out),
            "--vocab-size",
            "300",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert f"train.fr:{bad}: invalid UTF-8" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


@pytest.mark.system
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_prepare_leaves_nothing_half_written(tmp_path, how):
    train = _big_corpus(tmp_path / "c", 200_000)
    out = tmp_path / "out"
    args = [
        sys.executable,
        "-m",
        "nmt_cli.main",
        "prepare",
        "--src",
        "en",
        "--tgt",
        "fr",
        "--train",
        str(train),
        "--valid",
        str(tmp_path / "c" / "val"),
        "--out",
        str(out),
        "--vocab-size",
        "300",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = tmp_path / f".out.tmp-{proc.pid}" / ".all.train.en"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (partial.is_file() and partial.stat().st_size > 1_000_000):
        time.sleep(0.01)  # kill it once it has written a part of its cleaned training text
    assert proc.poll() is None, "prepare ended before it could be killed"
    proc.send_signal(how)
    proc.wait(timeout=60)
    assert not out.exists()
    leftovers = list(tmp_path.glob(".out.tmp-*"))
    if how == signal.SIGTERM:
        assert proc.returncode == 130 and leftovers == []  # unwound: its temporary directory is gone
    else:
        assert proc.returncode == -signal.SIGKILL and len(leftovers) == 1  # killed outright: left behind
    rerun = subprocess.run(args, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert (out / "prepare.json").is_file() and list(tmp_path.glob(".out.*")) == []  # the rerun cleaned up


def test_cleaning_a_block_is_cleaning_each_line():
    """`clean_lines` (the fast way prepare cleans) equals `clean` line by line, around every code point."""
    points = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000 and c != 0x0A]  # a line holds no "\n"
    lines = [f"{c}\u0301 a{c}{c}b \u00a0{c} " for c in points] + ["", " ", "\t\x00 x \x85", "\u0301", "e\u0301\u0327"]
    assert clean_lines(lines) == [clean(line) for line in lines]


def _read_line_by_line(data: bytes) -> list[str]:
    """The reference `iter_lines`: split on b'\\n', one '\\r' before it dropped, each line decoded."""
    parts = data.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    return [(p[:-1] if p.endswith(b"\r") else p).decode("utf-8") for p in parts]


@pytest.mark.parametrize("seed", range(4))
def test_reading_in_blocks_is_reading_line_by_line(tmp_path, seed):
    rng = np.random.default_rng(seed)
    pieces = [b"a", b"bc ", b"\n", b"\r\n", b"\r", b"\xc3\xa9", b"\xe2\x80\xaf", b"\xf0\x9f\x98\x80", b" ", b"\t"]
    data = b"".join(pieces[i] for i in rng.integers(0, len(pieces), size=3000))
    path = tmp_path / "f"
    path.write_bytes(data)
    expected = _read_line_by_line(data)
    for block_bytes in (1, 7, 64, 1 << 20):
        assert [line for block in iter_line_blocks(path, block_bytes) for line in block] == expected
    # a bad byte, at any place, is reported at its line and column, however the blocks fall
    lines = data.split(b"\n")
    number = int(rng.integers(1, len(lines) + 1))
    text = lines[number - 1].decode("utf-8")  # the bad byte goes between two characters
    column = len(text[: int(rng.integers(0, len(text) + 1))].encode("utf-8"))
    lines[number - 1] = lines[number - 1][:column] + b"\xff" + lines[number - 1][column:]
    path.write_bytes(b"\n".join(lines))
    for block_bytes in (1, 7, 64, 1 << 20):
        with pytest.raises(DataError, match=rf"f:{number}: invalid UTF-8 \(byte 0xff at column {column + 1}\)"):
            list(iter_line_blocks(path, block_bytes))


@pytest.mark.parametrize("tsv", [False, True])
def test_cleaning_on_two_cores_writes_what_one_core_writes(sample_dir, tmp_path, monkeypatch, tsv):
    """Large corpora are cleaned by two worker processes, one side each: the same bytes, the same errors."""
    corpus = tmp_path / "c"
    corpus.mkdir()
    for split in ("train", "val", "test"):
        text = read_parallel(sample_dir / split, "en", "fr")
        if tsv:
            (corpus / f"{split}.tsv").write_text(
                "".join(f"{s}\t{t}\n" for s, t in zip(text.src, text.tgt)), encoding="utf-8"
            )
        else:
            for lang, side in (("en", text.src), ("fr", text.tgt)):
                (corpus / f"{split}.{lang}").write_text("".join(f"{s}\n" for s in side), encoding="utf-8")
    cfg = PrepareConfig(
        src="en",
        tgt="fr",
        train=str(corpus / ("train.tsv" if tsv else "train")),
        valid=str(corpus / ("val.tsv" if tsv else "val")),
        vocab_size=1000,
        dedup=True,
    )
    prepare(cfg, tmp_path / "one", threads=1)
    monkeypatch.setattr("nmt.prepare_clean.PARALLEL_BYTES", 0)
    prepare(cfg, tmp_path / "two", threads=2)
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == sorted(p.name for p in (tmp_path / "two").iterdir())
    for path in (tmp_path / "one").iterdir():
        if path.name != "prepare.json":  # it names the output's own files
            assert path.read_bytes() == (tmp_path / "two" / path.name).read_bytes(), path.name

    train = corpus / ("train.tsv" if tsv else "train.fr")
    good = train.read_bytes()
    lines = good.split(b"\n")
    lines[41] = lines[41].replace(b"\t", b" ") if tsv else b"\xff" + lines[41]
    train.write_bytes(b"\n".join(lines))
    expected = r"train\.tsv:42: expected 2 tab-separated fields" if tsv else r"train\.fr:42: invalid UTF-8"
    with pytest.raises(DataError, match=expected):
        prepare(cfg, tmp_path / "bad", threads=2)
    if not tsv:
        train.write_bytes(good + b"one more line\n")
        with pytest.raises(DataError, match=rf"train\.fr:{len(lines)}: misaligned corpus"):
            prepare(cfg, tmp_path / "bad", threads=2)
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad.*"))


@pytest.mark.system
def test_killing_prepare_kills_its_cleaning_workers(tmp_path):
    """A corpus this large is cleaned by two worker processes; SIGKILL to prepare takes them down too."""
    from nmt.prepare_clean import PARALLEL_BYTES

    train = _big_corpus(tmp_path / "c", 800_000)
    assert sum((tmp_path / "c" / f"train.{lang}").stat().st_size for lang in ("en", "fr")) > PARALLEL_BYTES
    args = [
        sys.executable,
        "-m",
        "nmt_cli.main",
        "prepare",
        "--src",
        "en",
        "--tgt",
        "fr",
        "--train",
        str(train),
        "--valid",
        str(tmp_path / "c" / "val"),
        "--out",
        str(tmp_path / "out"),
        "--vocab-size",
        "300",
        "--threads",
        "2",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def workers() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"clean_side_main" in cmdline and str(tmp_path).encode() in cmdline:
                found.append(int(entry.name))
        return found

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not workers():
        time.sleep(0.01)
    assert workers() and proc.poll() is None, "no cleaning workers seen while prepare ran"
    proc.kill()
    proc.wait(timeout=60)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and workers():
        time.sleep(0.05)
    assert workers() == []
