"""Fault injection: `nmt train` runs as a real process (so that it can be killed, signalled, locked out or
starved of disk) on the prepared sample with a tiny model. Every test compares the end of a damaged run
with the end of an uninterrupted one, bit for bit. The figures (kills survived, inputs tried, crashes,
lost lines) are added up and printed at the end of the session."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from faults.procs import MAX_STEPS, Train, start_args

FIGURES = pytest.StashKey[Counter]()


def pytest_configure(config):
    config.stash[FIGURES] = Counter()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    figures = config.stash.get(FIGURES, None)
    if figures:
        terminalreporter.write_sep("-", "fault-injection figures")
        for name, value in figures.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture
def figures(request) -> Counter:
    """Add to the session's figures: figures['kills survived'] += 1."""
    return request.config.stash[FIGURES]


@pytest.fixture
def train(tmp_path):
    """train(args) starts `nmt train args` and returns a Train; whatever still runs at the end is killed."""
    started: list[Train] = []

    def start(args, **kwargs) -> Train:
        started.append(Train([str(a) for a in args], tmp_path / "logs", **kwargs))
        return started[-1]

    yield start
    for proc in started:
        if proc.running():  # a failed test must not leave training processes behind
            proc.proc.kill()
            proc.proc.wait()


@pytest.fixture(scope="session")
def reference_runs(prepared_sample, tmp_path_factory):
    """reference_runs(max_steps): the run directory of one uninterrupted run, made once per max_steps."""
    made: dict[int, Path] = {}

    def get(max_steps: int = MAX_STEPS) -> Path:
        if max_steps not in made:
            run_dir = tmp_path_factory.mktemp("reference") / "run"
            proc = Train(start_args(prepared_sample, run_dir, max_steps), run_dir.parent / "logs")
            assert proc.wait() == 0, proc.stderr
            made[max_steps] = run_dir
        return made[max_steps]

    return get
