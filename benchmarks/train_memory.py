"""Resident memory (RSS) of a whole `nmt train` run, step by step: does it stay bounded?

    python benchmarks/train_memory.py DATA                    # the Tatoeba recipe's config, its 60 minutes
    python benchmarks/train_memory.py DATA --max-minutes 10 --samples rss.csv -- --valid-every 100 --log-every 20

DATA is a prepared data directory (`nmt prepare`; for the recipe's own data, the data/ directory that
recipes/tatoeba_en_fr/run.sh makes). The benchmark runs `nmt train DATA --out RUN --config CONFIG
--overwrite [--max-minutes M] [ARGS after --]` as a subprocess, reads its VmRSS from /proc/PID/status
every --interval seconds, and maps each sample to a training step through the run's train_log.jsonl (a
sample belongs to the last step logged when it was taken: train records every log_every updates, valid
records when a validation ends). It prints:
  one row per log record: its kind (train / valid), step, minutes, RSS when the record appeared and the
  peak RSS since the previous record (a jump during validation shows on the valid row);
  the summary: RSS at step 100 (--at-step: the highest sample while the updates up to it ran, its row's
  peak; the sample right after a step that released freed memory would be a trough), at the end of
  training (the same for the last train row, before the final validation), the peak, at exit (the last
  sample: after the final validation and checkpoint), the ratios end / step 100 and peak / step 100, the
  steps reached and the minutes, with the machine (cpus, load average at the end), torch and the commit.
The bound it checks (issue 27): end <= 1.5 x step 100. RSS is the process's own (rank 0 under --nproc).
--autogroup N lowers the run's scheduler priority on a shared Linux machine: the run starts a session of
its own and N is written to /proc/PID/autogroup (the scheduler shares the CPU between sessions first, so
`nice` alone does not yield to other sessions).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOG_FILE = "train_log.jsonl"  # nmt.rundir.LOG_FILE, not imported: the benchmark stays torch-free


def nmt_command() -> list[str]:
    """The `nmt` next to this Python (the project's .venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("nmt")
    return [str(beside)] if beside.exists() else ["nmt"]


def rss_kib(pid: int) -> int | None:
    """VmRSS of a live process in KiB, None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class LogTail:
    """The records appended to a growing train_log.jsonl since the last read (whole lines only)."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.partial = path, 0, b""

    def read(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def mib(kib: int) -> str:
    return f"{kib / 1024:,.0f}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="prepared data directory (nmt prepare)")
    parser.add_argument("--config", type=Path, default=ROOT / "recipes/tatoeba_en_fr/config.toml")
    parser.add_argument("--out", type=Path, default=None, help="run directory (default: a temporary one, removed)")
    parser.add_argument("--max-minutes", type=float, default=None, help="default: the config's max_minutes")
    parser.add_argument("--at-step", type=int, default=100, help="the step whose RSS the end is compared with")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between RSS samples")
    parser.add_argument("--samples", type=Path, default=None, help="write every sample here (CSV)")
    parser.add_argument("--log", type=Path, default=None, help="nmt train's own output (default: discarded)")
    parser.add_argument("--autogroup", type=int, default=None, help="nice value for the run's autogroup (0-19)")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)  # what follows -- goes to nmt train as it is
    args = parser.parse_args(argv[:cut])
    args.extra = argv[cut + 1 :]
    return args


def start_run(args: argparse.Namespace, log: Any) -> subprocess.Popen:
    """`nmt train` in a subprocess, its output to `log`; with --autogroup, its priority lowered."""
    command = [*nmt_command(), "train", str(args.data), "--out", str(args.out), "--config", str(args.config)]
    command += ["--overwrite"]
    if args.max_minutes is not None:
        command += ["--max-minutes", f"{args.max_minutes:g}"]
    command += args.extra
    print("$ nmt " + " ".join(command[1:]), flush=True)
    # with --autogroup, a session of its own: the autogroup is the session's, and lowering this one's would
    # lower the caller's shell too
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=args.autogroup is not None
    )
    if args.autogroup is not None:
        try:
            Path(f"/proc/{process.pid}/autogroup").write_text(str(args.autogroup))
        except OSError as e:
            print(f"cannot lower the run's priority ({e}); going on", file=sys.stderr)
    return process


Row = tuple[dict, float, int, int]  # (log record, seconds, RSS KiB, peak KiB since the previous row)


def logged(records: list[dict]) -> list[dict]:
    """The train and valid records that carry a step."""
    return [r for r in records if r.get("step") is not None and r.get("kind") in ("train", "valid")]


def watch(process: subprocess.Popen, tail: LogTail, interval: float) -> tuple[list[tuple[float, int, int]], list[Row]]:
    """Sample the process's RSS every `interval` seconds until it exits: (seconds, step, RSS KiB) samples, and
    a row for each step record of its log, with the RSS when it was read and the peak since the last row."""
    started = time.perf_counter()
    samples: list[tuple[float, int, int]] = []
    rows: list[Row] = []
    step, window_peak = 0, 0
    try:
        while process.poll() is None:
            kib = rss_kib(process.pid)
            now = time.perf_counter() - started
            if kib is not None:
                window_peak = max(window_peak, kib)
                for record in logged(tail.read()):
                    step = max(step, int(record["step"]))
                    rows.append((record, now, kib, window_peak))
                    window_peak = kib
                samples.append((now, step, kib))
            time.sleep(interval)
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait()
    elapsed = time.perf_counter() - started
    for record in logged(tail.read()):  # the final validation, logged just before the process exited
        rows.append((record, elapsed, samples[-1][2] if samples else 0, window_peak))
    return samples, rows


def report(args: argparse.Namespace, samples: list[tuple[float, int, int]], rows: list[Row], code: int) -> None:
    print(
        f"nmt {version('nmt')}, torch {version('torch')}, {platform.machine()} {os.cpu_count()} cpus, "
        f"load average {os.getloadavg()[0]:.1f} at the end, {datetime.now():%Y-%m-%d %H:%M}, commit {git_commit()}"
    )
    print(f"{'kind':>5} {'step':>6} {'minutes':>8} {'RSS MiB':>8} {'peak MiB':>9} {'tokens/s':>9}")
    for record, seconds, kib, peak in rows:
        speed = f"{record['tokens_per_s']:,.0f}" if "tokens_per_s" in record else "-"
        print(f"{record['kind']:>5} {record['step']:>6} {seconds / 60:>8.1f} {mib(kib):>8} {mib(peak):>9} {speed:>9}")
    if code != 0:
        print(f"nmt train exited with code {code}")
    if not samples:
        sys.exit("no RSS samples: the run ended at once")
    print(summary(args.at_step, samples, rows))


def summary(at_step: int, samples: list[tuple[float, int, int]], rows: list[Row]) -> str:
    step = max([int(r["step"]) for r, *_ in rows] + [samples[-1][1]])
    # RSS "at" a logged step is the highest sample while the updates up to it ran (its row's peak): a sample
    # taken right after a step that released freed memory (nmt.runtime.release_freed_memory) is a trough
    at = next((peak for record, _, _, peak in rows if record["step"] >= at_step), None)
    trained = [peak for record, _, _, peak in rows if record["kind"] == "train"]
    end = trained[-1] if trained else None  # the last updates' level, before the final validation
    peak, exit_kib = max(k for _, _, k in samples), samples[-1][2]
    if not at or not end:
        ratios = f"step {at_step} not reached"
    else:
        ratios = f"end / step {at_step} {end / at:.2f}, peak / step {at_step} {peak / at:.2f}"
    minutes = (rows[-1][1] if rows else samples[-1][0]) / 60
    return (
        f"RSS MiB: step {at_step} {mib(at) if at else '-'}, end of training {mib(end) if end else '-'}, "
        f"peak {mib(peak)}, at exit {mib(exit_kib)}; {ratios}; {step} steps in {minutes:.1f} minutes"
    )


def main() -> None:
    args = parse_args()
    work = None
    if args.out is None:
        work = Path(tempfile.mkdtemp(prefix="nmt-train-memory-"))
        args.out = work / "run"
    log = open(args.log, "w", encoding="utf-8") if args.log else subprocess.DEVNULL  # noqa: SIM115
    try:
        process = start_run(args, log)
        samples, rows = watch(process, LogTail(args.out / LOG_FILE), args.interval)
    finally:
        if log is not subprocess.DEVNULL:
            log.close()
    if work is not None:
        shutil.rmtree(work, ignore_errors=True)
    if args.samples:
        with open(args.samples, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["seconds", "step", "rss_kib"])
            writer.writerows((f"{s:.1f}", st, k) for s, st, k in samples)
    report(args, samples, rows, process.returncode)


if __name__ == "__main__":
    main()
