"""Helpers for the fault-injection tests: `nmt train` as a child process, and what a healthy run directory
and "the same run" mean."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from helpers import TINY_MODEL_FLAGS

# A tiny model that checkpoints every second step. Validation by loss only (greedy BLEU costs time and
# proves nothing here); dropout stays on, so the RNG state has to survive every interruption too.
TINY_ARGS = [
    *TINY_MODEL_FLAGS,
    "--batch-tokens",
    "600",
    "--warmup-steps",
    "4",
    "--lr",
    "0.002",
    "--log-every",
    "1",
    "--valid-every",
    "2",
    "--valid-max-sentences",
    "8",
    "--no-valid-bleu",
    "--early-stop-metric",
    "loss",
    "--keep-last",
    "2",
    "--seed",
    "3",
    "--threads",
    "1",
]
MAX_STEPS = 24
CHECKPOINT = re.compile(r"step_\d{6}")
CHECKPOINT_FILES = {"model.safetensors", "config.json", "spm.model", "trainer.safetensors", "trainer.json"}


class Train:
    """`python -m nmt_cli.main train ...` as a child process, its output in files (a pipe could fill and block it)."""

    def __init__(self, args: list[str], log_dir: Path, preexec_fn=None):
        log_dir.mkdir(parents=True, exist_ok=True)
        n = len(list(log_dir.glob("*.out")))
        self.stdout_path, self.stderr_path = log_dir / f"{n:03d}.out", log_dir / f"{n:03d}.err"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nmt_cli.main", "train", *args],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                preexec_fn=preexec_fn,
            )
        self.started = time.monotonic()

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float = 900) -> int:  # generous: the machine may be busy with other work
        return self.proc.wait(timeout=timeout)

    def wait_for(self, condition, timeout: float = 600, poll: float = 0.001) -> bool:
        """Poll until condition() holds (True) or the process has ended (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            if not self.running():
                return condition()
            time.sleep(poll)
        raise TimeoutError(f"still waiting after {timeout} s; stderr: {self.stderr[-2000:]}")

    def has_trained(self) -> bool:
        return any(line.startswith("step") for line in self.stderr.splitlines())  # progress is on stderr


def start_args(data_dir: Path, run_dir: Path, max_steps: int = MAX_STEPS, **changes: str) -> list[str]:
    """A new run of the tiny model; `changes` (lr="1e30": --lr 1e30) replace TINY_ARGS' values or add flags, as
    nmt refuses a flag given twice."""
    args = [*TINY_ARGS, "--max-steps", str(max_steps)]
    for name, value in changes.items():
        flag = f"--{name.replace('_', '-')}"
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return [str(data_dir), "--out", str(run_dir), *args]


def resume_args(run_dir: Path, *extra: str) -> list[str]:
    return ["--resume", str(run_dir), "--threads", "1", *extra]


# ---------------------------------------------------------------------------------------------
# What a run directory must look like after any fault, and what "the same run" means


def check_run_dir(run_dir: Path) -> None:
    """`last` and `best` point at checkpoints that load; no visible checkpoint is half-written."""
    from nmt.checkpoint import load_trainer_state
    from nmt.modeldir import load_model_dir

    for link in ("last", "best"):
        path = run_dir / link
        if path.is_symlink():
            assert path.exists(), f"{link} -> {os.readlink(path)} dangles"
            load_model_dir(path)
    if (run_dir / "last").exists():
        load_trainer_state((run_dir / "last").resolve())
    folder = run_dir / "checkpoints"
    for child in folder.iterdir() if folder.is_dir() else []:
        if child.name.startswith("."):
            continue  # a temporary of a killed process: never pointed at, removed on resume
        assert CHECKPOINT.fullmatch(child.name), child
        assert {f.name for f in child.iterdir()} == CHECKPOINT_FILES, f"{child} is incomplete"
        load_model_dir(child)


def tensors_of(checkpoint: Path) -> dict:
    from safetensors.torch import load_file

    return {
        f"{name}:{key}": value
        for name in ("model.safetensors", "trainer.safetensors")
        for key, value in load_file(str(checkpoint / name)).items()
    }


def log_records(run_dir: Path) -> list[dict]:
    """train_log.jsonl without what depends on the clock."""
    records = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]
    return [{k: v for k, v in r.items() if k not in ("tokens_per_s", "train_minutes")} for r in records]


def assert_same_run(run_dir: Path, reference: Path) -> None:
    """Bit for bit: the weights, optimizer moments and RNG state of `last`; which checkpoints are kept and which is
    best; every logged loss."""
    import torch

    for link in ("last", "best"):
        assert os.readlink(run_dir / link) == os.readlink(reference / link), link
    got, want = tensors_of((run_dir / "last").resolve()), tensors_of((reference / "last").resolve())
    assert got.keys() == want.keys()
    for name in want:
        assert torch.equal(got[name], want[name]), name
    state, ref_state = (json.loads(((r / "last").resolve() / "trainer.json").read_text()) for r in (run_dir, reference))
    for key in ("step", "epoch", "batch_in_epoch", "best_step", "best_metric", "bad_validations", "checkpoints"):
        assert state[key] == ref_state[key], key
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == sorted(p.name for p in (reference / "checkpoints").iterdir())
    assert log_records(run_dir) == log_records(reference)
