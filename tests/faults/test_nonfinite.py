"""A loss or gradient that becomes NaN/inf: detected, reported with the step, and the run stops — or, with
--skip-nonfinite, skips that batch — without ever writing a poisoned checkpoint."""

from __future__ import annotations

import json
import os

import pytest
import torch
from helpers import TINY_MODEL

import nmt.train as training
from faults.procs import start_args
from nmt.config import TrainConfig
from nmt.modeldir import load_model_dir
from nmt.train import TrainingError
from nmt.trainer import Trainer
from nmt.update import MAX_SKIPS_IN_A_ROW

pytestmark = pytest.mark.system


def tiny_train(**changes) -> TrainConfig:
    base = dict(
        batch_tokens=600,
        max_steps=8,
        warmup_steps=4,
        log_every=1,
        valid_every=2,
        valid_max_sentences=8,
        valid_bleu=False,
        early_stop_metric="loss",
        keep_last=10,
        seed=3,
        lr=2e-3,
    )
    return TrainConfig(**{**base, **changes})


def log_of(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


def at_batch(trainer: Trainer, batch: int) -> bool:
    """Whether the trainer is on the `batch`-th batch (1-based) of the first epoch: a place in the data, so the
    fault strikes that batch only, again after a resume, and not the batch that follows it."""
    return trainer.state.epoch == 0 and trainer.state.batch_in_epoch + 1 == batch


def infinite_gradient_at(trainer: Trainer, batch: int) -> None:
    """The gradient of one weight becomes inf on that batch, while the loss stays finite."""
    weight = trainer.model.encoder[0].ffn.fc1.weight
    weight.register_hook(lambda grad: grad * float("inf") if at_batch(trainer, batch) else grad)


def nan_loss_at(monkeypatch, trainer: Trainer, batch: int) -> None:
    """The training loss of that batch becomes NaN (validation is left alone)."""
    import nmt.loss

    real = nmt.loss._smoothed_loss_and_gradient  # training's loss only: validation calls label_smoothed_loss

    def poisoned(logits, *args):
        loss, nll, grad = real(logits, *args)
        return (loss * float("nan") if at_batch(trainer, batch) else loss), nll, grad

    monkeypatch.setattr(nmt.loss, "_smoothed_loss_and_gradient", poisoned)


def assert_every_checkpoint_is_finite(run_dir) -> None:
    for checkpoint in (run_dir / "checkpoints").iterdir():
        load_model_dir(checkpoint)  # refuses non-finite weights


def test_infinite_gradient_under_a_finite_loss_stops_before_it_poisons_the_weights(prepared_sample, tmp_path, figures):
    """Checked by the loss alone, this update made every weight NaN and step 4's checkpoint was poisoned."""
    trainer = training.start(prepared_sample, tmp_path / "r", TINY_MODEL, tiny_train(), threads=1)
    infinite_gradient_at(trainer, 3)
    with pytest.raises(TrainingError, match=r"step 3: the gradient norm became (inf|nan); nothing was saved"):
        trainer.train()
    trainer.close()
    assert os.readlink(tmp_path / "r" / "last") == "checkpoints/step_000002"
    assert_every_checkpoint_is_finite(tmp_path / "r")
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())  # the bad update was never applied
    figures["non-finite loss/gradient: stopped, no poisoned checkpoint"] += 1


def test_a_stopped_run_resumes_with_skip_nonfinite(prepared_sample, tmp_path, monkeypatch):
    trainer = training.start(prepared_sample, tmp_path / "r", TINY_MODEL, tiny_train(), threads=1)
    nan_loss_at(monkeypatch, trainer, 3)
    with pytest.raises(TrainingError, match=r"step 3: the loss became nan.*add --skip-nonfinite"):
        trainer.train()
    trainer.close()
    monkeypatch.undo()
    resumed = training.resume(tmp_path / "r", {"skip_nonfinite": True}, threads=1)
    nan_loss_at(monkeypatch, resumed, 3)
    resumed.train()
    resumed.close()
    assert resumed.state.step == 8
    assert [r["step"] for r in log_of(tmp_path / "r") if r["kind"] == "skip"] == [3]


@pytest.mark.parametrize("fault", ["loss", "gradient norm"])
def test_skip_nonfinite_skips_exactly_that_batch(fault, prepared_sample, tmp_path, monkeypatch, figures):
    trainer = training.start(prepared_sample, tmp_path / "r", TINY_MODEL, tiny_train(skip_nonfinite=True), threads=1)
    if fault == "loss":
        nan_loss_at(monkeypatch, trainer, 3)
    else:
        infinite_gradient_at(trainer, 3)
    trainer.train()
    trainer.close()
    log = log_of(tmp_path / "r")
    skips = [r for r in log if r["kind"] == "skip"]
    assert len(skips) == 1 and skips[0]["step"] == 3 and skips[0]["what"] == fault
    assert skips[0]["value"] in ("nan", "inf")
    assert [r["step"] for r in log if r["kind"] == "train"] == list(range(1, 9))  # the step count does not jump
    assert trainer.state.step == 8
    # the skipped batch moved the data on but never the optimizer: 8 updates for 9 batches
    assert trainer.state.batch_in_epoch == 9
    assert {int(s["step"]) for s in trainer.optimizer.state.values()} == {8}
    assert_every_checkpoint_is_finite(tmp_path / "r")
    figures["non-finite loss/gradient: batch skipped when asked"] += 1


def test_real_divergence_through_the_cli_stops_naming_the_step(train, prepared_sample, tmp_path):
    """An absurd learning rate: the first update blows the weights up, the second loss is NaN."""
    run_dir = tmp_path / "run"
    proc = train(start_args(prepared_sample, run_dir, lr="1e30", warmup_steps="1"))
    assert proc.wait() == 2, proc.stderr
    error = proc.stderr.splitlines()[-1]
    assert error.startswith("error: step 2: the loss became nan; nothing was saved from this step"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (run_dir / "last").exists() and not (run_dir / "checkpoints").exists()
    assert [r["step"] for r in log_of(run_dir)] == [1]


def test_skipping_gives_up_when_every_batch_is_nonfinite(train, prepared_sample, tmp_path):
    run_dir = tmp_path / "run"
    proc = train([*start_args(prepared_sample, run_dir, lr="1e30", warmup_steps="1"), "--skip-nonfinite"])
    assert proc.wait() == 2, proc.stderr
    lines = [
        line for line in proc.stderr.splitlines() if line.startswith(("warning:", "error:"))
    ]  # progress is there too
    assert lines[-1] == (
        f"error: step 2: {MAX_SKIPS_IN_A_ROW} batches in a row gave a non-finite loss or gradient; "
        "the weights have diverged. Lower --lr or raise --warmup-steps"
    )
    assert (
        lines[:-1]
        == ["warning: step 2: the loss became nan; skipped this batch (--skip-nonfinite)"] * MAX_SKIPS_IN_A_ROW
    )
    assert not (run_dir / "last").exists()
