"""Sentence splitters compared on paragraphs made of known sentences (issue 29's choice, before building it).

Consecutive sentences of a held-out split (one sentence per line, e.g. the Tatoeba recipe's carved test) are
joined, --per-paragraph at a time, with one space: the joins are the true boundaries. By default, the
hand-made hard cases of data/sentences/hard.{en,fr} (abbreviations, numbers, quotes, no final punctuation;
one paragraph a line, its sentences tab-separated). Each splitter installed
(pysbd, sentencex, blingfire, sentence-splitter: the Moses nonbreaking-prefix rules) splits each paragraph;
a boundary it finds is right when a true one is there. Printed per splitter and language: boundary precision
and recall, the share of paragraphs split exactly right, and the time per 1,000 paragraphs (median of
--rounds, the splitters alternating). A splitter that is not installed is named and left out:

    pip install pysbd sentencex blingfire sentence-splitter
    python benchmarks/sentence_split.py                     # the hard cases
    python benchmarks/sentence_split.py work/tatoeba/split/test.en work/tatoeba/split/test.fr

Knows no model and no nmt: text in, figures out."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

Splitter = Callable[[str], list[str]]


def splitters(lang: str) -> tuple[dict[str, Splitter], list[str]]:
    """The splitters that are installed, for `lang` (an ISO 639-1 code), and the names of those that are not."""
    found: dict[str, Splitter] = {}
    missing = []
    try:
        import pysbd

        segmenter = pysbd.Segmenter(language=lang, clean=False)
        found["pysbd"] = segmenter.segment
    except ImportError:
        missing.append("pysbd")
    try:
        import sentencex

        found["sentencex"] = lambda text: list(sentencex.segment(lang, text))
    except ImportError:
        missing.append("sentencex")
    try:
        import blingfire

        found["blingfire"] = lambda text: blingfire.text_to_sentences(text).split("\n")
    except ImportError:
        missing.append("blingfire")
    try:
        from sentence_splitter import SentenceSplitter

        moses = SentenceSplitter(language=lang)
        found["moses (sentence-splitter)"] = moses.split
    except ImportError:
        missing.append("sentence-splitter")
    return found, missing


def paragraphs(groups: Iterable[list[str]]) -> Iterator[tuple[str, set[int]]]:
    """(paragraph, the offsets where its 2nd, 3rd... sentence starts) for each group of sentences."""
    for group in groups:
        sentences = [sentence.strip() for sentence in group]
        starts, offset = set(), 0
        for sentence in sentences[:-1]:
            offset += len(sentence) + 1
            starts.add(offset)
        yield " ".join(sentences), starts


def read_groups(path: Path, per: int, limit: int) -> list[list[str]]:
    """Groups of sentences: `per` consecutive lines of a one-sentence-per-line file, or each line of a file
    whose lines hold their sentences tab-separated (the hand-made hard cases, data/sentences/hard.*)."""
    lines = path.read_text(encoding="utf-8").splitlines()[:limit]
    if any("\t" in line for line in lines):
        return [line.split("\t") for line in lines]
    return [lines[i : i + per] for i in range(0, len(lines) - per + 1, per)]


def found_starts(text: str, pieces: list[str]) -> set[int]:
    """Where each piece after the first starts in `text` (the pieces in order, whitespace around them
    dropped by some splitters)."""
    starts, cursor = set(), 0
    for n, piece in enumerate(p.strip() for p in pieces):
        if not piece:
            continue
        at = text.find(piece, cursor)
        if at < 0:  # a splitter that changed the text: count from where it should have been
            at = cursor
        if n:
            starts.add(at)
        cursor = at + len(piece)
    return starts


def score(split: Splitter, made: list[tuple[str, set[int]]]) -> tuple[float, float, float]:
    right = said = true = exact = 0
    for text, starts in made:
        got = found_starts(text, split(text))
        right += len(got & starts)
        said += len(got)
        true += len(starts)
        exact += got == starts
    return right / max(said, 1), right / max(true, 1), exact / len(made)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "files",
        type=Path,
        nargs="*",
        default=sorted((Path(__file__).parents[1] / "data" / "sentences").glob("hard.*")),
        help="sentence files, the language as their suffix (test.en); default: the hand-made hard cases",
    )
    parser.add_argument("--per-paragraph", type=int, default=4)
    parser.add_argument("--limit", type=int, default=2000, help="sentences read from each file")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"time: ms per 1,000 paragraphs, median of {args.rounds} rounds")
    print(f"{'file':14} {'splitter':26} {'paragraphs':>10} {'precision':>9} {'recall':>7} {'exact':>6} {'ms/1k':>8}")
    for path in args.files:
        lang = path.suffix.lstrip(".")
        made = list(paragraphs(read_groups(path, args.per_paragraph, args.limit)))
        found, missing = splitters(lang)
        times: dict[str, list[float]] = {name: [] for name in found}
        for _ in range(args.rounds):  # alternating, so that a busy moment does not fall on one splitter
            for name, split in found.items():
                start = time.perf_counter()
                for text, _starts in made:
                    split(text)
                times[name].append((time.perf_counter() - start) * 1000 / len(made) * 1000)
        for name, split in found.items():
            precision, recall, exact = score(split, made)
            ms = statistics.median(times[name])
            print(f"{path.name:14} {name:26} {len(made):10,} {precision:9.4f} {recall:7.4f} {exact:6.3f} {ms:8.1f}")
        if missing:
            print(f"not installed, left out: {', '.join(missing)}")


if __name__ == "__main__":
    main()
