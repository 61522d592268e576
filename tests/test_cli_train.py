"""`nmt train`'s command line: --dump-config (TOML that --config reads back, the values training then uses),
--quiet, --no-valid-bleu alone, and progress lines off a terminal that carry the step total and the ETA."""

from __future__ import annotations

import json
import re
import tomllib

import pytest
from helpers import TINY_MODEL_FLAGS, one_error_line
from nmt_cli import train as train_command
from nmt_cli.main import app
from typer.testing import CliRunner

from nmt.config import ModelConfig, TrainConfig, from_dict

pytestmark = pytest.mark.integration

runner = CliRunner()
SHORT = ["--log-every", "2", "--valid-every", "4", "--valid-max-sentences", "4", "--batch-tokens", "600"]
SHORT += ["--threads", "1", "--warmup-steps", "2"]


def dump(*args: str) -> tuple[str, dict]:
    result = runner.invoke(app, ["train", *args, "--dump-config"])
    assert result.exit_code == 0, result.output
    return result.stdout, tomllib.loads(result.stdout)


# ---------------------------------------------------------------------------------------------
# --dump-config


def test_dump_config_is_the_effective_config_and_reads_back(prepared_sample, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[model]\nd_model = 64\nffn_dim = 128\n[train]\nlr = 5e-4\npatience = 3\n", encoding="utf-8")
    flags = ["--config", str(config), "--ffn-dim", "96", "--betas", "0.8,0.9", "--activation", "gelu"]
    text, tables = dump(str(prepared_sample), "--out", str(tmp_path / "run"), *flags)
    assert set(tables) == {"model", "train"}
    model, train = tables["model"], tables["train"]
    # the file's values, the flags over them, the defaults for the rest; every field
    assert (model["d_model"], model["ffn_dim"], model["activation"]) == (64, 96, "gelu")
    assert (train["lr"], train["patience"], train["betas"], train["seed"]) == (5e-4, 3, [0.8, 0.9], 1)
    assert from_dict(TrainConfig, train) == from_dict(TrainConfig, {"lr": 5e-4, "patience": 3, "betas": [0.8, 0.9]})
    assert set(train) == set(TrainConfig.__dataclass_fields__)
    # the keys the data sets are shown, commented out: a file naming them would not fit other data
    assert re.search(r"^# src_vocab_size = \d+", text, re.M) and "src_vocab_size" not in model
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written

    again = tmp_path / "dumped.toml"
    again.write_text(text, encoding="utf-8")
    assert dump(str(prepared_sample), "--out", str(tmp_path / "run"), "--config", str(again))[0] == text


def test_training_with_a_dumped_config_uses_its_values_and_reports_total_and_eta(prepared_sample, tmp_path):
    text, tables = dump(str(prepared_sample), "--out", "RUN", *TINY_MODEL_FLAGS, "--max-steps", "4", *SHORT)
    dumped = tmp_path / "dumped.toml"
    dumped.write_text(text, encoding="utf-8")
    result = runner.invoke(
        app, ["train", str(prepared_sample), "--out", str(tmp_path / "run"), "--config", str(dumped)]
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"] == tables["train"]
    assert {k: v for k, v in saved["model"].items() if k in tables["model"]} == tables["model"]
    from_dict(ModelConfig, saved["model"])  # the commented keys come from the data
    # off a terminal, each progress line has the total steps, the time trained and what is left
    steps = [line for line in result.stderr.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in steps] == ["2/4", "4/4"], result.stderr
    assert all(re.search(r"  \d+(m\d\ds)?s? elapsed, ETA \d+(m\d\ds)?s?$", line) for line in steps), steps
    assert steps[-1].endswith("ETA 0s")  # the last step: nothing left


def test_dump_config_of_a_resumed_run_is_its_config_with_the_limits_given(tiny_model_dir):
    run = tiny_model_dir.parent
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    _, tables = dump("--resume", str(run), "--max-steps", "99")
    saved = json.loads((run / "config.json").read_text())
    assert tables["train"] == {**saved["train"], "max_steps": 99}
    assert tables["model"] == {k: v for k, v in saved["model"].items() if k in tables["model"]}
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before  # not locked, not touched


def test_dump_config_refuses_what_training_refuses(prepared_sample, tmp_path):
    one_error_line(
        runner.invoke(app, ["train", str(prepared_sample), "--d-model", "100", "--n-heads", "3", "--dump-config"]),
        "--d-model (100) must be divisible by --n-heads (3)",
    )


# ---------------------------------------------------------------------------------------------
# --no-valid-bleu and --quiet


def test_no_valid_bleu_alone_watches_the_loss_with_a_note(prepared_sample, tmp_path):
    result = runner.invoke(app, ["train", str(prepared_sample), "--no-valid-bleu", "--dump-config"])
    assert result.exit_code == 0, result.output
    assert tomllib.loads(result.stdout)["train"]["early_stop_metric"] == "loss"
    assert result.stderr == "note: --no-valid-bleu: early stopping watches the validation loss\n"
    # named in the file: the note names the file
    config = tmp_path / "c.toml"
    config.write_text("[train]\nvalid_bleu = false\n", encoding="utf-8")
    result = runner.invoke(app, ["train", str(prepared_sample), "--config", str(config), "--dump-config"])
    assert f"note: {config} [train] valid_bleu = false: early stopping" in result.stderr
    # a metric named stays what it is: ppl is taken, bleu is refused
    _, tables = dump(str(prepared_sample), "--no-valid-bleu", "--early-stop-metric", "ppl")
    assert tables["train"]["early_stop_metric"] == "ppl"
    run = ["train", str(prepared_sample), "--out", str(tmp_path / "r")]
    for args in (["--no-valid-bleu"], ["--config", str(config)]):
        refused = runner.invoke(app, [*run, *args, "--early-stop-metric", "bleu"])
        one_error_line(refused, "early_stop_metric = 'bleu' needs valid_bleu = true")


def test_quiet_training_prints_notes_and_the_result_only(prepared_sample, tmp_path):
    args = ["train", str(prepared_sample), "--out", str(tmp_path / "run"), *TINY_MODEL_FLAGS, "--max-steps", "4"]
    result = runner.invoke(app, [*args, *SHORT, "--no-valid-bleu", "-q"])
    assert result.exit_code == 0, result.output
    assert result.stderr == "note: --no-valid-bleu: early stopping watches the validation loss\n"
    assert result.stdout.startswith("done: reached max_steps 4. best loss ") and result.stdout.count("\n") == 1
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["early_stop_metric"] == "loss"


# ---------------------------------------------------------------------------------------------
# The progress lines, timed by hand


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def train_event(step: int) -> dict:
    return {"kind": "train", "step": step, "epoch": 1, "loss": 4.12, "ppl": 61.6, "lr": 1e-3, "tokens_per_s": 2345.0}


def start_event(step: int = 0, max_steps: int = 1200, max_minutes: float = 0.0, trained: float = 0.0) -> dict:
    return {
        "kind": "start",
        "step": step,
        "params": 1000,
        "train_pairs": 10,
        "skipped_long": 0,
        "device": "cpu",
        "threads": 1,
        "max_steps": max_steps,
        "max_minutes": max_minutes,
        "train_seconds": trained,
    }


@pytest.mark.unit
@pytest.mark.parametrize(
    ("start", "at", "shows"),
    [
        (
            start_event(),
            72,
            "step  200/1200  epoch   1  loss 4.120  ppl    61.60  lr 1.00e-03  2,345 tok/s  1m12s elapsed, ETA 6m00s",
        ),  # 1000 steps left at 200 per 72 s
        (start_event(max_minutes=5), 72, "1m12s elapsed, ETA 3m48s"),  # the time limit comes first
        (start_event(max_minutes=60), 72, "1m12s elapsed, ETA 6m00s"),  # the step limit comes first
        (start_event(max_steps=0, max_minutes=5), 72, "step    200  epoch"),  # no total without a step limit
        (start_event(max_steps=0, max_minutes=5), 72, "1m12s elapsed, ETA 3m48s"),
        (start_event(max_steps=0), 72, "tok/s  1m12s elapsed"),  # no limit: no ETA
        (start_event(step=100, trained=3600), 36, "1h00m elapsed, ETA 6m00s"),  # resumed: its time so far counts
    ],
)
def test_a_progress_line_has_the_total_elapsed_time_and_eta(start, at, shows, monkeypatch, capsys):
    clock = Clock()
    monkeypatch.setattr(train_command.time, "monotonic", clock)
    display = train_command.Display()
    assert display.live is None  # pytest's stderr is no terminal
    display(start)
    clock.now += at
    display(train_event(200))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("training 1,000 parameters")
    assert shows in lines[1], lines[1]
    assert lines[1].endswith(shows) or "epoch" in shows
    if not start["max_steps"] and not start["max_minutes"]:
        assert "ETA" not in lines[1]


@pytest.mark.unit
def test_quiet_display_prints_warnings_only(capsys):
    display = train_command.Display(quiet=True)
    display(start_event())
    display(train_event(20))
    display({"kind": "valid", "step": 20, "valid_loss": 4.0, "valid_ppl": 54.6})
    display({"kind": "checkpoint", "step": 20, "path": "run/checkpoints/step_000020"})
    display({"kind": "skip", "step": 21, "what": "loss", "value": "nan"})
    assert capsys.readouterr().err.splitlines() == [
        "warning: step 21: the loss became nan; skipped this batch (--skip-nonfinite)"
    ]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("seconds", "shown"), [(0, "0s"), (59.4, "59s"), (72, "1m12s"), (3599, "59m59s"), (7380, "2h03m")]
)
def test_durations_read_as_minutes_and_seconds(seconds, shown):
    assert train_command.duration(seconds) == shown
