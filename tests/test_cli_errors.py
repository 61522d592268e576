"""The command line's usage errors as a new user meets them, through the real entry point (the `nmt` script
installed beside this Python): one line on stderr, naming the flags as they were typed, exit
code 2, before any work. Habits from fairseq, Marian and sacreBLEU get an answer in their own terms."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

NMT = str(Path(sys.executable).with_name("nmt"))  # the console script pyproject.toml declares


def nmt(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([NMT, *args], input=stdin, capture_output=True)


def error_line(done: subprocess.CompletedProcess) -> str:
    """The one error line of a run that failed as users expect (exit code 2, nothing on stdout)."""
    lines = done.stderr.decode().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done
    assert done.stdout == b"", done.stdout
    return lines[0]


# ---------------------------------------------------------------------------------------------
# A repeated option


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["translate", "-m", "A", "-m", "B"],
            "error: nmt translate: -m/--model given twice; one model: nmt has no ensembles",
        ),
        (
            ["translate", "-m", "A", "-i", "a.en", "-i", "b.en"],
            "error: nmt translate: -i/--input given twice; one input file",
        ),
        (["translate", "-mA", "--input=a.en", "-qi", "b.en"], "error: nmt translate: --input/-i given twice"),
        (["translate", "--model", "A", "--model=B", "-m", "C"], "error: nmt translate: --model/-m given 3 times"),
        (["translate", "-m", "A", "--beam", "3", "--beam=4"], "error: nmt translate: --beam given twice; give it once"),
        (["score", "-r", "ref", "hyp", "-w", "2", "-w", "3"], "error: nmt score: -w/--width given twice"),
        (["serve", "-m", "A", "-m", "B"], "error: nmt serve: -m/--model given twice; one model"),
        (["train", "DATA", "--out", "r", "--lr", "1", "--lr", "2"], "error: nmt train: --lr given twice"),
        (
            ["train", "DATA", "--out", "r", "--joint", "--pre-norm", "--no-pre-norm"],
            "error: nmt train: --pre-norm and --no-pre-norm both given; choose one",
        ),
        (["prepare", "-s", "en", "--src", "de"], "error: nmt prepare: -s/--src given twice; give it once"),
        (["export", "-m", "A", "--out", "x", "--out=y"], "error: nmt export: --out given twice"),
        (
            ["attention", "-m", "A", "--layer", "0", "--layer", "1", "hello"],
            "error: nmt attention: --layer given twice",
        ),
    ],
)
def test_an_option_that_takes_one_value_given_twice_is_one_line(args, line):
    got = error_line(nmt(*args))
    assert got.startswith(line), got
    assert "--help" not in got  # the line says all there is to say


def test_what_may_repeat_still_repeats(tmp_path):
    ref, hyp = tmp_path / "ref", tmp_path / "hyp"
    ref.write_text("a b c d e\n", encoding="utf-8")
    hyp.write_text("a b c d e\n", encoding="utf-8")
    # options that take several values, and a switch said twice the same way
    done = nmt("score", "-r", str(ref), "-r", str(ref), str(hyp), "--metrics", "bleu", "--metrics", "chrf", "-b", "-b")
    assert done.returncode == 0 and done.stdout.decode().split() == ["100.0", "100.0"], done
    # after `--`, nothing is an option: a file named like one is a file
    assert "given twice" not in nmt("score", "-r", str(ref), "--", "-w", "-w").stderr.decode()
    # --help wins over a repetition
    done = nmt("translate", "-m", "A", "-m", "B", "--help")
    assert done.returncode == 0 and done.stdout.startswith(b"Usage: nmt translate")


def test_a_switch_repeated_the_same_way_is_harmless(tiny_model_dir, tmp_path):
    src = tmp_path / "in.en"
    src.write_text("Hello.\n", encoding="utf-8")
    once = nmt("translate", "-m", str(tiny_model_dir), "-i", str(src), "--threads", "1", "-q", "--scores")
    twice = nmt("translate", "-m", str(tiny_model_dir), "-i", str(src), "--threads", "1", "-q", "--scores", "--scores")
    assert once.returncode == 0 and twice.returncode == 0 and twice.stdout == once.stdout != b""


# ---------------------------------------------------------------------------------------------
# The input as a positional FILE


def test_translate_takes_its_input_file_as_an_argument(tiny_model_dir, tmp_path):
    src = tmp_path / "in.en"
    src.write_text("Hello.\nHow are you?\n", encoding="utf-8")
    model = ["translate", "-m", str(tiny_model_dir), "--threads", "1", "-q"]
    by_flag = nmt(*model, "-i", str(src))
    by_argument = nmt(*model, str(src))
    assert by_flag.returncode == 0 and by_argument.stdout == by_flag.stdout
    assert len(by_argument.stdout.splitlines()) == 2
    assert nmt(*model, "-", stdin=src.read_bytes()).stdout == by_flag.stdout  # '-' is stdin
    both = error_line(nmt(*model, str(src), "-i", str(src)))
    assert "-i/--input given twice" in both and "one input file" in both
    assert nmt("translate", "--help").stdout.startswith(b"Usage: nmt translate [OPTIONS] [FILE]\n")


# ---------------------------------------------------------------------------------------------
# Sentences, and the command's own help


def test_an_unknown_command_is_one_sentence():
    assert error_line(nmt("transalte")) == "error: nmt: no such command 'transalte'; did you mean 'translate'?"
    assert error_line(nmt("frobnicate")) == "error: nmt: no such command 'frobnicate'; see `nmt --help`"


def test_an_option_without_its_value_names_the_commands_help():
    got = error_line(nmt("train", "DATA", "--resume"))
    assert got == "error: nmt train: option '--resume' requires an argument; see `nmt train --help`"


def test_an_option_of_another_command_names_that_command():
    """`nmt train --beam 5` (a decoding habit): not 'did you mean --betas?' but where --beam belongs."""
    got = error_line(nmt("train", "DATA", "--out", "r", "--beam", "5"))
    assert got == (
        "error: nmt train: no such option: --beam; "
        "it is an option of `nmt translate`, `nmt score`, `nmt attention` and `nmt serve`"
    )
    assert error_line(nmt("translate", "-m", "M", "--lr", "3")) == (
        "error: nmt translate: no such option: --lr; it is an option of `nmt train`"
    )
    assert "did you mean --beam or --nbest?" in error_line(nmt("translate", "-m", "M", "--bem", "3"))


# ---------------------------------------------------------------------------------------------
# sacreBLEU's -m


def test_score_minus_m_with_a_metric_says_what_minus_m_is_here(tmp_path):
    ref = tmp_path / "ref"
    ref.write_text("a b c\n", encoding="utf-8")
    args = ["score", "-r", str(ref), str(ref)]
    assert error_line(nmt(*args, "-m", "bleu")) == "error: -m is --model here; use --metrics bleu"
    assert error_line(nmt(*args, "-m", "BLEU", "chrf")) == "error: -m is --model here; use --metrics bleu chrf"
    assert "--model and --src go together" in error_line(nmt(*args, "-m", str(tmp_path)))  # a model: as before


# ---------------------------------------------------------------------------------------------
# -m given something that is no model


def test_minus_m_on_prepared_data_says_to_train_on_it(prepared_sample):
    for command in (
        ["translate", "-m", str(prepared_sample)],
        ["attention", "-m", str(prepared_sample), "Hi", "-o", "a.png"],
    ):
        line = error_line(nmt(*command, stdin=b"Hello.\n"))
        assert line == (
            f"error: {prepared_sample}: this is prepared data; train a model on it with "
            f"`nmt train {prepared_sample} --out RUN_DIR`"
        )


def test_minus_m_with_a_url_is_echoed_as_typed():
    line = error_line(nmt("translate", "-m", "hf://Helsinki-NLP/opus-mt-en-fr"))
    assert line.startswith("error: nmt translate: -m hf://Helsinki-NLP/opus-mt-en-fr: a URL; nmt reads local files")


def test_attention_on_an_export_says_it_has_no_attention(tmp_path):
    export = tmp_path / "ct2"
    export.mkdir()
    (export / "nmt.json").write_text('{"format": "ctranslate2"}', encoding="utf-8")  # what tells an export apart
    line = error_line(nmt("attention", "-m", str(export), "-o", str(tmp_path / "a.png")))  # before reading stdin
    assert line == f"error: {export}: an export has no attention weights; use the PyTorch model directory"
    assert "use the PyTorch model directory" in error_line(
        nmt("export", "-m", str(export), "--out", str(tmp_path / "x"))
    )


def test_attention_writes_only_where_it_is_told(tiny_model_dir, tmp_path):
    done = subprocess.run([NMT, "attention", "-m", str(tiny_model_dir), "Hello."], cwd=tmp_path, capture_output=True)
    assert error_line(done) == "error: nothing to write; give -o attention.png and/or --json FILE ('-': stdout)"
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# A precision the device cannot compute in


def test_bf16_on_an_export_names_the_precisions_this_device_has(tiny_model_dir, tmp_path):
    ct2 = pytest.importorskip("ctranslate2")
    from nmt.export import export_ctranslate2

    supported = ct2.get_supported_compute_types("cpu")
    if "bfloat16" in supported:
        pytest.skip("this CPU computes bfloat16 in CTranslate2")
    export = export_ctranslate2(tiny_model_dir, tmp_path / "ct2")
    line = error_line(nmt("translate", "-m", str(export), "--bf16", "--device", "cpu", stdin=b"Hello.\n"))
    assert line.startswith("error: CTranslate2 cannot compute in bfloat16 on cpu here (it can in ")
    assert all(kind in line for kind in supported) and line.endswith(
        "leave out --bf16" + " or use --int8" * ("int8" in supported)
    )


# ---------------------------------------------------------------------------------------------
# Settings named by the flags the user typed


def test_resume_names_the_settings_by_their_flags(tiny_model_dir, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir.parent, run, symlinks=True)  # resuming locks the run: not the shared one
    assert error_line(nmt("train", "--resume", str(run), "--lr", "2", "--eps", "1e-8")) == (
        "error: --resume keeps the run's settings; only --keep-last, --log-every, --max-epochs, --max-minutes, "
        "--max-steps, --patience, --skip-nonfinite, --valid-every may change, not --eps, --lr"
    )
    assert error_line(nmt("train", "--resume", str(run), "--max-steps", "-1")) == (
        "error: --max-steps -1: must be at least 0"
    )


def test_a_rule_between_settings_names_them_as_written(prepared_sample, tmp_path):
    args = ["train", str(prepared_sample), "--out", str(tmp_path / "run")]
    assert error_line(nmt(*args, "--schedule", "linear", "--max-steps", "0")) == (
        "error: --schedule linear decays over --max-steps, which is 0 (no limit); set --max-steps or use "
        "--schedule inverse_sqrt"
    )
    config = tmp_path / "c.toml"
    config.write_text("[train]\nschedule = 'cosine'\nmax_steps = 0\n", encoding="utf-8")
    assert error_line(nmt(*args, "--config", str(config))) == (
        "error: schedule = 'cosine' decays over max_steps, which is 0 (no limit); set max_steps or use "
        "schedule = 'inverse_sqrt'"
    )
    assert not (tmp_path / "run").exists()


def test_a_binary_file_is_refused_in_a_sentence(tmp_path):
    one, three = tmp_path / "one.bin", tmp_path / "three.bin"
    one.write_bytes(b"a\0b\n")  # one line: its newline ends it, no second (empty) line follows
    three.write_bytes(b"ok\n\xff\0\n\xfe\0\n")
    model = str(tmp_path / "no-model")  # the input is read before the model is looked for
    assert f"error: {one}: not a text file (the first line holds NUL bytes or invalid UTF-8); give UTF-8" in (
        error_line(nmt("translate", "-m", model, str(one)))
    )
    assert "(2 of the first 3 lines hold NUL bytes" in error_line(nmt("translate", "-m", model, str(three)))


def test_a_choice_is_named_as_written(tmp_path):
    assert error_line(nmt("translate", "-m", "M", "--normalize", "avg")) == (
        "error: --normalize must be gnmt or length, not avg"
    )
    config = tmp_path / "d.toml"
    config.write_text('[decode]\nnormalize = "avg"\n', encoding="utf-8")  # TOML writes strings in quotes
    assert error_line(nmt("translate", "-m", "M", "--config", str(config))) == (
        f"error: {config} [decode]: normalize must be 'gnmt' or 'length', not 'avg'"
    )
