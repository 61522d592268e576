"""Paragraphs, not lines: BLEU of a model on lines that hold several sentences, with and without splitting them,
against the same sentences translated one per line (issue 29's figure), and the sentence splitter's share of
the translate time.

Consecutive sentences of a held-out split (one per line, e.g. the Tatoeba recipe's carved test) are joined,
--per-paragraph at a time, with one space: a paragraph and its reference paragraph. Printed, each as BLEU
(sacreBLEU, detokenized, cased) against the reference paragraphs:

- sentence by sentence: every sentence translated on its own line (--split none), the outputs joined the
  same way: the ceiling, what a careful user who splits by hand gets;
- paragraph, --split none: each paragraph given to the model as one sentence (nmt before issue 29);
- paragraph, split by SPLITTER: each paragraph cut by a sentence splitter, the pieces translated on their own
  lines and joined back with the paragraph's own spacing; "sentencex (nmt)" is nmt's default path itself,
  `nmt.load(MODEL).translate(paragraphs)`, the others (pysbd, blingfire, sentence-splitter, when installed)
  do the same with another splitter in front of --split none.

Then the splitter's time: split_sentences over all paragraphs (median of --rounds) against the time of the
default translate call, as a share.

    python benchmarks/paragraphs.py -m work/tatoeba_en_fr/averaged \\
        --src work/tatoeba_en_fr/split/test.en --ref work/tatoeba_en_fr/split/test.fr
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from sentence_split import splitters


def groups(lines: list[str], per: int) -> list[list[str]]:
    return [lines[i : i + per] for i in range(0, len(lines) - per + 1, per)]


def joined(parts: list[str], per: int) -> list[str]:
    return [" ".join(group) for group in groups(parts, per)]


def bleu(hyps: list[str], refs: list[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_bleu(hyps, [refs]).score)


def split_translated(translator, paragraphs: list[str], split) -> list[str]:
    """Each paragraph cut by `split` (pieces in order), the pieces translated one per line, joined with a space."""
    pieces = [[p.strip() for p in split(text) if p.strip()] for text in paragraphs]
    flat = [piece for group in pieces for piece in group]
    out = iter(translator.translate(flat))
    return [" ".join(next(out) for _ in group) for group in pieces]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--model", type=Path, required=True)
    parser.add_argument("--src", type=Path, required=True, help="one sentence per line; its suffix is the language")
    parser.add_argument("--ref", type=Path, required=True)
    parser.add_argument("--per-paragraph", type=int, default=4)
    parser.add_argument("--limit", type=int, default=2000, help="sentences read")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the splitter's timing")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import nmt
    from nmt.sentences import split_sentences

    per = args.per_paragraph
    src = args.src.read_text(encoding="utf-8").splitlines()[: args.limit]
    ref = args.ref.read_text(encoding="utf-8").splitlines()[: args.limit]
    src = src[: len(src) // per * per]
    ref = ref[: len(src)]
    paragraphs, refs = joined(src, per), joined(ref, per)
    lang = args.src.suffix.lstrip(".")
    one_per_line = nmt.load(args.model, threads=args.threads, split="none")
    default = nmt.load(args.model, threads=args.threads)
    print(f"{args.model}: {len(paragraphs):,} paragraphs of {per} sentences from {args.src}")
    print(f"{'setting':36} {'BLEU':>6} {'vs sentence by sentence':>24}")

    ceiling = bleu(joined(one_per_line.translate(src), per), refs)
    rows = [("sentence by sentence (--split none)", ceiling)]
    rows.append(("paragraph, --split none", bleu(one_per_line.translate(paragraphs), refs)))
    started = time.perf_counter()
    default_out = default.translate(paragraphs)
    translate_seconds = time.perf_counter() - started
    rows.append(("paragraph, sentencex (nmt default)", bleu(default_out, refs)))
    found, missing = splitters(lang)
    for name, split in found.items():
        if name != "sentencex":
            rows.append((f"paragraph, {name}", bleu(split_translated(one_per_line, paragraphs, split), refs)))
    for name, score in rows:
        print(f"{name:36} {score:6.2f} {score - ceiling:+24.2f}")
    if missing:
        print(f"splitters not installed, left out: {', '.join(missing)}")

    times = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for text in paragraphs:
            split_sentences(text, lang)
        times.append(time.perf_counter() - start)
    split_seconds = statistics.median(times)
    print(
        f"splitting: {split_seconds * 1000:.1f} ms (median of {args.rounds}) of the default translate call's "
        f"{translate_seconds:.1f} s: {split_seconds / translate_seconds:.2%}"
    )


if __name__ == "__main__":
    main()
