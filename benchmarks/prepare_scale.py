"""How `nmt prepare` and the start of `nmt train` scale to corpora of millions of pairs, next to the floor
that SentencePiece's own encoding of the same text sets, in one run.

    python benchmarks/prepare_scale.py                        # 0.25, 1 and 4 million pairs
    python benchmarks/prepare_scale.py --sizes 20000 --skip-train --keep --work /tmp/scale

The corpora are synthetic but made of real sentences: each pair joins 2 or 3 random Tatoeba en-fr pairs
with a space, the same picks on both sides (seed 1); the largest size is generated once and the smaller
ones are its first N lines. A 1,000-pair validation corpus comes from the same generator (seed 2).
For each size, each in its own process, timed from the outside and with its own peak RSS (wait4):
  prepare   `nmt prepare --vocab-size 8000` (joint BPE, --spm-sample at its default);
  floor     SentencePiece alone: training on the sample prepare trains on (where this nmt samples; its
            time is shown apart too), then encoding the same corpus.en and corpus.fr with prepare's
            spm.model in 100k-line chunks on all cores, discarding the ids;
  train     `nmt train` of a d256 3+3-layer model for 20 updates, 4096-token batches, validation off
            until the end (loss only): start-up is launch to the `step 1` log line, peak RSS the whole run.
Figures are medians over --repeats runs. MB are 10^6 bytes of text; MiB are peak RSS.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

import numpy as np

CHUNK = 100_000
ENCODE_FLOOR = """
import os, sys, time
from itertools import islice
from pathlib import Path
import sentencepiece as spm
try:  # SentencePiece training on the sample prepare uses (versions of nmt that sample)
    from nmt.data import count_lines
    from nmt.prepare import DEFAULT_SPM_SAMPLE, _spm_input
    from nmt.tokenizer import train_bpe
    files = [Path(p) for p in sys.argv[2:]]
    started = time.perf_counter()
    train_bpe(_spm_input(files, sum(map(count_lines, files)), DEFAULT_SPM_SAMPLE), 8000)
    print("spm_train_s", time.perf_counter() - started, flush=True)
except ImportError:
    pass
sp = spm.SentencePieceProcessor(model_file=sys.argv[1])
for path in sys.argv[2:]:
    with open(path, encoding="utf-8") as f:
        while chunk := [line.rstrip("\\n") for line in islice(f, {chunk})]:
            sp.encode(chunk, num_threads={threads})
"""
STEP_ONE = re.compile(r"^step\s+1[/\s]")  # the first progress line: "step  1/20  epoch ..."
TRAIN_FLAGS = [
    "--max-steps",
    "20",
    "--log-every",
    "1",
    "--valid-every",
    "1000000",
    "--valid-bleu",
    "false",
    "--early-stop-metric",
    "loss",
    "--d-model",
    "256",
    "--enc-layers",
    "3",
    "--dec-layers",
    "3",
    "--ffn-dim",
    "1024",
    "--n-heads",
    "4",
    "--batch-tokens",
    "4096",
    "--overwrite",
]


def nmt_command() -> list[str]:
    script = Path(sys.executable).with_name("nmt")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nmt_cli.main"]


def measure(cmd: list[str], what: str, watch: re.Pattern | None = None) -> dict:
    """Run cmd, draining stdout and stderr in threads; its wall time, own peak RSS (wait4) and, with watch,
    seconds from launch to the first output line that matches. A failure prints its stderr tail and exits."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")
    lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
    seen: list[float] = []

    def drain(pipe, name: str) -> None:
        for line in pipe:
            if watch is not None and not seen and watch.search(line):
                seen.append(time.perf_counter() - start)
            lines[name].append(line)

    readers = [
        threading.Thread(target=drain, args=(proc.stdout, "stdout"), daemon=True),
        threading.Thread(target=drain, args=(proc.stderr, "stderr"), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:  # Ctrl-C: take the child down too
        proc.kill()
        proc.wait()
        raise
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    for reader in readers:
        reader.join()
    if proc.returncode != 0:
        tail = "".join((lines["stdout"] + lines["stderr"])[-30:])
        sys.exit(f"{what} failed (exit code {proc.returncode}): {' '.join(cmd)}\n{tail}")
    if watch is not None and not seen:
        sys.exit(f"{what}: no output line matched {watch.pattern!r}:\n{''.join(lines['stderr'][-30:])}")
    spm_train = [float(line.split()[1]) for line in lines["stdout"] if line.startswith("spm_train_s ")]
    return {
        "s": seconds,
        "peak_mib": usage.ru_maxrss / 1024,
        "first_s": seen[0] if seen else None,
        "spm_train_s": spm_train[0] if spm_train else float("nan"),
    }


def read_tatoeba(folder: Path) -> tuple[list[str], list[str]]:
    sides = []
    for lang in ("en", "fr"):
        with gzip.open(folder / f"tatoeba.{lang}.gz", "rt", encoding="utf-8") as f:
            sides.append([line.rstrip("\n") for line in f])
    if len(sides[0]) != len(sides[1]):
        sys.exit(f"{folder}: tatoeba.en.gz has {len(sides[0]):,} lines, tatoeba.fr.gz {len(sides[1]):,}")
    return sides[0], sides[1]


def synthesize(en: list[str], fr: list[str], n: int, seed: int, prefixes: dict[int, Path]) -> None:
    """n pairs, each 2 or 3 random Tatoeba pairs joined by a space, written to PREFIX.en/.fr for every
    (size, PREFIX) in prefixes: the first `size` lines of the one sequence (what `head` would give)."""
    rng = np.random.default_rng(seed)
    files = {
        size: (open(f"{p}.en", "w", encoding="utf-8"), open(f"{p}.fr", "w", encoding="utf-8"))
        for size, p in prefixes.items()
    }
    try:
        for lo in range(0, n, CHUNK):
            m = min(CHUNK, n - lo)
            k, picks = rng.integers(2, 4, size=m), rng.integers(0, len(en), size=(m, 3))
            rows = [row[:j] for row, j in zip(picks.tolist(), k.tolist())]
            lines_en = [" ".join(en[i] for i in row) + "\n" for row in rows]
            lines_fr = [" ".join(fr[i] for i in row) + "\n" for row in rows]
            for size, (fe, ff) in files.items():
                if lo < size:
                    fe.write("".join(lines_en[: size - lo]))
                    ff.write("".join(lines_fr[: size - lo]))
    finally:
        for handles in files.values():
            for handle in handles:
                handle.close()


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def parse_args() -> tuple[argparse.Namespace, list[int]]:
    """The command line, checked; and the corpus sizes it asks for, smallest first."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="250000,1000000,4000000", help="comma-separated corpus sizes in pairs")
    parser.add_argument(
        "--tatoeba",
        type=Path,
        default=Path("../shared/data/tatoeba"),
        help="directory with tatoeba.en.gz and tatoeba.fr.gz (default: ../shared/data/tatoeba)",
    )
    parser.add_argument("--work", type=Path, default=None, help="work directory (default: a new one under /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory's corpora and outputs")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-train", action="store_true", help="measure prepare and the encoding floor only")
    parser.add_argument("--threads", type=int, default=None, help="threads for all three (default: all cores)")
    args = parser.parse_args()
    try:
        sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",")})
    except ValueError:
        parser.error(f"--sizes {args.sizes!r}: give comma-separated numbers of pairs")
    if sizes[0] < 1 or args.repeats < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--sizes, --repeats and --threads must be positive")
    return args, sizes


def generate(tatoeba: Path, work: Path, sizes: list[int]) -> dict[int, float]:
    """Write each size's corpus (and one validation set) under `work`; the megabytes of text of each size."""
    started = time.perf_counter()
    en, fr = read_tatoeba(tatoeba)
    for size in sizes:
        (work / str(size)).mkdir(exist_ok=True)
    synthesize(en, fr, sizes[-1], 1, {size: work / str(size) / "corpus" for size in sizes})
    synthesize(en, fr, 1000, 2, {1000: work / "valid"})
    print(
        f"generated {sizes[-1]:,} pairs from {len(en):,} Tatoeba pairs in {time.perf_counter() - started:.0f} s "
        f"under {work}",
        file=sys.stderr,
    )
    del en, fr
    return {
        size: sum((work / str(size) / f"corpus.{lang}").stat().st_size for lang in ("en", "fr")) / 1e6 for size in sizes
    }


def measure_size(nmt: list[str], work: Path, size: int, threads: list[str], floor: str, skip_train: bool) -> dict:
    """One round on one size: nmt prepare, the encoding floor and (unless skipped) nmt train's start-up."""
    base = work / str(size)
    shutil.rmtree(base / "prep", ignore_errors=True)
    row = {
        "prepare": measure(
            nmt
            + [
                "prepare",
                "--src",
                "en",
                "--tgt",
                "fr",
                "--train",
                str(base / "corpus"),
                "--valid",
                str(work / "valid"),
                "--out",
                str(base / "prep"),
                "--vocab-size",
                "8000",
                *threads,
            ],
            f"nmt prepare ({size:,} pairs)",
        )
    }
    row["encode"] = measure(
        [
            sys.executable,
            "-c",
            floor,
            str(base / "prep" / "spm.model"),
            str(base / "corpus.en"),
            str(base / "corpus.fr"),
        ],
        f"encoding floor ({size:,} pairs)",
    )
    if not skip_train:
        row["train"] = measure(
            nmt + ["train", str(base / "prep"), "--out", str(base / "run")] + TRAIN_FLAGS + threads,
            f"nmt train ({size:,} pairs)",
            watch=STEP_ONE,
        )
    return row


def report(
    args: argparse.Namespace, sizes: list[int], text_mb: dict[int, float], results: dict[int, list[dict]], note: str
) -> None:
    """The table: medians over the rounds, one row per size, under a header that says what ran where."""

    def med(size: int, part: str, key: str) -> float:
        return statistics.median(r[part][key] for r in results[size])

    trained = "train skipped" if args.skip_train else "train d256 3+3 layers, 20 updates of 4096 tokens"
    print(
        f"nmt prepare at scale: Tatoeba en-fr pairs joined 2-3 at a time, joint BPE 8000, {note}; "
        f"{trained}; threads: {args.threads or os.cpu_count()}; median of {args.repeats} run(s)"
    )
    print(
        f"nmt {version('nmt')}, torch {version('torch')}, sentencepiece {version('sentencepiece')}, "
        f"{os.cpu_count()} cpus, {datetime.now():%Y-%m-%d %H:%M}, commit {git_commit()}"
    )
    print(
        f"{'pairs':>10} {'text MB':>8} {'prepare s':>10} {'prep MiB':>9} {'floor s':>8} {'spm train s':>12} "
        f"{'prep/floor':>11} {'start-up s':>11} {'train MiB':>10}"
    )
    for size in sizes:
        mb = text_mb[size]
        prep, enc = med(size, "prepare", "s"), med(size, "encode", "s")
        train = (
            f"{med(size, 'train', 'first_s'):>11.1f} {med(size, 'train', 'peak_mib'):>10,.0f}"
            if not args.skip_train
            else f"{'-':>11} {'-':>10}"
        )
        print(
            f"{size:>10,} {mb:>8,.1f} {prep:>10.1f} {med(size, 'prepare', 'peak_mib'):>9,.0f} {enc:>8.1f} "
            f"{med(size, 'encode', 'spm_train_s'):>12.1f} {prep / enc:>10.2f}x {train}"
        )
    sys.stdout.flush()


def main() -> None:
    args, sizes = parse_args()
    threads = ["--threads", str(args.threads)] if args.threads else []
    floor = ENCODE_FLOOR.format(chunk=CHUNK, threads=args.threads or os.cpu_count())

    nmt = nmt_command()
    help_text = subprocess.run(nmt + ["prepare", "--help"], capture_output=True, text=True).stdout
    sample = re.search(r"--spm-sample.*?\[default:\s*(\d+)\]", help_text, re.S)
    sample_note = f"--spm-sample at its default ({int(sample.group(1)):,} sentences)" if sample else "no --spm-sample"
    work = args.work or Path(tempfile.mkdtemp(prefix="nmt-prepare-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        text_mb = generate(args.tatoeba, work, sizes)
        results: dict[int, list[dict]] = {size: [] for size in sizes}
        for repeat in range(args.repeats):
            for size in sizes:
                print(f"[{repeat + 1}/{args.repeats}] {size:,} pairs", file=sys.stderr)
                results[size].append(measure_size(nmt, work, size, threads, floor, args.skip_train))
                if not args.keep:  # leave disk for the next size
                    for name in ("prep", "run"):
                        shutil.rmtree(work / str(size) / name, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report(args, sizes, text_mb, results, sample_note)


if __name__ == "__main__":
    main()
