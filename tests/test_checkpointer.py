"""The Checkpointer on its own, with no training: which checkpoints it keeps, the `last` and `best` links, a
process other than the writer writing nothing, a full disk, diverged weights. The writes are fakes that record
what they were given, except where the files themselves matter (a full disk mid-write)."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest
import torch

import nmt.checkpointer
from nmt.checkpointer import Checkpointer, Contents, RunFiles
from nmt.config import ModelConfig
from nmt.distributed import Group
from nmt.errors import TrainingError
from nmt.model import build_model
from nmt.rundir import RunDir, checkpoint_name

pytestmark = pytest.mark.unit

FILES = RunFiles({"spm.model": b"not really a SentencePiece model"}, {"spm": {"src": "spm.model", "tgt": "spm.model"}})


class Recorder:
    """Stands in for save_model_dir (a directory with one file, as a checkpoint's), a barrier and a callback,
    noting every call in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def write(self, path, model, meta, spm, tensors, state, vocab_files=None) -> Path:
        self.calls.append(("write", {"path": path, "meta": meta, "spm": spm, "tensors": tensors, "state": state}))
        path.mkdir(parents=True)
        (path / "model.safetensors").write_bytes(b"x")
        return path

    def barrier(self) -> None:
        self.calls.append(("barrier", None))

    def callback(self, event) -> None:
        self.calls.append(("event", event))

    def contents(self) -> Contents:
        self.calls.append(("contents", None))
        return Contents({"optim.0.exp_avg": torch.zeros(2)}, {"step": len(self.calls)}, {"valid": {"loss": 1.0}})

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.calls]

    def of(self, kind: str) -> list:
        return [value for k, value in self.calls if k == kind]


def checkpointer(run: RunDir, keep_last: int = 2, group: Group | None = None, fake: Recorder | None = None):
    fake = fake or Recorder()
    made = Checkpointer(run, FILES, keep_last, group or Group(), fake.callback, write=fake.write, barrier=fake.barrier)
    return made, fake


def on_disk(run: RunDir) -> list[str]:
    return sorted(p.name for p in run.checkpoints.iterdir())


def test_keeps_the_last_k_and_the_best_and_points_the_links(tmp_path):
    run = RunDir(tmp_path / "r")
    saver, fake = checkpointer(run, keep_last=2)
    for step in (100, 200, 300, 400, 500):
        saver.save(step, torch.nn.Linear(2, 2), fake.contents, best=step == 200)
    assert on_disk(run) == ["step_000200", "step_000400", "step_000500"] == saver.kept
    assert os.readlink(run.path / "best") == "checkpoints/step_000200"
    assert os.readlink(run.path / "last") == "checkpoints/step_000500"
    # trainer.json lists what was on disk when it was written, itself included, before the pruning that followed
    assert fake.of("write")[-1]["state"]["checkpoints"] == ["step_000200", "step_000300", "step_000400", "step_000500"]
    assert [e["step"] for e in fake.of("event")] == [100, 200, 300, 400, 500]


def test_what_is_written_is_the_runs_files_and_the_contents_of_the_step(tmp_path):
    run = RunDir(tmp_path / "r")
    saver, fake = checkpointer(run)
    path = saver.save(7, torch.nn.Linear(2, 2), fake.contents)
    (written,) = fake.of("write")
    assert path == written["path"] == run.checkpoint(7)
    assert written["spm"] == FILES.spm
    assert written["meta"] == {**FILES.meta, "valid": {"loss": 1.0}}
    assert set(written["tensors"]) == {"optim.0.exp_avg"}
    assert written["state"]["checkpoints"] == [checkpoint_name(7)]
    assert fake.kinds() == ["contents", "write", "barrier", "event"]  # nobody leaves while the writer writes


def test_a_step_already_saved_is_not_saved_again(tmp_path):
    """A stop request right after a validation asks for the checkpoint that validation just saved."""
    saver, fake = checkpointer(RunDir(tmp_path / "r"))
    first = saver.save(4, torch.nn.Linear(2, 2), fake.contents, best=True)
    assert saver.save(4, torch.nn.Linear(2, 2), fake.contents) == first
    assert fake.kinds().count("write") == 1 and len(fake.of("event")) == 1
    assert saver.saved_at(4) and not saver.saved_at(5)


def test_a_process_other_than_the_writer_writes_nothing_and_waits(tmp_path):
    run = RunDir(tmp_path / "r", writer=False)
    saver, fake = checkpointer(run, keep_last=1, group=Group(rank=1, world=2))
    for step in (1, 2, 3):
        saver.save(step, torch.nn.Linear(2, 2), fake.contents, best=True)
    assert not run.path.exists()  # no checkpoint, no link, not even the directory
    assert "write" not in fake.kinds()
    # it still takes part in the collectives (the RNG states) and waits for the writer every time
    assert fake.kinds() == ["contents", "barrier", "event"] * 3
    assert saver.saved_at(3)


def test_diverged_weights_are_never_saved(tmp_path):
    run = RunDir(tmp_path / "r")
    saver, fake = checkpointer(run)
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.bias[1] = float("nan")
    with pytest.raises(TrainingError, match=r"^step 9: non-finite values in bias; the weights have diverged"):
        saver.save(9, model, fake.contents)
    assert fake.calls == [] and not run.path.exists()


def tiny_model() -> torch.nn.Module:
    return build_model(
        ModelConfig(src_vocab_size=16, tgt_vocab_size=16, d_model=8, n_heads=1, enc_layers=1, dec_layers=1, ffn_dim=8)
    )


def test_a_full_disk_is_a_one_line_error_and_leaves_the_last_checkpoint_as_it_was(tmp_path, monkeypatch):
    """The real writer, with the disk filling up at the optimizer state (after the weights were written)."""
    run = RunDir(tmp_path / "r")
    fake = Recorder()
    saver = Checkpointer(run, FILES, 2, callback=fake.callback, barrier=fake.barrier)
    model = tiny_model()
    saver.save(1, model, fake.contents)
    before = {p.name: p.read_bytes() for p in run.checkpoint(1).iterdir()}

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    writer = sys.modules[nmt.checkpointer.save_model_dir.__module__]  # the real writer's module
    monkeypatch.setattr(writer, "save_file", full_disk)
    with pytest.raises(TrainingError) as error:
        saver.save(2, model, fake.contents)
    assert str(error.value) == (
        f"step 2: could not write the checkpoint {run.checkpoint(2)} (No space left on device); "
        f"{run.path / 'last'} is intact. Free some disk space, then resume with --resume"
    )
    assert on_disk(run) == ["step_000001"] == saver.kept  # nothing half-written, hidden or not
    assert sorted(os.listdir(run.path)) == ["checkpoints", "last"]
    assert os.readlink(run.path / "last") == "checkpoints/step_000001"
    assert {p.name: p.read_bytes() for p in run.checkpoint(1).iterdir()} == before
    assert [e["step"] for e in fake.of("event")] == [1]


def test_a_full_disk_at_the_first_checkpoint_says_none_was_saved(tmp_path):
    run = RunDir(tmp_path / "r")

    def full_disk(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    saver = Checkpointer(run, FILES, 2, write=full_disk, barrier=lambda: None)
    with pytest.raises(TrainingError, match=r"^step 3: .*\(No space left on device\); no checkpoint was saved yet\."):
        saver.save(3, torch.nn.Linear(2, 2), Recorder().contents)
    assert saver.kept == [] and not (run.path / "last").exists()


def test_a_resumed_run_keeps_what_its_checkpoint_kept_and_forgets_the_future(tmp_path):
    run = RunDir(tmp_path / "r")
    saver, fake = checkpointer(run, keep_last=2)
    for step in (1, 2, 3):
        saver.save(step, torch.nn.Linear(2, 2), fake.contents, best=step == 1)
    state = fake.of("write")[-1]["state"]  # step 3's trainer.json
    fake.write(run.checkpoint(4), None, {}, {}, {}, {})  # killed after writing step 4, before `last` moved

    resumed, _ = checkpointer(RunDir(tmp_path / "r"), keep_last=2)
    resumed.restored(state, run.checkpoint(3))
    resumed.forget_the_future(3, best_step=1)
    assert resumed.kept == ["step_000001", "step_000002", "step_000003"] == on_disk(run)  # step 4 is gone
    assert os.readlink(run.path / "best") == "checkpoints/step_000001"

    older, _ = checkpointer(RunDir(tmp_path / "r"))
    older.restored({}, run.checkpoint(3))  # a trainer.json without the list (an older version left it out)
    assert older.kept == ["step_000003"]
