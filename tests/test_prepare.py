"""`nmt prepare` end to end through the CLI: outputs, determinism, reuse, and errors for bad input."""

from __future__ import annotations

import gzip
import json

import pytest
from nmt_cli.main import app
from typer.testing import CliRunner

from nmt.data import ParallelIds, read_lines
from nmt.tokenizer import SPECIAL, Tokenizer

pytestmark = pytest.mark.integration

runner = CliRunner()


def run_prepare(tmp_path, train, valid, out="out", *extra, vocab_size="400"):
    args = [
        "prepare",
        "--src",
        "en",
        "--tgt",
        "fr",
        "--train",
        str(train),
        "--valid",
        str(valid),
        "--out",
        str(tmp_path / out),
        "--vocab-size",
        vocab_size,  # one value: nmt refuses a flag given twice
        *extra,
    ]
    return runner.invoke(app, args)


@pytest.fixture
def tiny_corpus(tmp_path, sample_dir):
    """The first 300 training pairs of the sample, as a prefix corpus in tmp_path."""
    for lang in ("en", "fr"):
        lines = (sample_dir / f"train.{lang}").read_text(encoding="utf-8").splitlines()[:300]
        (tmp_path / f"c.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (tmp_path / f"v.{lang}").write_text("\n".join(lines[:20]) + "\n", encoding="utf-8")
    return tmp_path / "c", tmp_path / "v"


def test_every_encoded_sample_line_decodes_to_the_cleaned_text(prepared_sample):
    tok = Tokenizer.load(prepared_sample / "spm.model")
    summary = json.loads((prepared_sample / "prepare.json").read_text())
    for split in ("train", "valid", "test"):
        ids = ParallelIds.load(prepared_sample / f"{split}.ids.safetensors")
        src, tgt = read_lines(prepared_sample / f"{split}.en"), read_lines(prepared_sample / f"{split}.fr")
        assert (
            len(ids) == len(src) == len(tgt) == summary["splits"][split].get("kept", summary["splits"][split]["lines"])
        )
        for i in range(len(ids)):
            assert tok.decode(ids.src(i).tolist()) == src[i]
            assert tok.decode(ids.tgt(i).tolist()) == tgt[i]
    assert summary["splits"]["train"]["lines"] >= 1500


def test_special_ids_are_fixed(prepared_sample):
    sp = Tokenizer.load(prepared_sample / "spm.model").sp
    ids = [SPECIAL.pad, SPECIAL.unk, SPECIAL.bos, SPECIAL.eos]
    assert [sp.id_to_piece(i) for i in ids] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert [sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()] == ids
    assert json.loads((prepared_sample / "prepare.json").read_text())["special_ids"] == {
        "pad": SPECIAL.pad,
        "unk": SPECIAL.unk,
        "bos": SPECIAL.bos,
        "eos": SPECIAL.eos,
    }


def test_prepare_is_deterministic_and_reuses_its_output(tmp_path, tiny_corpus):
    train, valid = tiny_corpus
    first = run_prepare(tmp_path, train, valid, "a")
    assert first.exit_code == 0, first.output
    assert run_prepare(tmp_path, train, valid, "b").exit_code == 0
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert "spm.model" in files and "prepare.json" in files and "train.ids.safetensors" in files
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    again = run_prepare(tmp_path, train, valid, "a")
    assert again.exit_code == 0 and "reusing" in again.output
    forced = run_prepare(tmp_path, train, valid, "a", "--force")
    assert forced.exit_code == 0 and "reusing" not in forced.output
    other = run_prepare(tmp_path, train, valid, "a", vocab_size="500")
    assert other.exit_code == 2 and "already holds a different preparation" in other.output


def test_separate_vocabularies(tmp_path, tiny_corpus):
    result = run_prepare(tmp_path, *tiny_corpus, "sep", "--separate")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "sep" / "spm.en.model").exists() and (tmp_path / "sep" / "spm.fr.model").exists()


def test_filters_are_counted(tmp_path):
    (tmp_path / "c.en").write_text("a b c\n\nsame\nsame\n" + "w " * 60 + "\n", encoding="utf-8")
    (tmp_path / "c.fr").write_text("x y z\nvide\npareil\npareil\nmot\n", encoding="utf-8")
    result = run_prepare(
        tmp_path, tmp_path / "c", tmp_path / "c", "out", "--dedup", "--max-ratio", "5", vocab_size="300"
    )
    assert result.exit_code == 0, result.output
    train = json.loads((tmp_path / "out" / "prepare.json").read_text())["splits"]["train"]
    assert train["filtered"] == {"empty": 1, "too_long": 0, "ratio": 1, "duplicate": 1}
    assert train["kept"] == 2
    assert json.loads((tmp_path / "out" / "prepare.json").read_text())["splits"]["valid"]["lines"] == 5


@pytest.mark.parametrize(
    "case, expected",
    [
        ("misaligned", r"c\.fr:\d+: misaligned corpus"),
        ("empty", r"c\.en: file is empty"),
        ("utf8", r"c\.en:2: invalid UTF-8"),
        ("missing", r"c\.fr: no such file"),
        ("tsv", r"c\.tsv:2: expected 2 tab-separated fields"),
        ("gzip", r"c\.en\.gz: not a valid gzip file"),
        ("binary", r"c\.en: not a text file \(the first [\d,]+ lines all hold NUL bytes or invalid UTF-8\)"),
        ("gzip-named-plain", r"c\.en: not a text file"),
        ("binary-in-gzip", r"c\.en\.gz: not a text file"),
    ],
)
def test_bad_inputs_exit_2_with_one_line_and_write_nothing(tmp_path, tiny_corpus, case, expected):
    import re

    train, valid = tiny_corpus
    bad = tmp_path / "bad"
    bad.mkdir()
    good_en = (tmp_path / "c.en").read_bytes()
    good_fr = (tmp_path / "c.fr").read_bytes()
    if case == "misaligned":
        (bad / "c.en").write_bytes(good_en)
        (bad / "c.fr").write_bytes(good_fr + b"one more\n")
    elif case == "empty":
        (bad / "c.en").write_bytes(b"")
        (bad / "c.fr").write_bytes(good_fr)
    elif case == "utf8":
        (bad / "c.en").write_bytes(b"fine\ncaf\xe9\n")
        (bad / "c.fr").write_bytes(b"bien\ncafe\n")
    elif case == "missing":
        (bad / "c.en").write_bytes(good_en)
    elif case == "gzip":  # counted before it is read: the count must say what is wrong too
        (bad / "c.en.gz").write_bytes(b"\x00")
        (bad / "c.fr").write_bytes(good_fr)
    elif case in ("binary", "gzip-named-plain", "binary-in-gzip"):  # what is not text: no latin-1 hint
        binary = bytes(range(256)) * 40
        name, data = {
            "binary": ("c.en", binary),
            "gzip-named-plain": ("c.en", gzip.compress(good_en)),
            "binary-in-gzip": ("c.en.gz", gzip.compress(binary)),
        }[case]
        (bad / name).write_bytes(data)
        (bad / "c.fr").write_bytes(good_fr)
    train_arg = bad / "c"
    if case == "tsv":
        (bad / "c.tsv").write_bytes(b"Hello.\tBonjour.\nBroken line\n")
        train_arg = bad / "c.tsv"
    result = run_prepare(tmp_path, train_arg, valid, "out")
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert re.search(expected, lines[0]), lines[0]
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_vocab_too_large_is_a_clear_error(tmp_path, tiny_corpus):
    result = run_prepare(tmp_path, *tiny_corpus, "out", vocab_size="50000")
    assert result.exit_code == 2
    assert "too large for this training text; choose at most" in result.output
    assert not (tmp_path / "out").exists()


def test_version_and_help():
    assert runner.invoke(app, ["--version"]).output.startswith("nmt ")
    help_text = runner.invoke(app, ["prepare", "--help"]).output
    for option in ("--vocab-size", "--joint", "--max-len", "--force", "--test"):
        assert option in help_text
