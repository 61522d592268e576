"""The command line as users of fairseq, OpenNMT, Marian and sacreBLEU expect it: one-line errors with
exit code 2 before any work, help that reads right, progress on stderr, output formats."""

from __future__ import annotations

import json

import pytest
from helpers import TINY_MODEL_TOML, one_error_line
from nmt_cli.main import app
from typer.testing import CliRunner

pytestmark = pytest.mark.integration

runner = CliRunner()


# ---------------------------------------------------------------------------------------------
# Errors: one line, exit 2, nothing written


def test_translate_output_into_a_missing_directory_creates_it(tiny_model_dir, tmp_path):
    out = tmp_path / "new" / "sub" / "x.fr"
    result = runner.invoke(
        app, ["translate", "-m", str(tiny_model_dir), "-o", str(out), "--threads", "1"], input=b"Hello.\n\n"
    )
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").count("\n") == 2
    assert [p.name for p in out.parent.iterdir()] == ["x.fr"]  # no temp or probe file left


@pytest.mark.parametrize(
    "command",
    [
        ["translate", "-m", "MODEL", "-o", "/proc/nmt-test/x.fr"],
        ["prepare", "--src", "en", "--tgt", "fr", "--train", "T", "--valid", "V", "--out", "/proc/nmt-test/x"],
        ["train", "DATA", "--out", "/proc/nmt-test/x"],
        ["export", "-m", "MODEL", "--out", "/proc/nmt-test/x"],
        ["average", "MODEL", "--out", "/proc/nmt-test/x"],
    ],
)
def test_an_unwritable_output_is_one_line_before_any_work(command, tiny_model_dir, prepared_sample, sample_dir):
    swap = {
        "MODEL": str(tiny_model_dir.parent),
        "DATA": str(prepared_sample),
        "T": str(sample_dir / "train"),
        "V": str(sample_dir / "val"),
    }
    result = runner.invoke(app, [swap.get(a, a) for a in command], input=b"Hello.\n")
    one_error_line(result, "/proc/nmt-test", "choose another")
    assert "disk space" not in result.stderr


def test_usage_errors_are_one_line_with_did_you_mean():
    one_error_line(
        runner.invoke(app, ["translate", "-m", "x", "--bem", "3"]), "no such option: --bem", "did you mean --beam"
    )
    one_error_line(runner.invoke(app, ["prepare", "--tgt", "fr"]), "missing option", "--src")
    one_error_line(runner.invoke(app, ["frobnicate"]), "no such command")
    one_error_line(
        runner.invoke(app, ["train", "DATA", "--out", "x", "--d-modle", "64"]), "--d-modle", "did you mean --d-model?"
    )


def test_a_wrong_value_names_the_flag_or_the_file(tmp_path):
    one_error_line(
        runner.invoke(app, ["train", "DATA", "--out", str(tmp_path / "r"), "--d-model", "abc"]),
        "--d-model must be an integer, got 'abc'",
    )
    config = tmp_path / "bad.toml"
    config.write_text("[model]\nd_modle = 64\n", encoding="utf-8")
    one_error_line(
        runner.invoke(app, ["train", "DATA", "--out", str(tmp_path / "r"), "--config", str(config)]),
        f"{config} [model]: unknown option d_modle; did you mean d_model?",
    )
    config.write_text('[train]\nlr = "fast"\n', encoding="utf-8")
    one_error_line(
        runner.invoke(app, ["train", "DATA", "--out", str(tmp_path / "r"), "--config", str(config)]),
        f"{config} [train]: lr must be a number",
    )
    for flag in ("--beam", "--nbest", "--batch-tokens"):
        one_error_line(runner.invoke(app, ["translate", "-m", "x", flag, "0"]), f"{flag} 0: must be at least 1")


def test_a_binary_input_is_refused_in_one_line(tiny_model_dir, tmp_path):
    binary = tmp_path / "prog"
    binary.write_bytes(bytes(range(256)) * 200)
    out = tmp_path / "out.fr"
    result = runner.invoke(app, ["translate", "-m", str(tiny_model_dir), "-i", str(binary), "-o", str(out)])
    one_error_line(result, str(binary), "not a text file")
    assert not out.exists()


@pytest.mark.parametrize("kind", ["executable", "gzip"])
def test_a_binary_stdin_is_refused_in_the_same_line(tiny_model_dir, tmp_path, kind):
    """`head -c 3000 /bin/ls | nmt translate` and a gzip on stdin: refused as `-i` refuses them, nothing written."""
    import gzip

    data = bytes(range(256)) * 12 if kind == "executable" else gzip.compress(b"Hello.\nGood morning!\n" * 50)
    (tmp_path / "in").write_bytes(data)
    out = tmp_path / "out.fr"
    args = ["translate", "-m", str(tiny_model_dir), "--threads", "1"]
    piped = runner.invoke(app, [*args, "-o", str(out)], input=data)
    one_error_line(piped, "<stdin>: not a text file")
    assert not out.exists() and piped.stdout == ""
    from_file = runner.invoke(app, [*args, "-i", str(tmp_path / "in")])
    assert piped.stderr.replace("<stdin>", str(tmp_path / "in")) == from_file.stderr


def test_a_binary_stdin_is_refused_before_the_model_loads(tmp_path):
    """As -i FILE is: no model load (seconds) before the refusal, so a missing model is not even reached."""
    result = runner.invoke(app, ["translate", "-m", str(tmp_path / "no-model")], input=bytes(range(256)) * 12)
    one_error_line(result, "<stdin>: not a text file")


def test_warnings_name_the_file_and_quiet_silences_them(tiny_model_dir, tmp_path):
    src = tmp_path / "long.en"
    src.write_text("Hello.\n" + "word " * 3000 + "\n", encoding="utf-8")
    args = ["translate", "-m", str(tiny_model_dir), "-i", str(src), "--threads", "1"]
    loud = runner.invoke(app, args)
    assert loud.exit_code == 0 and f"warning: {src}:2: " in loud.stderr
    quiet = runner.invoke(app, [*args, "-q"])
    assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout == loud.stdout


def test_average_refuses_an_existing_directory_without_force(tiny_model_dir, tmp_path):
    run = str(tiny_model_dir.parent)
    assert runner.invoke(app, ["average", run, "--out", str(tmp_path / "avg")]).exit_code == 0
    one_error_line(runner.invoke(app, ["average", run, "--out", str(tmp_path / "avg")]), "exists; add --force")
    assert runner.invoke(app, ["average", run, "--out", str(tmp_path / "avg"), "--force"]).exit_code == 0


# ---------------------------------------------------------------------------------------------
# Help


COMMANDS = ["prepare", "train", "average", "translate", "score", "export"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_prints_brackets_and_plain_metavars(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    for odd in ("<bool>", "<int>", "<path>", "<str>", "<list", "{", "\\["):
        assert odd not in result.stdout, (command, odd)
    expected = {
        "train": ["[model] and [train] tables", "Usage: nmt train DATA_DIR"],
        "translate": ["'nmt[ct2]'", "--beam INTEGER"],
        "average": ["Usage: nmt average [OPTIONS] RUN_DIR"],
        "score": ["[default: off"],
    }
    for words in expected.get(command, []):
        assert words in result.stdout, (command, words)


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        ("average", "Usage: nmt average [OPTIONS] RUN_DIR\n"),
        ("info", "Usage: nmt info [OPTIONS] PATH\n"),
        ("plot", "Usage: nmt plot [OPTIONS] RUN_DIR...\n"),  # several runs
        ("score", "Usage: nmt score [OPTIONS] [HYP]...\n"),  # several hypotheses, or none: stdin
    ],
)
def test_usage_line_names_arguments_as_click_does(command, usage):
    """The same line under Typer 0.28 and 0.29 (left alone, 0.28 writes '{RUN_DIR}' and '[HYP]' without its '...')."""
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and result.stdout.startswith(usage), (command, result.stdout[:80])


def test_commands_are_listed_in_workflow_order_with_completion():
    text = runner.invoke(app, ["--help"]).stdout
    assert [text.index(f"  {c} ") for c in COMMANDS] == sorted(text.index(f"  {c} ") for c in COMMANDS)
    assert "--install-completion" in text


# ---------------------------------------------------------------------------------------------
# Progress and output formats


def test_translate_reports_lines_and_rate_at_the_end(tiny_model_dir, sample_dir, tmp_path):
    result = runner.invoke(
        app,
        [
            "translate",
            "-m",
            str(tiny_model_dir),
            "-i",
            str(sample_dir / "test.en"),
            "-o",
            str(tmp_path / "t.fr"),
            "--threads",
            "1",
        ],
    )
    assert result.exit_code == 0
    assert result.stderr.splitlines()[-1].startswith("200 lines in ") and "sent/s" in result.stderr


def test_jsonl_format_and_moses_nbest(tiny_model_dir):
    result = runner.invoke(
        app,
        ["translate", "-m", str(tiny_model_dir), "--format", "jsonl", "--beam", "3", "--nbest", "2", "--threads", "1"],
        input=b"Good morning!\n\n",
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["line"] for r in records] == [0, 1] and records[1]["text"] == ""
    first = records[0]
    assert first["text"] == first["nbest"][0]["text"] and len(first["nbest"]) == 2 and first["tokens"]
    assert first["log_prob"] <= 0 and first["time"] >= 0


def test_translate_reads_decode_settings_from_a_config_and_flags_win(tiny_model_dir, tmp_path):
    config = tmp_path / "recipe.toml"
    config.write_text("[decode]\nbeam_size = 3\nnbest = 3\n", encoding="utf-8")
    args = ["translate", "-m", str(tiny_model_dir), "--config", str(config), "--threads", "1"]
    three = runner.invoke(app, args, input=b"Good morning!\n")
    assert three.exit_code == 0 and len(three.stdout.splitlines()) == 3
    one = runner.invoke(app, [*args, "--nbest", "1"], input=b"Good morning!\n")
    assert one.exit_code == 0 and len(one.stdout.splitlines()) == 1
    config.write_text("[decode]\nbeam = 3\n", encoding="utf-8")
    one_error_line(
        runner.invoke(app, args, input=b"x\n"), f"{config} [decode]: unknown option beam; did you mean beam_size?"
    )


def test_train_progress_goes_to_stderr(prepared_sample, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(
        TINY_MODEL_TOML + "[decode]\nbeam_size = 2\n",
        encoding="utf-8",
    )
    result = runner.invoke(
        app,
        [
            "train",
            str(prepared_sample),
            "--out",
            str(tmp_path / "run"),
            "--config",
            str(config),
            "--max-steps",
            "4",
            "--log-every",
            "2",
            "--valid-every",
            "4",
            "--valid-max-sentences",
            "4",
            "--batch-tokens",
            "600",
            "--threads",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("done: ") and len(result.stdout.splitlines()) == 1
    assert "(cpu, 1 thread)" in result.stderr and "valid step" in result.stderr
    assert "nmt train ignores [decode]" in result.stderr


# ---------------------------------------------------------------------------------------------
# On a terminal: say what is being done, and how to use the interactive translator


def on_terminal(args: list[str], typed: list[bytes] = (), timeout: float = 120.0) -> tuple[int, str]:
    """Run `nmt ARGS` with stdin, stdout and stderr on a pseudo-terminal; type each of `typed` once the
    previous output has gone quiet. Returns the exit code and everything the terminal showed."""
    import os
    import pty
    import select
    import subprocess
    import sys
    import time

    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "120"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nmt_cli.main", *args], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
    )
    os.close(slave)
    shown, pending, deadline = b"", list(typed), time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        elif proc.poll() is not None:
            break
        elif pending and b"Ctrl-D" in shown:  # loaded and waiting: type the next line
            os.write(master, pending.pop(0))
    proc.wait(timeout=10)
    os.close(master)
    return proc.returncode, shown.decode("utf-8", "replace")


@pytest.mark.system
def test_interactive_translate_says_how_to_use_it(tiny_model_dir):
    code, shown = on_terminal(["translate", "-m", str(tiny_model_dir), "--threads", "1"], [b"Good morning!\n", b"\x04"])
    assert code == 0, shown
    assert "loading" in shown and "type a sentence, Ctrl-D to end" in shown
    lines = [line.strip() for line in shown.replace("\r", "\n").split("\n") if line.strip()]
    after = lines[lines.index("Good morning!") + 1 :]  # the typed line echoed, then its translation
    assert after and after[0] and "error" not in shown


@pytest.mark.system
@pytest.mark.parametrize("what", ["average", "score -m", "export"])
def test_long_steps_say_what_they_do_on_a_terminal(what, tiny_model_dir, sample_dir, tmp_path):
    if what == "export":
        pytest.importorskip("ctranslate2")
    args = {
        "average": ["average", str(tiny_model_dir.parent), "--out", str(tmp_path / "avg")],
        "score -m": [
            "score",
            "-m",
            str(tiny_model_dir),
            "--src",
            str(sample_dir / "test.en"),
            "-r",
            str(sample_dir / "test.fr"),
        ],
        "export": ["export", "-m", str(tiny_model_dir), "--format", "ctranslate2", "--out", str(tmp_path / "ct2")],
    }[what]
    code, shown = on_terminal(args)
    assert code == 0, shown
    assert {"average": "averaging", "score -m": "loading", "export": "exporting"}[what] in shown


@pytest.mark.system
def test_train_live_display_on_a_terminal(prepared_sample, tmp_path):
    """Start-up said, no 'nan' before the first log, a 'validating' state, '1 thread'; stdout's 'done:' line."""
    config = tmp_path / "c.toml"
    config.write_text(TINY_MODEL_TOML, encoding="utf-8")
    code, shown = on_terminal(
        [
            "train",
            str(prepared_sample),
            "--out",
            str(tmp_path / "run"),
            "--config",
            str(config),
            "--max-steps",
            "6",
            "--log-every",
            "3",
            "--valid-every",
            "6",
            "--valid-max-sentences",
            "4",
            "--batch-tokens",
            "600",
            "--threads",
            "1",
        ]
    )
    assert code == 0, shown
    assert "loading" in shown and "1 thread" in shown and "1 threads" not in shown
    assert "validating" in shown and "nan" not in shown and "done: " in shown and "ETA" in shown
