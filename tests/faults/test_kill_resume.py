"""SIGKILL at random moments, in the middle of writing a checkpoint included, then `nmt train --resume`:
every resume succeeds, `last` and `best` always point at checkpoints that load, nothing half-written is
ever visible, and the run ends with exactly the weights, optimizer state, RNG state, kept checkpoints and
logged losses of a run that was never interrupted."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from faults.procs import Train, assert_same_run, check_run_dir, resume_args, start_args

pytestmark = pytest.mark.system

# Where the kills land, in turn: while a checkpoint directory is being written (its temporary directory
# exists), just after one was committed (pointing `last`, pruning, the next steps), somewhere in training,
# and anywhere from the first import onwards (before the lock, while resuming, ...).
MOMENTS = ("writing", "committed", "training", "startup")
MID_WRITE = "while writing a checkpoint"


def last_target(run_dir: Path) -> str | None:
    try:
        return os.readlink(run_dir / "last")
    except OSError:
        return None


def kill_at(proc: Train, moment: str, run_dir: Path, rng: random.Random) -> str | None:
    """SIGKILL `proc` at `moment`; returns what it was doing when it died, or None if it finished first."""
    folder, mark = run_dir / "checkpoints", f".tmp-{proc.proc.pid}"

    def writing() -> bool:
        try:
            return any(name.endswith(mark) for name in os.listdir(folder))
        except FileNotFoundError:
            return False

    if moment == "writing":
        proc.wait_for(writing)
    elif moment == "committed":
        before = last_target(run_dir)
        proc.wait_for(lambda: last_target(run_dir) != before)
        time.sleep(rng.uniform(0, 0.02))
    elif moment == "training":
        proc.wait_for(proc.has_trained, poll=0.005)
        time.sleep(rng.uniform(0, 0.2))
    else:
        time.sleep(rng.uniform(0.05, 2.5))
    if not proc.running():
        return None
    os.kill(proc.proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    return MID_WRITE if writing() else moment  # a killed writer leaves its temporary directory behind


def kill_and_resume(train, data_dir: Path, run_dir: Path, max_steps: int, kills: int, seed: int) -> Counter:
    """Start a run, then SIGKILL it `kills` times, resuming after each, and let the last leg finish."""
    rng = random.Random(seed)
    done: Counter = Counter()
    while True:
        fresh = not (run_dir / "config.json").exists()  # killed before the run existed: start it again
        proc = train(start_args(data_dir, run_dir, max_steps) if fresh else resume_args(run_dir))
        if sum(done.values()) < kills:
            what = kill_at(proc, MOMENTS[sum(done.values()) % len(MOMENTS)], run_dir, rng)
            if what is not None:
                done[what] += 1
                check_run_dir(run_dir)
                continue
        assert proc.wait() == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        return done


def run_with_kills(train, prepared_sample, reference_runs, tmp_path, figures, max_steps: int, kills: int, seed: int):
    run_dir = tmp_path / "run"
    done = kill_and_resume(train, prepared_sample, run_dir, max_steps, kills, seed)
    assert sum(done.values()) == kills, (
        f"the run ended after {sum(done.values())} kills ({dict(done)}); give it more steps"
    )
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")], "leftovers were not removed"
    check_run_dir(run_dir)
    assert_same_run(run_dir, reference_runs(max_steps))
    figures["kills survived (SIGKILL then --resume)"] += kills
    figures["  of them while writing a checkpoint"] += done[MID_WRITE]
    return done


def test_killed_three_times_ends_as_never_killed(train, prepared_sample, reference_runs, tmp_path, figures):
    done = run_with_kills(train, prepared_sample, reference_runs, tmp_path, figures, max_steps=24, kills=3, seed=1)
    print(f"kills: {dict(done)}")


@pytest.mark.slow
def test_killed_two_dozen_times_ends_as_never_killed(train, prepared_sample, reference_runs, tmp_path, figures):
    done = run_with_kills(train, prepared_sample, reference_runs, tmp_path, figures, max_steps=160, kills=24, seed=2)
    print(f"kills: {dict(done)}")
    assert done[MID_WRITE] >= 3, f"too few kills landed inside a checkpoint write: {dict(done)}"
