"""The disk fills up while a checkpoint is written: a clear one-line error naming the step, the previous
checkpoint intact and still `last`, nothing half-written left behind, and the run resumable to exactly the
end of an uninterrupted run.

The full disk is a real failing write: the training process runs under a file-size limit
(RLIMIT_FSIZE; Python ignores SIGXFSZ, so the write fails with EFBIG) small enough that the weights or
the optimizer state cannot be written, but everything before them can."""

from __future__ import annotations

import os
import re

import pytest

from faults.procs import MAX_STEPS, assert_same_run, check_run_dir, resume_args, start_args

resource = pytest.importorskip("resource")

pytestmark = pytest.mark.system


# save_model_dir writes the weights, config.json, spm.model, the optimizer state, trainer.json: the limit lets
# through everything written before the failing file
WRITTEN_BEFORE = {"model.safetensors": [], "trainer.safetensors": ["model.safetensors", "config.json", "spm.model"]}


def file_size_limit(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.parametrize(
    "limit, failing",
    [
        (100_000, "model.safetensors"),
        pytest.param(300_000, "trainer.safetensors", marks=pytest.mark.slow),
    ],
)
def test_full_disk_during_a_checkpoint_is_a_clear_error_and_resumable(
    limit, failing, train, prepared_sample, reference_runs, tmp_path, figures
):
    run_dir = tmp_path / "run"
    first = train(start_args(prepared_sample, run_dir, max_steps=6))
    assert first.wait() == 0, first.stderr
    previous = (run_dir / "last").resolve()
    kept = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    sizes = {f.name: f.stat().st_size for f in previous.iterdir()}
    assert sizes[failing] > limit > max([sizes[name] for name in WRITTEN_BEFORE[failing]], default=0)

    starved = train(resume_args(run_dir, "--max-steps", str(MAX_STEPS)), preexec_fn=file_size_limit(limit))
    assert starved.wait() == 2, starved.stderr
    error = starved.stderr.splitlines()[-1]
    assert "Traceback" not in starved.stderr and error.startswith("error: "), starved.stderr
    assert re.fullmatch(
        r"error: step 8: could not write the checkpoint \S+step_000008 \(File too large.*\); "
        r"\S+ is intact\. Free some disk space, then resume with --resume",
        error,
    ), error
    assert f"{run_dir / 'last'} is intact" in error
    assert (run_dir / "last").resolve() == previous  # still the previous checkpoint, and it loads
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == kept  # no half-written step_000008
    check_run_dir(run_dir)

    resumed = train(resume_args(run_dir, "--max-steps", str(MAX_STEPS)))
    assert resumed.wait() == 0, resumed.stderr
    assert_same_run(run_dir, reference_runs())
    figures["full disk while checkpointing: clear error, resumed exactly"] += 1


def test_full_disk_from_the_start_leaves_no_checkpoint_and_says_so(train, prepared_sample, tmp_path):
    run_dir = tmp_path / "run"
    starved = train(start_args(prepared_sample, run_dir), preexec_fn=file_size_limit(100_000))
    assert starved.wait() == 2, starved.stderr
    error = starved.stderr.splitlines()[-1]
    assert "Traceback" not in starved.stderr and error.startswith("error: step 2: could not write"), starved.stderr
    assert "no checkpoint was saved yet" in error
    assert not (run_dir / "last").exists()
    assert not os.listdir(run_dir / "checkpoints")
