"""`nmt translate` is a Unix filter: exactly one output line per input line whatever the input;
batched translation equals one sentence at a time; `nmt score -m` equals translate-then-score; the sentences
of a line are translated each and joined back in one line; a 5,000-token line is translated whole."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import one_error_line
from nmt_cli.main import app
from typer.testing import CliRunner

from nmt.config import DecodeConfig
from nmt.translate import Translator

pytestmark = pytest.mark.integration

runner = CliRunner()
NMT = str(Path(sys.executable).with_name("nmt"))  # the console script pyproject.toml declares
PARAGRAPH = "Hello! How was your day? I hope the meeting went well."

HOSTILE = [
    "How was your day?",
    "",
    "   \t  ",
    "word " * 3000,  # far longer than the model's 256 positions
    "control\x00chars\x07and\x1bescapes",
    "日本語の文です。",
    "مرحبا كيف حالك",
    "Привет, как дела?",
    "emoji 😀🚀 and combining e\u0301",
    "\u2028line\u2029separators\x0binside\x0c",
    "",
    "The last line has no newline",
]


def invoke(model_dir, data: bytes, *args):
    return runner.invoke(app, ["translate", "-m", str(model_dir), "--threads", "1", *args], input=data)


@pytest.mark.parametrize("beam", ["1", "3"])
def test_one_output_line_per_input_line(tiny_model_dir, beam):
    data = "\n".join(HOSTILE).encode("utf-8") + b"\n\xff\xfeinvalid utf-8\r\nwindows line\r\n"
    result = invoke(tiny_model_dir, data, "--beam", beam)
    assert result.exit_code == 0, result.output
    lines = result.stdout.split("\n")
    assert lines[-1] == "" and len(lines) - 1 == len(HOSTILE) + 2
    assert lines[1] == lines[2] == lines[10] == ""  # empty and whitespace-only lines stay empty
    assert "invalid UTF-8" in result.stderr and "longer than the model takes" in result.stderr


def test_empty_input_gives_empty_output(tiny_model_dir):
    result = invoke(tiny_model_dir, b"")
    assert result.exit_code == 0 and result.stdout == ""


def test_batched_translation_equals_one_at_a_time(tiny_model_dir, sample_dir):
    lines = (sample_dir / "test.en").read_text(encoding="utf-8").splitlines()[:12]
    translator = Translator.load(tiny_model_dir, DecodeConfig(beam_size=4, batch_tokens=200), threads=1)
    batched = translator.translate_batch(lines)
    alone = [translator.translate_batch([line])[0] for line in lines]
    assert [t.text for t in batched] == [t.text for t in alone]
    for a, b in zip(batched, alone):
        assert a.score == pytest.approx(b.score, abs=1e-4)
    assert any(t.text for t in batched)  # the tiny model really emits something


def test_nbest_and_scores_formats(tiny_model_dir):
    result = invoke(tiny_model_dir, b"Good morning!\nThank you.\n", "--beam", "3", "--nbest", "2")
    assert result.exit_code == 0, result.output
    rows = [line.split(" ||| ") for line in result.stdout.splitlines()]
    assert [r[0] for r in rows] == ["0", "0", "1", "1"]
    # Moses n-best: i ||| text ||| features ||| total, the feature being the model's log-probability
    assert all(len(r) == 4 and r[2].startswith("F0= ") and float(r[2][4:]) <= 0 and float(r[3]) <= 0 for r in rows)
    assert float(rows[0][3]) >= float(rows[1][3])
    scored = invoke(tiny_model_dir, b"Good morning!\n", "--scores")
    score, _, _ = scored.stdout.rstrip("\n").partition("\t")
    assert float(score) <= 0


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (("--format", "jsonl"), ("--scores", "jsonl", "score", "drop --scores")),
        (("--beam", "3", "--nbest", "2"), ("--scores", "--nbest 2", "F0=", "drop --scores")),
    ],
)
def test_scores_with_an_output_that_holds_scores_is_refused(tiny_model_dir, flags, words):
    """jsonl records and Moses n-best lines carry their scores: --scores there is refused, not dropped."""
    one_error_line(invoke(tiny_model_dir, b"Good morning!\n", "--scores", *flags), *words)
    # and --scores with plain one-best text still prints score<TAB>translation
    plain = invoke(tiny_model_dir, b"Good morning!\n", "--scores", "--nbest", "1")
    assert plain.exit_code == 0 and len(plain.stdout.split("\t")) == 2


def test_input_and_output_files(tiny_model_dir, tmp_path):
    (tmp_path / "in.txt").write_text("Hello.\n\nSee you tomorrow.\n", encoding="utf-8")
    result = invoke(tiny_model_dir, b"", "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "out.txt"))
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "out.txt").read_text(encoding="utf-8").split("\n")) == 4


def test_bad_model_dir_is_a_clear_error(tmp_path):
    result = invoke(tmp_path / "nowhere", b"Hello\n")
    assert result.exit_code == 2 and "no such model directory" in result.output


def test_a_split_that_is_not_one_is_refused(tiny_model_dir, tmp_path):
    one_error_line(invoke(tiny_model_dir, b"Hello\n", "--split", "words"), "--split", "sentence", "none")
    config = tmp_path / "c.toml"
    config.write_text('[decode]\nsplit = "none"\n', encoding="utf-8")
    paragraph = b"Hello! How was your day? I hope the meeting went well.\n"
    by_table = invoke(tiny_model_dir, paragraph, "--config", str(config))
    assert by_table.exit_code == 0 and by_table.stdout == invoke(tiny_model_dir, paragraph, "--split", "none").stdout


def test_nbest_larger_than_beam_is_refused(tiny_model_dir):
    result = invoke(tiny_model_dir, b"Hello\n", "--beam", "2", "--nbest", "3")
    assert result.exit_code == 2 and "--nbest 3 needs --beam of at least 3" in result.output


def test_score_with_model_equals_translate_then_score(tiny_model_dir, sample_dir, tmp_path):
    src, ref = sample_dir / "val.en", sample_dir / "val.fr"
    hyp = tmp_path / "hyp.txt"
    translated = invoke(tiny_model_dir, b"", "--input", str(src), "--output", str(hyp), "--beam", "2")
    assert translated.exit_code == 0
    by_file = runner.invoke(app, ["score", "-r", str(ref), str(hyp), "--json"])
    by_model = runner.invoke(
        app,
        [
            "score",
            "-r",
            str(ref),
            "-m",
            str(tiny_model_dir),
            "--src",
            str(src),
            "--beam",
            "2",
            "--json",
            "--output",
            str(tmp_path / "kept.txt"),
        ],
    )
    assert by_model.exit_code == 0, by_model.output
    a, b = json.loads(by_file.stdout)["systems"][0], json.loads(by_model.stdout)["systems"][0]
    assert (a["bleu"], a["chrf"], a["ter"]) == (b["bleu"], b["chrf"], b["ter"])
    assert (tmp_path / "kept.txt").read_text(encoding="utf-8") == hyp.read_text(encoding="utf-8")


def test_sampling_is_reproducible_and_keeps_lines(tiny_model_dir):
    data = b"How was your day?\n\nGood morning!\n"
    first = invoke(tiny_model_dir, data, "--sampling", "--top-k", "20", "--seed", "7")
    again = invoke(tiny_model_dir, data, "--sampling", "--top-k", "20", "--seed", "7")
    assert first.exit_code == 0, first.output
    assert first.stdout == again.stdout and first.stdout.count("\n") == 3
    greedy = invoke(tiny_model_dir, data, "--beam", "1")
    one_choice = invoke(tiny_model_dir, data, "--sampling", "--top-k", "1")
    assert one_choice.stdout == greedy.stdout


@pytest.mark.system
def test_a_paragraph_comes_back_as_one_line_of_translated_sentences(tiny_model_dir):
    """The issue's acceptance: `echo "Hello! How was your day? I hope ..." | nmt translate -m MODEL`."""
    run = [NMT, "translate", "-m", str(tiny_model_dir), "--threads", "1"]
    plain = subprocess.run(run, input=f"{PARAGRAPH}\n".encode(), capture_output=True, check=True)
    [line] = plain.stdout.decode("utf-8").splitlines()
    as_json = subprocess.run([*run, "--format", "jsonl"], input=f"{PARAGRAPH}\n".encode(), capture_output=True)
    [record] = [json.loads(row) for row in as_json.stdout.decode("utf-8").splitlines()]
    sentences = record["sentences"]
    assert [s["source"] for s in sentences] == ["Hello!", "How was your day?", "I hope the meeting went well."]
    assert record["text"] == line == " ".join(s["text"] for s in sentences)
    assert record["log_prob"] == pytest.approx(sum(s["log_prob"] for s in sentences), abs=1e-3)
    assert all(s["text"] and s["score"] <= 0 for s in sentences)
    whole = subprocess.run([*run, "--split", "none"], input=f"{PARAGRAPH}\n".encode(), capture_output=True)
    assert whole.returncode == 0 and len(whole.stdout.decode("utf-8").splitlines()) == 1


def test_split_none_translates_each_line_as_one_search(tiny_model_dir, sample_dir):
    """--split none is one sentence a line, as test sets and `nmt score` want: each line's translation is the
    best hypothesis of one search of the whole line."""
    lines = [PARAGRAPH, *(sample_dir / "test.en").read_text(encoding="utf-8").splitlines()[:5]]
    translator = Translator.load(tiny_model_dir, DecodeConfig(beam_size=2, split="none"), threads=1)
    found = translator.translate_batch(lines)
    hyps = translator.search_ids(translator.encode(lines, lambda message: None))
    assert [t.text for t in found] == [" ".join(translator.tgt_tok.decode(h[0].tokens).split()) for h in hyps]
    assert [t.score for t in found] == [h[0].score for h in hyps]
    assert all(len(t.sentences) == 1 for t in found)
    split = translator.with_config(split="sentence").translate_batch(lines)
    assert len(split[0].sentences) == 3 and [t.text for t in split[1:]] == [t.text for t in found[1:]]


def test_a_5000_token_line_is_translated_whole_not_cut(tiny_model_dir):
    words = [f"house{i % 7}" if i % 3 else "the" for i in range(2500)]
    long_line = " ".join(words)  # one sentence, no punctuation: cut between words
    translator = Translator.load(tiny_model_dir, DecodeConfig(beam_size=1), threads=1)
    searched: list[list[int]] = []
    search = translator.search_ids

    def spy(ids: list[list[int]]):
        searched.extend(ids)
        return search(ids)

    translator.search_ids = spy  # type: ignore[method-assign]
    warned: list[str] = []
    [t] = translator.translate_batch([long_line], warned.append)
    assert len(translator.src_tok.encode(long_line)) >= 5000
    assert len(searched) == len(t.sentences) > 1 and all(len(ids) <= translator.max_src_tokens for ids in searched)
    assert " ".join(s.source for s in t.sentences).split() == words  # every word of the line went in
    assert all(s.tokens for s in t.sentences)  # and every piece gave output
    assert t.text.split() == " ".join(s.text for s in t.sentences).split()
    assert warned and "translated in" in warned[0] and "longer than the model takes" in warned[0]
