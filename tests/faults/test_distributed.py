"""Training on two processes (gloo, CPU), as torchrun and `nmt train --nproc 2` start it: the same updates as one
process accumulating the same batches, the same weights on every process after every step, exact resumption
after all processes are killed, and one stop for all when one process is signalled or dies."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from faults.procs import MAX_STEPS, assert_same_run, check_run_dir, log_records, resume_args, start_args, tensors_of

pytestmark = pytest.mark.system

EXIT_WITHIN_S = 60  # a few seconds on an idle machine; generous, because the machine may be busy
# Two processes and one accumulating their two batches add the same numbers in another order: the losses and
# weights agree to float32 rounding, not bit for bit.
RTOL, ATOL = 1e-5, 1e-6
NO_DROPOUT = ["--dropout", "0.0"]  # dropout draws differ by process, so only a run without it can be compared


def workers(launcher: subprocess.Popen) -> dict[int, int]:
    """rank -> pid of the processes torch.distributed.run started."""
    found: dict[int, int] = {}
    for task in Path(f"/proc/{launcher.pid}/task").iterdir():
        for pid in (task / "children").read_text().split():
            env = dict(
                item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item
            )
            if "RANK" in env:
                found[int(env["RANK"])] = int(pid)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def steps_done(proc) -> int:
    return sum(line.startswith("step") for line in proc.stderr.splitlines())


def test_two_processes_make_the_updates_of_one_accumulating_their_batches(prepared_sample, tmp_path):
    """torchrun, two ranks of one batch each = one process with --accum-steps 2 over the same two batches; after
    every update both ranks hold the same weights, bit for bit."""
    steps = dict(max_steps=6, valid_every="3")
    one = subprocess.run(
        [
            sys.executable,
            "-m",
            "nmt_cli.main",
            "train",
            *start_args(prepared_sample, tmp_path / "one", **steps),
            *NO_DROPOUT,
            "--accum-steps",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr
    digests = tmp_path / "digests"
    digests.mkdir()
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            str(Path(__file__).with_name("dist_worker.py")),
            "train",
            *start_args(prepared_sample, tmp_path / "two", **steps),
            *NO_DROPOUT,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "DIGESTS": str(digests)},
    )
    assert two.returncode == 0, two.stderr
    assert "2 processes x 1 thread" in two.stderr

    ranks = [(digests / f"rank{r}.txt").read_text().split() for r in (0, 1)]
    assert len(ranks[0]) == 6 and ranks[0] == ranks[1]  # identical weights on both ranks after each of the 6 steps

    got, want = log_records(tmp_path / "two"), log_records(tmp_path / "one")
    assert [r["kind"] for r in got] == [r["kind"] for r in want]
    for g, w in zip(got, want):
        for key in ("loss", "ppl", "valid_loss", "valid_ppl"):
            if key in w:
                assert g[key] == pytest.approx(w[key], rel=RTOL), (g, w)
    weights_two, weights_one = (
        tensors_of((tmp_path / "two" / "last").resolve()),
        tensors_of((tmp_path / "one" / "last").resolve()),
    )
    assert set(weights_two) - set(weights_one) == {"trainer.safetensors:rng.cpu.rank1"}  # each rank's RNG is saved
    for name, value in weights_one.items():
        if not name.startswith("trainer.safetensors:rng"):
            torch.testing.assert_close(weights_two[name], value, rtol=RTOL, atol=ATOL, msg=name)


@pytest.fixture(scope="module")
def reference_two(prepared_sample, tmp_path_factory) -> Path:
    """An uninterrupted `nmt train --nproc 2` (dropout on) of MAX_STEPS steps."""
    run_dir = tmp_path_factory.mktemp("reference-two") / "run"
    done = subprocess.run(
        [sys.executable, "-m", "nmt_cli.main", "train", *start_args(prepared_sample, run_dir), "--nproc", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return run_dir


def test_resume_after_all_processes_are_killed_continues_exactly(train, prepared_sample, reference_two, tmp_path):
    run_dir = tmp_path / "run"
    proc = train([*start_args(prepared_sample, run_dir), "--nproc", "2"], preexec_fn=os.setsid)
    assert proc.wait_for(lambda: steps_done(proc) >= 5, poll=0.005), proc.stderr
    ranks = workers(proc.proc).values()  # torchrun starts each in a session of its own
    for pid in ranks:
        os.kill(pid, signal.SIGKILL)
    os.killpg(proc.proc.pid, signal.SIGKILL)  # and the launcher
    proc.wait()
    while any(map(alive, ranks)):
        time.sleep(0.01)
    check_run_dir(run_dir)
    resumed = train([*resume_args(run_dir), "--nproc", "2"])
    assert resumed.wait() == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    assert_same_run(run_dir, reference_two)


def test_sigterm_to_one_process_stops_all_at_one_step_with_one_checkpoint(
    train, prepared_sample, reference_two, tmp_path
):
    run_dir = tmp_path / "run"
    proc = train([*start_args(prepared_sample, run_dir), "--nproc", "2"])
    assert proc.wait_for(lambda: steps_done(proc) >= 3, poll=0.005), proc.stderr
    os.kill(workers(proc.proc)[1], signal.SIGTERM)  # rank 1 only: rank 0 learns it at the next update
    sent = time.monotonic()
    assert proc.wait() == 143, proc.stderr
    assert time.monotonic() - sent < EXIT_WITHIN_S
    stopped = re.search(r"stopped at step (\d+); resume with: nmt train --resume (\S+)", proc.stderr)
    assert stopped and "Traceback" not in proc.stderr, proc.stderr
    step = int(stopped.group(1))
    assert step < MAX_STEPS and os.readlink(run_dir / "last") == f"checkpoints/step_{step:06d}"
    assert max(r["step"] for r in log_records(run_dir)) == step  # no process went on past it
    check_run_dir(run_dir)
    resumed = train([*resume_args(run_dir), "--nproc", "2"])
    assert resumed.wait() == 0, resumed.stderr
    assert_same_run(run_dir, reference_two)


def test_a_process_that_dies_stops_the_others_with_one_line(train, prepared_sample, tmp_path):
    run_dir = tmp_path / "run"
    proc = train([*start_args(prepared_sample, run_dir, max_steps=10_000), "--nproc", "2"])
    assert proc.wait_for(lambda: steps_done(proc) >= 3, poll=0.005), proc.stderr
    os.kill(workers(proc.proc)[1], signal.SIGKILL)
    killed = time.monotonic()
    assert proc.wait() != 0
    assert time.monotonic() - killed < EXIT_WITHIN_S
    assert "error: rank 1 was killed (SIGKILL); the other processes stopped" in proc.stderr, proc.stderr
    assert re.search(
        r"error: rank 0: step \d+: lost touch with the other processes of the run \(.+\); one of them "
        r"has probably died\. Resume with --resume\n",
        proc.stderr,
    ), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    check_run_dir(run_dir)


def test_killing_the_launcher_alone_stops_the_processes_with_a_checkpoint(train, prepared_sample, tmp_path):
    """torchrun puts each process in a session of its own: without PR_SET_PDEATHSIG they would train on, orphaned."""
    run_dir = tmp_path / "run"
    proc = train([*start_args(prepared_sample, run_dir, max_steps=10_000), "--nproc", "2"])
    assert proc.wait_for(lambda: steps_done(proc) >= 3, poll=0.005), proc.stderr
    ranks = workers(proc.proc).values()
    proc.proc.kill()
    proc.wait()
    killed = time.monotonic()
    while any(map(alive, ranks)):
        assert time.monotonic() - killed < EXIT_WITHIN_S, "the processes outlived their launcher"
        time.sleep(0.05)
    step = max(r["step"] for r in log_records(run_dir))
    assert os.readlink(run_dir / "last") == f"checkpoints/step_{step:06d}"  # stopped at a step, with its checkpoint
    check_run_dir(run_dir)
