"""`nmt prepare`'s first stage: a corpus read and cleaned, streaming, into one text file per side (the two
sides on two cores, in two worker processes, when the corpus is large). What a clean line is and how a corpus
is read is nmt.data's; this module knows nothing about SentencePiece, filters or the output directory."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from nmt.data import iter_side_blocks, misaligned
from nmt.errors import DataError

PARALLEL_BYTES = 32 << 20  # corpora this large are cleaned on two cores, one side each

__all__ = ["PARALLEL_BYTES", "clean_corpus", "clean_side", "clean_side_main"]


def clean_side(
    files: tuple[Path, Path] | Path, side: int, src: str, tgt: str, out: Path, report: Callable[[int], None]
) -> int:
    """Write one side of a corpus, cleaned, to `out`; its number of lines."""
    n = 0
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for block in iter_side_blocks(files, side, src, tgt):
            f.write("\n".join(block) + "\n")
            n += len(block)
            report(n)
    return n


def clean_side_main() -> None:
    """Entry point of a worker process (`python -c`, see `clean_corpus`): cleans one side, printing its
    progress and then its outcome on stdout, one JSON line each."""
    args = json.loads(sys.argv[1])
    try:  # Linux: die with the parent, whatever kills it
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != args["parent"]:
            return
    except (OSError, AttributeError):
        pass
    names = args["files"]  # one TSV file or the two sides (see `_clean_in_workers`)
    files = Path(names[0]) if len(names) == 1 else (Path(names[0]), Path(names[1]))
    try:
        n = clean_side(
            files,
            args["side"],
            args["src"],
            args["tgt"],
            Path(args["out"]),
            lambda done: print(json.dumps({"done": done}), flush=True),
        )
        print(json.dumps({"lines": n}), flush=True)
    except DataError as e:
        print(json.dumps({"error": str(e)}), flush=True)


def clean_corpus(
    files: tuple[Path, Path] | Path,
    src: str,
    tgt: str,
    outs: tuple[Path, Path],
    threads: int,
    report: Callable[[str], None],
) -> int:
    """Clean both sides of a corpus into `outs`; its number of pairs, or DataError for a bad line (one core:
    the source side's first; two: the first found) or for sides of different lengths. A large corpus is
    cleaned on two cores, one side each (`_clean_in_workers`)."""
    paths = [files] if isinstance(files, Path) else list(files)

    def lines_of(lang: str) -> Callable[[int], None]:
        return lambda n: report(f"{n:,} lines ({lang})")

    if threads < 2 or sum(f.stat().st_size for f in paths) < PARALLEL_BYTES:
        counts = [clean_side(files, side, src, tgt, outs[side], lines_of(lang)) for side, lang in enumerate((src, tgt))]
    else:
        counts = _clean_in_workers(paths, src, tgt, outs, lambda n: report(f"{n:,} pairs"))
    if counts[0] != counts[1]:  # only two files can disagree: a TSV line holds both sides
        raise misaligned(paths[0], paths[1], counts[0], counts[1])
    return counts[0]


def _clean_in_workers(
    paths: list[Path], src: str, tgt: str, outs: tuple[Path, Path], report: Callable[[int], None]
) -> list[int]:
    """`clean_side` for both sides at once, in two fresh Python processes (not multiprocessing: it would
    re-run the caller's script); the lines of each. The first bad line found stops the other side."""
    workers = [_start_worker(paths, side, src, tgt, outs[side]) for side in (0, 1)]
    last, errors = _follow(workers, report)
    for state in last:  # the source side's error first, when both found one
        if "error" in state:
            raise DataError(state["error"])
    for side, state in enumerate(last):
        if "lines" not in state:
            raise RuntimeError(
                f"cleaning {paths[min(side, len(paths) - 1)]} failed in a worker process "
                f"(exit code {workers[side].returncode}): {errors[side].strip()[-2000:]}"
            )
    return [state["lines"] for state in last]


def _start_worker(paths: list[Path], side: int, src: str, tgt: str, out: Path) -> subprocess.Popen[str]:
    """A Python process running `clean_side_main` for one side (this checkout of nmt first on its path)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, (str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")))
        ),
    }
    code = "from nmt.prepare_clean import clean_side_main; clean_side_main()"
    args = {"files": [str(f) for f in paths], "side": side, "src": src, "tgt": tgt, "out": str(out)}
    return subprocess.Popen(
        [sys.executable, "-c", code, json.dumps({**args, "parent": os.getpid()})],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _follow(workers: list[subprocess.Popen[str]], report: Callable[[int], None]) -> tuple[list[dict], list[str]]:
    """Read the two workers' lines as they come, reporting the progress of the slower, until both are done or
    one has found a bad line; then no worker is left running. Each worker's last JSON line and its stderr."""
    last: list[dict] = [{}, {}]  # each worker's latest JSON line: progress, then its outcome
    errors: list[str] = ["", ""]

    def follow(side: int) -> None:
        stdout, stderr = workers[side].stdout, workers[side].stderr
        assert stdout is not None and stderr is not None  # both are PIPEs
        for line in stdout:
            last[side] = json.loads(line)
        errors[side] = stderr.read()

    def failed() -> bool:
        return any("error" in state for state in last)

    readers = [threading.Thread(target=follow, args=(side,), daemon=True) for side in (0, 1)]
    try:
        for reader in readers:
            reader.start()
        while any(reader.is_alive() for reader in readers) and not failed():
            next(reader for reader in readers if reader.is_alive()).join(0.2)
            report(min(state.get("done", state.get("lines", 0)) for state in last))
    finally:  # done, failed or interrupted: no worker outlives this
        for worker in workers:
            if worker.poll() is None and (failed() or any(r.is_alive() for r in readers)):
                worker.kill()
            worker.wait()
    return last, errors
