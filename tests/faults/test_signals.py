"""SIGTERM and SIGINT (Ctrl-C): a checkpoint of the step reached is saved, the process exits within seconds
saying how to resume, and resuming ends exactly as a run that was never stopped. A second signal stops at
once, and still every checkpoint stays whole."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from faults.procs import assert_same_run, check_run_dir, resume_args, start_args

pytestmark = pytest.mark.system

EXIT_WITHIN_S = 30  # about 1 s on an idle machine; generous, because the machine may be busy


def steps_done(proc) -> int:
    return sum(line.startswith("step") for line in proc.stderr.splitlines())  # progress is on stderr


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_signal_saves_a_checkpoint_and_exits_within_seconds(
    sig, code, train, prepared_sample, reference_runs, tmp_path, figures
):
    run_dir = tmp_path / "run"
    proc = train(start_args(prepared_sample, run_dir))
    assert proc.wait_for(lambda: steps_done(proc) >= 3, poll=0.005), proc.stderr
    os.kill(proc.proc.pid, sig)
    sent = time.monotonic()
    assert proc.wait() == code, proc.stderr
    seconds = time.monotonic() - sent
    assert seconds < EXIT_WITHIN_S
    stderr = proc.stderr
    assert f"{sig.name}: saving a checkpoint" in stderr and "Traceback" not in stderr
    stopped = re.search(r"stopped at step (\d+); resume with: nmt train --resume (\S+)", stderr)
    assert stopped and stopped.group(2) == str(run_dir), stderr
    step = int(stopped.group(1))
    assert os.readlink(run_dir / "last") == f"checkpoints/step_{step:06d}"  # the step it stopped at, not an older one
    check_run_dir(run_dir)

    resumed = train(resume_args(run_dir))
    assert resumed.wait() == 0, resumed.stderr
    assert any(
        line.startswith("resumed from") and line.endswith(f"(step {step})")  # "resumed from RUN/... (step N)"
        for line in resumed.stderr.splitlines()
    ), resumed.stderr
    assert_same_run(run_dir, reference_runs())
    figures[f"{sig.name}: checkpoint saved and exited, resumed exactly"] += 1
    figures[f"{sig.name}: slowest exit (s)"] = max(figures[f"{sig.name}: slowest exit (s)"], round(seconds, 2))


def test_second_signal_while_saving_stops_at_once_and_breaks_nothing(train, prepared_sample, reference_runs, tmp_path):
    run_dir = tmp_path / "run"
    proc = train(start_args(prepared_sample, run_dir))
    assert proc.wait_for(lambda: steps_done(proc) >= 3, poll=0.005), proc.stderr
    folder, mark = run_dir / "checkpoints", f".tmp-{proc.proc.pid}"
    os.kill(proc.proc.pid, signal.SIGTERM)
    # the second signal lands while the stop checkpoint is being written (or right after it, at worst)
    proc.wait_for(lambda: any(name.endswith(mark) for name in os.listdir(folder)))
    os.kill(proc.proc.pid, signal.SIGTERM)
    assert proc.wait() in (-signal.SIGTERM, 143)
    check_run_dir(run_dir)
    resumed = train(resume_args(run_dir))
    assert resumed.wait() == 0, resumed.stderr
    assert_same_run(run_dir, reference_runs())
