"""Two `nmt train` on one run directory: while the first holds it, every second one (resume, overwrite,
plain start) is refused with a clear one-line message and changes nothing; the first then finishes exactly
as if it had been alone."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from faults.procs import assert_same_run, resume_args, start_args

pytestmark = pytest.mark.system

LOCKED = "another `nmt train` is using this run directory"


def snapshot(run_dir: Path) -> dict[str, tuple]:
    """Every path under run_dir with its size and modification time, or its target for a link."""
    found = {}
    for path in sorted(run_dir.rglob("*")):
        found[str(path.relative_to(run_dir))] = (
            ("->", os.readlink(path)) if path.is_symlink() else (path.stat().st_size, path.stat().st_mtime_ns)
        )
    return found


def test_second_train_is_refused_while_the_first_runs(train, prepared_sample, reference_runs, tmp_path, figures):
    run_dir = tmp_path / "run"
    first = train(start_args(prepared_sample, run_dir))
    assert first.wait_for(first.has_trained), first.stderr
    os.kill(first.proc.pid, signal.SIGSTOP)  # it keeps the lock and writes nothing while the others try
    try:
        before = snapshot(run_dir)
        attempts = {
            "resume": resume_args(run_dir),
            "overwrite": [*start_args(prepared_sample, run_dir), "--overwrite"],  # would wipe the run if let in
            "start": start_args(prepared_sample, run_dir),
        }
        for what, args in attempts.items():
            second = train(args)
            assert second.wait() == 2, (what, second.stderr)
            stderr = second.stderr
            assert stderr.startswith("error: ") and stderr.count("\n") == 1, (what, stderr)
            if what == "start":  # refused even before the lock: the directory already holds a run
                assert "already holds a run; continue it with `nmt train --resume" in stderr
            else:
                assert LOCKED in stderr, (what, stderr)
            assert snapshot(run_dir) == before, what
            figures["second `nmt train` refused, nothing changed"] += 1
    finally:
        os.kill(first.proc.pid, signal.SIGCONT)
    assert first.wait() == 0, first.stderr
    assert_same_run(run_dir, reference_runs())
