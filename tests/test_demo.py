"""The README's demo is what `make demo` prints: a fixed number of updates on a fixed number of threads, so the
same lines come out on a slow or busy machine as on a quiet one; only the timings differ. Slow (5 minutes on 2
cores): `make test-slow`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.system, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
TIMING = re.compile(r" in [0-9.]+ s \(|training minutes")  # lines that hold a duration or a speed


def readme_demo() -> list[str]:
    """The lines of the README's demo block, timings and the '...' of its abridging left out."""
    text = (ROOT / "README.md").read_text()
    block = text.split("`make demo` prepares", 1)[1].split("```\n", 2)[1]
    return [line for line in block.splitlines() if line.strip() not in ("", "...") and not TIMING.search(line)]


def test_make_demo_prints_the_readme(tmp_path):
    """Run in a folder of its own that sees the checkout's data and recipes, so that it writes work/demo there
    (the paths, and so the score table's widths, as in the README) and not into the checkout."""
    for name in ("Makefile", "pyproject.toml", "data", "recipes"):
        (tmp_path / name).symlink_to(ROOT / name)
    venv = Path(sys.executable).parents[1]  # the set-up this suite runs in, reused by make
    done = subprocess.run(
        ["make", "-s", "demo", f"VENV={venv}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # interleaved as in the README, which is this output written to a file
        text=True,
        timeout=3600,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    lines = iter(done.stdout.splitlines())
    for line in readme_demo():  # in the README's order, each found among what make printed
        assert any(got == line for got in lines), f"the README's demo line is not printed (or out of order): {line}"
