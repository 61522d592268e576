"""The run directory on its own, with no training: pruning, forgetting the future after a crash, the
log, the lock, and a non-writer (a rank other than 0) that writes nothing."""

from __future__ import annotations

import json
import os

import pytest

from nmt.errors import CheckpointError, ConfigError
from nmt.rundir import LOG_FILE, RunDir, checkpoint_name

pytestmark = pytest.mark.unit


def _fake_checkpoints(run: RunDir, steps: list[int]) -> list[str]:
    for step in steps:
        run.checkpoint(step).mkdir(parents=True)
        (run.checkpoint(step) / "model.safetensors").write_bytes(b"x")
    return [checkpoint_name(step) for step in steps]


def _on_disk(run: RunDir) -> list[str]:
    return sorted(p.name for p in run.checkpoints.iterdir())


def test_prune_keeps_the_last_k_and_the_best(tmp_path):
    run = RunDir(tmp_path / "r")
    saved = _fake_checkpoints(run, [100, 200, 300, 400, 500])
    run.saved(run.checkpoint(200), best=True)
    run.saved(run.checkpoint(500), best=False)
    kept = run.prune(saved, keep_last=2)
    assert kept == ["step_000200", "step_000400", "step_000500"] == _on_disk(run)
    assert os.readlink(tmp_path / "r" / "best").endswith("step_000200")
    assert run.last() == run.checkpoint(500).resolve()
    assert run.prune(kept, keep_last=0) == ["step_000200", "step_000500"]  # at least one, always


def test_forget_the_future_makes_the_directory_agree_with_the_state(tmp_path):
    run = RunDir(tmp_path / "r")
    saved = _fake_checkpoints(run, [100, 200, 300, 400])
    run.saved(run.checkpoint(400), best=True)  # written, `best` moved, then killed before `last` moved
    run.saved(run.checkpoint(300), best=False)
    (tmp_path / "r" / "last").unlink()
    run.saved(run.checkpoint(300), best=False)
    # the resumed state: step 300, best at 200, three checkpoints known, keep the last 2
    kept = run.forget_the_future(300, 200, saved[:3], keep_last=2)
    assert kept == ["step_000200", "step_000300"] == _on_disk(run)
    assert os.readlink(tmp_path / "r" / "best").endswith("step_000200")
    assert run.forget_the_future(300, None, kept, keep_last=2) == kept  # no best yet: the link goes
    assert not (tmp_path / "r" / "best").is_symlink()


def test_the_log_is_truncated_to_the_resumed_step_and_torn_lines_dropped(tmp_path):
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    for step in (1, 2, 3, 4):
        run.log({"kind": "train", "step": step})
    with open(run.path / LOG_FILE, "a") as f:
        f.write('{"kind": "train", "st')  # killed mid-line
    run.truncate_log(2)
    assert [json.loads(line)["step"] for line in (run.path / LOG_FILE).read_text().splitlines()] == [1, 2]


def test_one_writer_per_run_directory(tmp_path):
    first, second = RunDir(tmp_path / "r"), RunDir(tmp_path / "r")
    first.lock()
    with pytest.raises(ConfigError, match="another `nmt train` is using this run directory"):
        second.lock()
    first.close()
    second.lock()
    second.close()


def test_a_dangling_last_link_is_a_clear_error(tmp_path):
    run = RunDir(tmp_path / "r")
    _fake_checkpoints(run, [100])
    run.saved(run.checkpoint(100), best=False)
    (run.checkpoint(100) / "model.safetensors").unlink()
    run.checkpoint(100).rmdir()
    with pytest.raises(CheckpointError, match="points at .*step_000100, which is missing"):
        run.last()


def test_a_non_writer_writes_nothing(tmp_path):
    writer = RunDir(tmp_path / "r")
    saved = _fake_checkpoints(writer, [100, 200, 300])
    writer.saved(writer.checkpoint(200), best=True)
    (tmp_path / "r" / ".x.tmp-1").write_text("a leftover")
    before = sorted(str(p) for p in (tmp_path / "r").rglob("*"))

    reader = RunDir(tmp_path / "r", writer=False)
    reader.lock()
    reader.write_config({"a": 1})
    reader.log({"kind": "train", "step": 1})
    reader.saved(reader.checkpoint(300), best=True)
    assert reader.prune(saved, keep_last=1) == saved
    assert reader.forget_the_future(100, None, saved, keep_last=1) == saved
    reader.remove_leftovers()
    reader.truncate_log(0)
    reader.wipe()
    reader.close()
    assert sorted(str(p) for p in (tmp_path / "r").rglob("*")) == before
    assert reader.last() == writer.checkpoint(200).resolve()  # it still reads
