"""Decoding speed of nmt's PyTorch engine (float32, int8, bf16) side by side with CTranslate2
(float32, int8) on the same model and test set: greedy and beam 5, batched and one sentence at a
time, printing sentences/second, target tokens/second, the ratio to CTranslate2 float32 in the
same setting, BLEU and peak memory; then the start-up figures: wall-clock seconds of the whole process for
`nmt --help`, `echo "How was your day?" | nmt translate -m MODEL` (PyTorch) and the same on its CTranslate2
export, the three alternating, 5 rounds at least (--startup-only: just these).

    python benchmarks/translate_speed.py -m work/multi30k_en_fr/averaged \\
        --input ../shared/data/multi30k/test_2016_flickr.en.gz --ref ../shared/data/multi30k/test_2016_flickr.fr.gz

The model is exported to CTranslate2 (`nmt export`) into a temporary directory first. Each engine
runs in its own process (peak memory is that process's peak RSS, model, Python and libraries
included), the engines alternate within each of --repeats rounds, and figures are medians over the
rounds; a ratio is the median of the rounds' ratios (this machine's speed drifts by 10-30% within
minutes, and an engine's ratio to CTranslate2 in the same round drifts less). Batched runs translate the
whole file (BLEU: sacreBLEU, detokenized, cased); one-at-a-time runs the first --single-limit sentences
(BLEU of the batched run's outputs for those is the same search, so it is not repeated). Needs the ct2 extra:
pip install 'nmt[ct2]'.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from train_speed import in_process

ENGINES = "nmt:fp32,nmt:int8,nmt:bf16,ct2:float32,ct2:int8"
SETTINGS = [(1, False), (1, True), (5, False), (5, True)]  # (beam, one at a time)


def timed(translator, lines: list[str], one_by_one: bool) -> tuple[float, int, list[str]]:
    """Seconds, target tokens (EOS included) and translations for one pass over `lines`, text to text."""
    start = time.perf_counter()
    ids = translator.encode(lines, warn=lambda message: None)
    hyps = [translator.search_ids([seq])[0] for seq in ids] if one_by_one else translator.search_ids(ids)
    best = [h[0].tokens if h else [] for h in hyps]
    texts = translator.tgt_tok.decode_batch(best)
    seconds = time.perf_counter() - start
    return seconds, sum(len(t) + 1 for t, h in zip(best, hyps) if h), texts


def startup_seconds(model: Path, export: Path, repeats: int) -> dict[str, list[float]]:
    """Wall-clock seconds of whole `nmt` processes, start-up included: `nmt --help`, and
    `echo "How was your day?" | nmt translate -m MODEL` on each engine; the three alternate."""
    nmt = shutil.which("nmt", path=str(Path(sys.executable).parent)) or shutil.which("nmt")
    if nmt is None:
        sys.exit("the nmt command is not installed (pip install -e .)")
    commands = {
        "nmt --help": [nmt, "--help"],
        "translate, PyTorch": [nmt, "translate", "-m", str(model)],
        "translate, CTranslate2": [nmt, "translate", "-m", str(export)],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, input=b"How was your day?\n", check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    return times


def run_engine(engine: str, model: str, export: str, args: argparse.Namespace, queue) -> None:
    """One pass of every setting with one engine; seconds, tokens and (batched) outputs of each."""
    from nmt.config import DecodeConfig
    from nmt.data import read_lines
    from nmt.runtime import all_cores, keep_freed_memory

    keep_freed_memory()  # as `nmt translate` does, for every engine alike
    threads = args.threads or all_cores()
    kind, _, precision = engine.partition(":")
    config = DecodeConfig(batch_tokens=args.batch_tokens)
    if kind == "nmt":
        from nmt.translate import Translator

        base = Translator.load(Path(model), config, threads=threads, precision=precision)
    else:
        from nmt.ct2 import CT2Translator

        base = CT2Translator.load(
            Path(export), config, threads=threads, compute_type="default" if precision == "float32" else precision
        )
    lines = read_lines(args.input)
    out = {}
    for beam, one_by_one in SETTINGS:
        translator = base.with_config(beam_size=beam)
        seconds, tokens, texts = timed(translator, lines[: args.single_limit] if one_by_one else lines, one_by_one)
        out[(beam, one_by_one)] = {"seconds": seconds, "tokens": tokens, "texts": None if one_by_one else texts}
    queue.put({"runs": out, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--model", type=Path, required=True, help="model or run directory")
    parser.add_argument("--input", type=Path, required=True, help="source sentences, one per line (.gz accepted)")
    parser.add_argument("--ref", type=Path, default=None, help="references, to print BLEU (.gz accepted)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; figures are medians over them")
    parser.add_argument("--single-limit", type=int, default=100, help="sentences for the one-at-a-time runs")
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per engine (default: all cores)")
    parser.add_argument("--engines", default=ENGINES, help=f"comma-separated, from {ENGINES}")
    parser.add_argument("--startup-only", action="store_true", help="only the start-up figures")
    args = parser.parse_args()
    engines = args.engines.split(",")
    for engine in engines:
        if engine not in ENGINES.split(","):
            parser.error(f"--engines: {engine!r} is not one of {ENGINES}")

    import ctranslate2
    import torch

    from nmt.data import read_lines
    from nmt.export import export_ctranslate2
    from nmt.metrics import bleu_chrf

    lines = read_lines(args.input)
    refs = read_lines(args.ref) if args.ref else None
    results: dict[str, list[dict]] = {e: [] for e in engines}
    with tempfile.TemporaryDirectory() as tmp:
        export = export_ctranslate2(args.model, Path(tmp) / "ct2")
        for _ in range(0 if args.startup_only else args.repeats):
            for engine in engines:  # alternate, so drifting machine load hits all alike
                results[engine].append(in_process(run_engine, engine, str(args.model), str(export), args))
        startup = startup_seconds(args.model, export, max(5, args.repeats))

    threads = args.threads or len(os.sched_getaffinity(0))
    print(
        f"model {args.model}, {len(lines)} sentences from {args.input.name}; torch {torch.__version__}, "
        f"ctranslate2 {ctranslate2.__version__}, {threads} threads; median of {args.repeats} rounds; "
        f"one at a time: first {args.single_limit} sentences; batches of {args.batch_tokens} source tokens"
    )
    if not args.startup_only:
        print(
            f"{'engine':<12} {'search':<7} {'mode':<13} {'sent/s':>8} {'tgt tok/s':>10} {'vs ct2 fp32':>11} "
            f"{'BLEU':>5} {'peak MB':>8}"
        )
    for beam, one_by_one in [] if args.startup_only else SETTINGS:
        n = len(lines[: args.single_limit]) if one_by_one else len(lines)
        seconds = {
            engine: [r["runs"][(beam, one_by_one)]["seconds"] for r in rounds] for engine, rounds in results.items()
        }
        for engine, rounds in results.items():
            runs = [r["runs"][(beam, one_by_one)] for r in rounds]
            sent_s, tok_s = (
                n / statistics.median(seconds[engine]),
                runs[0]["tokens"] / statistics.median(seconds[engine]),
            )
            ratio = "-"
            if "ct2:float32" in seconds:
                ratio = f"{statistics.median(c / s for s, c in zip(seconds[engine], seconds['ct2:float32'])):.2f}x"
            bleu = f"{bleu_chrf(runs[0]['texts'], [refs])[0]:.1f}" if refs and not one_by_one else "-"
            peak = statistics.median(r["peak_mb"] for r in rounds)
            print(
                f"{engine:<12} {'greedy' if beam == 1 else f'beam {beam}':<7} "
                f"{'one at a time' if one_by_one else 'batched':<13} {sent_s:>8.1f} {tok_s:>10,.0f} {ratio:>11} "
                f"{bleu:>5} {peak:>8,.0f}"
            )

    print('start-up, whole process (translate: echo "How was your day?" | nmt translate -m MODEL):')
    for name, times in startup.items():
        print(f"  {name:<24} median {statistics.median(times):.2f} s  (runs {' '.join(f'{t:.2f}' for t in times)})")


if __name__ == "__main__":
    main()
