"""Hostile input, generated: `nmt translate` never crashes and writes exactly one line per input line,
whatever the bytes (arbitrary Unicode, control characters, lone surrogates and other invalid UTF-8,
`\\r\\n` and lone `\\r`, extremely long lines, runs of empty lines); `nmt prepare` turns any malformed
corpus into a one-line error, never a traceback."""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nmt_cli.main import app
from typer.testing import CliRunner

from nmt.data import read_parallel
from nmt.errors import DataError
from nmt.textio import check_text, clean

pytestmark = pytest.mark.system

runner = CliRunner()
SETTINGS = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Bytes that are not UTF-8 or are hostile inside it: lone surrogates (as CESU bytes), a code point past
# U+10FFFF, an overlong '/', stray continuation and lead bytes, NUL, escapes, BOM, bidi override, separators.
HOSTILE = [
    b"\xed\xa0\x80",
    b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80",
    b"\xc0\xaf",
    b"\x80",
    b"\xc3",
    b"\xff\xfe",
    b"\x00",
    b"\x1b[31m",
    b"\r",
    b"\t",
    b"\x0b\x0c",
    b"\x85",
    "\ufeff".encode(),
    "\u202e".encode(),
    "\u2028\u2029".encode(),
    "e\u0301".encode(),
    "\U0001f600".encode(),
    "\ufffd".encode(),
]

chunk = st.one_of(
    st.text(max_size=25).map(str.encode),  # any Unicode scalar value
    st.text(st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Co"]), max_size=10).map(str.encode),
    st.sampled_from(HOSTILE),
    st.binary(max_size=12).filter(lambda b: b"\n" not in b),
    st.sampled_from(["How was your day?", "Good morning!", "Thank you very much."]).map(str.encode),
)
very_long = st.builds(
    lambda piece, n: piece * n, st.sampled_from([b"word ", "日本語".encode(), b"\xff", b"x"]), st.integers(400, 4000)
)
line = st.one_of(st.lists(chunk, max_size=6).map(b"".join), very_long, st.just(b""))
ending = st.sampled_from([b"\n", b"\r\n", b"\r\r\n"])  # a lone \r is not a line end
blank_run = st.integers(20, 300).map(lambda n: b"\n" * n)
document = st.builds(
    lambda parts, last: b"".join(parts) + last,
    st.lists(st.one_of(st.tuples(line, ending).map(b"".join), blank_run), max_size=25),
    st.one_of(st.just(b""), line),  # the last line may lack its newline
)


def input_lines(data: bytes) -> list[bytes]:
    """The lines `nmt translate` must see: split on \\n only, one \\r before it dropped."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]


def test_lines_are_split_on_newline_only():
    assert input_lines(b"a\rb\nc\r\n\r\nd\r") == [b"a\rb", b"c", b"", b"d"]
    assert input_lines(b"x\r\r\n\n") == [b"x\r", b""]
    assert input_lines(b"") == [] and input_lines(b"\n") == [b""]


@settings(max_examples=40, **SETTINGS)
@given(
    data=document,
    beam=st.sampled_from(["1", "2"]),
    batch_tokens=st.sampled_from(["4096", "64"]),
    from_file=st.booleans(),
)
def test_translate_writes_one_line_per_input_line_whatever_the_bytes(
    tiny_model_dir, tmp_path, figures, data, beam, batch_tokens, from_file
):
    args = ["translate", "-m", str(tiny_model_dir), "--threads", "1", "--beam", beam, "--batch-tokens", batch_tokens]
    if from_file:
        fd, name = tempfile.mkstemp(dir=tmp_path)
        os.close(fd)
        (source := Path(name)).write_bytes(data)
        result = runner.invoke(app, [*args, "--input", str(source)])
    else:
        result = runner.invoke(app, args, input=data)
    figures["translate: generated inputs tried"] += 1
    if result.exit_code == 2:  # a file or stdin that is mostly not text is refused whole, in one line
        with pytest.raises(DataError):  # and only what textio's one check calls binary
            check_text(data, "input")
        assert "not a text file" in result.stderr and result.stdout_bytes == b""
        figures["translate: inputs refused as not text"] += 1
        return
    lines = input_lines(data)
    figures["translate: input lines tried"] += len(lines)
    assert result.exit_code == 0 and result.exception is None, (result.output, result.exception)
    out = result.stdout_bytes
    assert out.count(b"\n") == len(lines) and (out.endswith(b"\n") or not lines), (data[:200], out[:200])
    outputs = out.split(b"\n")[:-1]
    for raw, translated in zip(lines, outputs):
        if not clean(raw.decode("utf-8", errors="replace")):
            assert translated == b""  # empty, whitespace- or control-only lines stay empty
    # reached only by inputs that neither crashed nor lost a line: the figures say how many there were of each
    figures["translate: crashes"] += 0
    figures["translate: lost or extra lines"] += abs(out.count(b"\n") - len(lines))


# ---------------------------------------------------------------------------------------------
# nmt prepare on malformed corpora

sentence = st.one_of(
    st.sampled_from(["How was your day?", "Bonjour.", "Où est la gare ?", "", "   ", "a\tb", "x\ty\tz"]),
    st.text(max_size=20),
)
text_file = st.lists(
    st.one_of(sentence.map(str.encode), st.sampled_from(HOSTILE), st.binary(max_size=10)), max_size=40
).map(lambda lines: b"\n".join(lines))
side = st.one_of(
    text_file.map(lambda b: ("plain", b)),
    text_file.map(lambda b: ("gzip", gzip.compress(b, mtime=0))),
    st.binary(max_size=40).map(lambda b: ("gzip", b)),  # a .gz that is not gzip
    st.just(("missing", b"")),
    st.just(("directory", b"")),
)


def write_side(prefix: Path, lang: str, spec: tuple[str, bytes]) -> None:
    kind, data = spec
    if kind == "plain":
        Path(f"{prefix}.{lang}").write_bytes(data)
    elif kind == "gzip":
        Path(f"{prefix}.{lang}.gz").write_bytes(data)
    elif kind == "directory":
        Path(f"{prefix}.{lang}").mkdir()


SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
PAIRS = list(zip(*((SAMPLE / f"train.{lang}").read_text(encoding="utf-8").splitlines()[:400] for lang in ("en", "fr"))))
# Valid UTF-8 that is still hostile to a tokenizer or to line counting.
ODD_LINES = [
    "",
    "   ",
    "\x00",
    "\x07\x1b",
    "a\tb",
    "\u2028",
    "mid\rline",
    "\ufeff",
    "\u202eevil",
    "word " * 20000,
    "日本語の文です。",
    "\U0001f600" * 50,
    "\u0300\u0301",
    "\ud7ff\ue000\uffff",
    "\x85\xa0",
]


def nearly_valid(start: int, n: int, noise: list, misalign: bool, crlf: bool, zipped: bool):
    """A real aligned corpus with odd lines dropped in: BPE training gets to run on it, and must not crash."""
    sides = {lang: [pair[i] for pair in PAIRS[start : start + n]] for i, lang in enumerate(("en", "fr"))}
    for position, lang, text in noise:
        lines = sides[lang]
        lines[position % len(lines)] = text
    if misalign:
        sides["fr"].pop()
    end = "\r\n" if crlf else "\n"
    data = {lang: "".join(line + end for line in lines).encode() for lang, lines in sides.items()}
    return tuple(("gzip", gzip.compress(b, mtime=0)) if zipped else ("plain", b) for b in data.values())


nearly_valid_corpus = st.builds(
    nearly_valid,
    st.integers(0, 100),
    st.integers(1, 300),
    st.lists(st.tuples(st.integers(0, 299), st.sampled_from(["en", "fr"]), st.sampled_from(ODD_LINES)), max_size=6),
    st.sampled_from([False, False, False, True]),
    st.booleans(),
    st.booleans(),
)
corpus = st.one_of(nearly_valid_corpus, st.tuples(side, side), text_file.map(lambda b: ("tsv", b)), nearly_valid_corpus)


def write_corpus(folder: Path, name: str, spec) -> str:
    if spec[0] == "tsv":
        (folder / f"{name}.tsv").write_bytes(spec[1])
        return str(folder / f"{name}.tsv")
    write_side(folder / name, "en", spec[0])
    write_side(folder / name, "fr", spec[1])
    return str(folder / name)


@settings(max_examples=40, **SETTINGS)
@given(
    train=corpus,
    valid=nearly_valid_corpus | corpus,
    vocab=st.sampled_from(["300", "600", "600", "1000", "100000"]),
    extra=st.sampled_from([[], ["--max-len", "1"], ["--dedup", "--max-ratio", "1.5"], ["--separate"]]),
)
def test_prepare_on_malformed_corpora_is_a_clear_error(tmp_path, figures, train, valid, vocab, extra):
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    args = [
        "prepare",
        "--src",
        "en",
        "--tgt",
        "fr",
        "--train",
        write_corpus(folder, "train", train),
        "--valid",
        write_corpus(folder, "valid", valid),
        "--out",
        str(folder / "out"),
        "--vocab-size",
        vocab,
        *extra,
    ]
    result = runner.invoke(app, args)
    figures["prepare: generated corpora tried"] += 1
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        figures["prepare: clear errors"] += 1
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, result.stderr
        assert not (folder / "out").exists()  # written whole or not at all
    else:
        figures["prepare: prepared"] += 1
        assert (folder / "out" / "prepare.json").is_file()
    figures["prepare: crashes"] += 0


@settings(max_examples=60, **SETTINGS)
@given(spec=corpus)
def test_reading_a_malformed_corpus_gives_aligned_pairs_or_a_data_error(tmp_path, figures, spec):
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    figures["read_parallel: generated corpora tried"] += 1
    try:
        text = read_parallel(write_corpus(folder, "c", spec), "en", "fr")
    except DataError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert len(text.src) == len(text.tgt) == len(text)
    assert all(s == clean(s) for s in text.src + text.tgt)  # clean is idempotent: no control characters left


@pytest.mark.parametrize(
    "data, message",
    [
        (b"Hello\nWorld\n", "misaligned corpus"),
        (b"\xed\xa0\x80 lone surrogate\nok\n", "invalid UTF-8"),
    ],
)
def test_examples_of_clear_corpus_errors(tmp_path, data, message):
    (tmp_path / "c.en").write_bytes(data)
    (tmp_path / "c.fr").write_bytes(b"one line\n" if message == "misaligned corpus" else b"a\nb\n")
    with pytest.raises(DataError, match=message):
        read_parallel(tmp_path / "c", "en", "fr")
