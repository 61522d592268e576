"""`nmt prepare`'s encoding stage: the cleaned text of a split encoded chunk by chunk on all cores (the next chunk
on a background thread while this one is written), its ids written to raw files and then into
NAME.ids.safetensors. Which training pairs are kept is decided by a `ChunkFilter` it is handed; it knows nothing
about the settings of a preparation or the output directory as a whole."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import chain, islice
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from nmt.data import write_ids
from nmt.errors import DataError
from nmt.layout import ids_file
from nmt.tokenizer import Tokenizer

CHUNK = 50_000  # pairs encoded at a time: bounds memory, and feeds SentencePiece's threads

__all__ = ["CHUNK", "Chunk", "ChunkFilter", "Unknown", "encode_split"]

# A chunk of encoded pairs: source and target text, their ids, and the ids' lengths (one per pair).
Chunk = tuple[list[str], list[str], list[list[int]], list[list[int]], np.ndarray, np.ndarray]


class ChunkFilter(Protocol):
    """Which pairs of each chunk of the training split are kept (their text written out as it goes; `kept`, the
    mask of the last chunk's), and how many each filter dropped, by name."""

    counts: dict[str, int]
    kept: np.ndarray

    def __call__(self, chunk: Chunk) -> Chunk: ...

    def close(self) -> None: ...


class Unknown:
    """The pairs of a split whose ids hold <unk> (`unk_id`): text the vocabulary cannot cover, which a model without
    byte fallback (one made elsewhere) cannot spell. Counts them, how many of them the training filters kept,
    and where the first few are (FILE:LINE, lines of the split's first file, counted from 1)."""

    EXAMPLES = 5

    def __init__(self, unk_id: int, file: str) -> None:
        self.unk_id, self.file = unk_id, file
        self.pairs = self.kept = 0
        self.examples: list[str] = []

    def rows(self, src_ids: list[list[int]], tgt_ids: list[list[int]]) -> np.ndarray:
        """The pairs of a chunk that hold <unk>, as a mask."""
        unk = self.unk_id
        return np.fromiter((unk in s or unk in t for s, t in zip(src_ids, tgt_ids)), dtype=bool, count=len(src_ids))

    def add(self, first: int, holding: np.ndarray, kept: np.ndarray | None) -> None:
        """A chunk whose first pair is pair `first` (from 0) of the split; `kept`, the filters' mask, if any."""
        found = np.flatnonzero(holding)
        self.pairs += len(found)
        self.kept += int(holding[kept].sum()) if kept is not None else len(found)
        for i in found[: self.EXAMPLES - len(self.examples)]:
            self.examples.append(f"{self.file}:{first + int(i) + 1}")

    def entry(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "kept": self.kept, "examples": self.examples}


def _text_chunks(src: Path, tgt: Path) -> Iterator[tuple[list[str], list[str]]]:
    """CHUNK aligned lines at a time from the two cleaned sides."""
    with open(src, encoding="utf-8", newline="\n") as fs, open(tgt, encoding="utf-8", newline="\n") as ft:
        while src_lines := [line[:-1] for line in islice(fs, CHUNK)]:
            yield src_lines, [line[:-1] for line in islice(ft, CHUNK)]


def _encode_ahead(
    texts: Iterator[tuple[list[str], list[str]]], src_tok: Tokenizer, tgt_tok: Tokenizer, threads: int
) -> Iterator[tuple[list[str], list[str], list[list[int]], list[list[int]]]]:
    """Each chunk of texts with its ids. The next chunk is encoded on a background thread while the caller
    works on this one: SentencePiece lets go of the GIL, so Python's share of the work overlaps its own."""

    def encode(
        src_text: list[str], tgt_text: list[str]
    ) -> tuple[list[str], list[str], list[list[int]], list[list[int]]]:
        return src_text, tgt_text, src_tok.encode_batch(src_text, threads), tgt_tok.encode_batch(tgt_text, threads)

    with ThreadPoolExecutor(1) as pool:
        pending = None
        for src_text, tgt_text in texts:
            future = pool.submit(encode, src_text, tgt_text)
            if pending is not None:
                yield pending.result()
            pending = future
        if pending is not None:
            yield pending.result()


def encode_split(
    name: str,
    langs: tuple[str, str],
    text: dict[str, Path],
    tmp: Path,
    split_files: list[Path],
    n_lines: int,
    tokenizers: tuple[Tokenizer, Tokenizer],
    threads: int,
    stage: Callable[[str], None],
    filtered: ChunkFilter | None = None,
    unk_id: int | None = None,
) -> dict[str, Any]:
    """Encode split `name` from its cleaned `text` (a file per language) into `tmp`/NAME.ids.safetensors, through
    `filtered` if given (which then wrote the text it kept: the text files given are removed). Returns the split's
    entry in prepare.json; with `unk_id`, it says how many pairs hold that id (`Unknown`)."""
    src, tgt = langs
    entry: dict[str, Any] = {"lines": n_lines, "files": [str(f) for f in split_files]}
    raw = {lang: tmp / f".{name}.{lang}.ids" for lang in langs}
    unknown = Unknown(unk_id, str(split_files[0])) if unk_id is not None else None

    def progress(done: int, rate: float) -> None:
        stage(f"encoding {name}: {done:,} of {n_lines:,} pairs ({rate:,.0f} pairs/s)")

    try:
        sl, tl = _encode_to_raw(langs, text, raw, tokenizers, threads, filtered, progress, unknown)
    finally:
        if filtered is not None:
            filtered.close()
    if unknown is not None:
        entry["unk"] = unknown.entry()
    if filtered is not None:
        entry["filtered"] = filtered.counts
        entry["kept"] = len(sl)
        if not len(sl):
            raise DataError(f"{split_files[0]}: every training pair was filtered out; relax the filters")
        for lang in langs:
            text[lang].unlink()
    stage(f"writing {name}")
    write_ids(tmp / ids_file(name), raw[src], sl, raw[tgt], tl)
    for path in raw.values():
        path.unlink()
    entry["tokens"] = {src: int(sl.sum()), tgt: int(tl.sum())}
    return entry


def _encode_to_raw(
    langs: tuple[str, str],
    text: dict[str, Path],
    raw: dict[str, Path],
    tokenizers: tuple[Tokenizer, Tokenizer],
    threads: int,
    filtered: ChunkFilter | None,
    progress: Callable[[int, float], None],
    unknown: Unknown | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ids of every pair kept, appended to the `raw` file of each side as little-endian int32; the lengths
    of each side's ids, one per pair kept. `unknown` counts the pairs that hold <unk>."""
    src, tgt = langs
    lens: dict[str, list[np.ndarray]] = {lang: [] for lang in langs}
    with open(raw[src], "wb") as rs, open(raw[tgt], "wb") as rt:
        done, started = 0, time.perf_counter()
        for src_text, tgt_text, src_ids, tgt_ids in _encode_ahead(
            _text_chunks(text[src], text[tgt]), *tokenizers, threads
        ):
            size = len(src_text)
            sl = np.fromiter(map(len, src_ids), dtype=np.int64, count=size)
            tl = np.fromiter(map(len, tgt_ids), dtype=np.int64, count=size)
            holding = unknown.rows(src_ids, tgt_ids) if unknown is not None else None
            if filtered is not None:
                _, _, src_ids, tgt_ids, sl, tl = filtered((src_text, tgt_text, src_ids, tgt_ids, sl, tl))
            if unknown is not None and holding is not None:
                unknown.add(done, holding, filtered.kept if filtered is not None else None)
            for handle, ids, side_lens, lang in ((rs, src_ids, sl, src), (rt, tgt_ids, tl, tgt)):
                flat = np.fromiter(chain.from_iterable(ids), dtype="<i4", count=int(side_lens.sum()))
                handle.write(flat.tobytes())
                lens[lang].append(side_lens)
            done += size
            progress(done, done / max(time.perf_counter() - started, 1e-9))
    sl, tl = (np.concatenate(lens[lang]) if lens[lang] else np.zeros(0, dtype=np.int64) for lang in langs)
    return sl, tl
