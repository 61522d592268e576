"""Decoding speed of `nmt translate`'s engine: sentences/second and target tokens/second for greedy
search and beam 5, batched and one sentence at a time, on a given model and source file.

    python benchmarks/translate_speed.py -m work/multi30k_en_fr/averaged \
        --input ../shared/data/multi30k/test_2016_flickr.en.gz --ref ../shared/data/multi30k/test_2016_flickr.fr.gz

Batched figures are medians of --repeats runs over the whole file; one-at-a-time figures use the
first --single-limit sentences (a full pass at beam 5 takes minutes on 2 cores). With --ref, BLEU
(sacreBLEU, detokenized, cased) of each batched run is printed too, to show that speed costs no quality.
"""

from __future__ import annotations

import argparse
import gzip
import resource
import statistics
import time
from pathlib import Path


def read(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


def timed(translator, lines: list[str], one_by_one: bool) -> tuple[float, int, list[str]]:
    """Seconds, target tokens (EOS included) and translations for one pass over `lines`."""
    start = time.perf_counter()
    ids = translator.encode(lines, warn=lambda message: None)
    hyps = [translator.search_ids([seq])[0] for seq in ids] if one_by_one else translator.search_ids(ids)
    best = [h[0].tokens if h else [] for h in hyps]
    texts = translator.tgt_tok.decode_batch(best)
    seconds = time.perf_counter() - start
    return seconds, sum(len(t) + 1 for t, h in zip(best, hyps) if h), texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--model", type=Path, required=True, help="model or run directory")
    parser.add_argument("--input", type=Path, required=True, help="source sentences, one per line (.gz accepted)")
    parser.add_argument("--ref", type=Path, default=None, help="references, to print BLEU (.gz accepted)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single-limit", type=int, default=100, help="sentences for the one-at-a-time runs")
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch

    from nmt.config import DecodeConfig
    from nmt.metrics import bleu_chrf
    from nmt.translate import Translator

    lines = read(args.input)
    refs = read(args.ref) if args.ref else None
    base = Translator.load(args.model, DecodeConfig(batch_tokens=args.batch_tokens), threads=args.threads)
    print(f"model {args.model}, {len(lines)} sentences from {args.input}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; batched: median of {args.repeats} full passes; "
          f"one at a time: first {args.single_limit} sentences")
    print(f"{'search':<8} {'mode':<14} {'sent/s':>8} {'tgt tok/s':>10} {'seconds':>8} {'BLEU':>6}")
    for beam in (1, 5):
        translator = base.with_config(beam_size=beam)
        for one_by_one in (False, True):
            subset = lines[: args.single_limit] if one_by_one else lines
            runs = [timed(translator, subset, one_by_one) for _ in range(1 if one_by_one else args.repeats)]
            seconds = statistics.median(r[0] for r in runs)
            tokens, texts = runs[0][1], runs[0][2]
            bleu = f"{bleu_chrf(texts, [refs])[0]:.1f}" if refs and not one_by_one else "-"
            name = "greedy" if beam == 1 else f"beam {beam}"
            mode = "one at a time" if one_by_one else "batched"
            print(f"{name:<8} {mode:<14} {len(subset) / seconds:>8.1f} {tokens / seconds:>10.0f} {seconds:>8.2f} {bleu:>6}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
