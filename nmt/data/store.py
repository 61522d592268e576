"""The id store: a prepared split's token ids on disk, one flat array per side plus offsets, in safetensors (no
pickle), read memory-mapped (`ParallelIds`) and written from raw id files without holding them in memory
(`write_ids`).

Knows nothing about text, tokenizers or batches: id arrays in, id arrays out."""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from nmt.errors import DataError

IDS_TENSORS = ("src_ids", "src_offsets", "tgt_ids", "tgt_offsets")


@dataclass
class ParallelIds:
    """Token ids of aligned sentences, without BOS/EOS: sentence i is ids[offsets[i]:offsets[i+1]].

    `rows`, when set, selects and orders sentences by their position in the arrays: a filter is an
    index over the (possibly memory-mapped) arrays, never a copy of them."""

    src_ids: np.ndarray
    src_offsets: np.ndarray
    tgt_ids: np.ndarray
    tgt_offsets: np.ndarray
    rows: np.ndarray | None = None
    source: io.FileIO | None = None  # the file behind memory-mapped ids: rows are read from it (see `_ids`)

    @classmethod
    def from_lists(cls, src: list[list[int]], tgt: list[list[int]]) -> ParallelIds:
        def flat(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
            lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
            offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            ids = np.fromiter((i for s in seqs for i in s), dtype=np.int32, count=int(offsets[-1]))
            return ids, offsets

        return cls(*flat(src), *flat(tgt))

    def __len__(self) -> int:
        return len(self.src_offsets) - 1 if self.rows is None else len(self.rows)

    def select(self, rows: np.ndarray) -> ParallelIds:
        """The sentences at `rows` (positions in this one), sharing the id arrays."""
        rows = np.asarray(rows, dtype=np.int64)
        return ParallelIds(
            self.src_ids,
            self.src_offsets,
            self.tgt_ids,
            self.tgt_offsets,
            rows if self.rows is None else self.rows[rows],
            self.source,
        )

    def _lens(self, offsets: np.ndarray) -> np.ndarray:
        lens = np.diff(offsets)
        return lens if self.rows is None else lens[self.rows]

    @cached_property
    def src_lens(self) -> np.ndarray:
        return self._lens(self.src_offsets)

    @cached_property
    def tgt_lens(self) -> np.ndarray:
        return self._lens(self.tgt_offsets)

    def _row(self, i: int) -> int:
        return i if self.rows is None else int(self.rows[i])

    def src(self, i: int) -> np.ndarray:
        j = self._row(i)
        return self._ids(self.src_ids, int(self.src_offsets[j]), int(self.src_offsets[j + 1]))

    def tgt(self, i: int) -> np.ndarray:
        j = self._row(i)
        return self._ids(self.tgt_ids, int(self.tgt_offsets[j]), int(self.tgt_offsets[j + 1]))

    def _ids(self, ids: np.ndarray, start: int, end: int) -> np.ndarray:
        """ids[start:end]. Memory-mapped ids are read (pread) rather than touched: every page fault on a
        mapping maps the pages around it too, so random batches would fill resident memory with the whole
        file over a long run (15 MB an update at 4 million pairs)."""
        if self.source is None or not isinstance(ids, np.memmap):
            return ids[start:end]
        data = os.pread(self.source.fileno(), (end - start) * ids.itemsize, ids.offset + start * ids.itemsize)
        return np.frombuffer(data, dtype=ids.dtype)

    def save(self, path: Path) -> None:
        from safetensors.numpy import save_file

        if self.rows is not None:
            raise ValueError("save the arrays of a whole split, not of a selection")
        save_file(dict(zip(IDS_TENSORS, (self.src_ids, self.src_offsets, self.tgt_ids, self.tgt_offsets))), str(path))

    @classmethod
    def load(cls, path: Path, mmap: bool = True) -> ParallelIds:
        """Read a prepared split; memory-mapped by default, so that memory does not grow with the corpus
        (only the offsets, 8 bytes a sentence, are read into memory)."""
        from safetensors.numpy import load_file

        path = Path(path)
        try:
            if not mmap:
                t = load_file(str(path))
                src_ids, src_offsets, tgt_ids, tgt_offsets = (t[name] for name in IDS_TENSORS)
                return cls(src_ids, src_offsets, tgt_ids, tgt_offsets)
            arrays = _map_safetensors(path)
            return cls(
                arrays["src_ids"],
                np.array(arrays["src_offsets"]),
                arrays["tgt_ids"],
                np.array(arrays["tgt_offsets"]),
                source=io.FileIO(path, "r"),
            )
        except FileNotFoundError as e:
            raise DataError(f"{path}: no such prepared split; run `nmt prepare` first") from e
        except Exception as e:  # safetensors raises its own error types for corrupted files
            raise DataError(f"{path}: unreadable prepared split ({e}); re-run `nmt prepare --force`") from e


# safetensors keeps its data uncompressed after a JSON header, so numpy can map it where it lies. The
# safetensors package reads whole tensors into memory and writes them from memory; these two functions
# read and write the same bytes in place (a test checks them against safetensors itself).
_DTYPES: dict[str, np.dtype[np.signedinteger[Any]]] = {"I32": np.dtype("<i4"), "I64": np.dtype("<i8")}


def _map_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Memory-map the integer tensors of a safetensors file, read-only; checks the header against the file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        n = int(np.frombuffer(f.read(8), dtype="<u8")[0])
        if n > min(size - 8, 100_000_000):
            raise ValueError("header longer than the file")
        header = json.loads(f.read(n))
    arrays = {}
    for name in IDS_TENSORS:
        info = header[name]
        dtype, (begin, end) = _DTYPES[info["dtype"]], info["data_offsets"]
        count = int(np.prod(info["shape"], dtype=np.int64))
        if len(info["shape"]) != 1 or end - begin != count * dtype.itemsize or 8 + n + end > size:
            raise ValueError(f"tensor {name} does not fit the file")
        arrays[name] = (
            np.memmap(path, dtype=dtype, mode="r", offset=8 + n + begin, shape=(count,))
            if count
            else np.zeros(0, dtype=dtype)
        )
    return arrays


def write_ids(path: Path, src_ids: Path, src_lens: np.ndarray, tgt_ids: Path, tgt_lens: np.ndarray) -> None:
    """Write a split's safetensors file from raw little-endian int32 id files and the sentence lengths,
    copying the ids in blocks: the bytes `ParallelIds.save` writes, without holding the ids in memory."""
    offsets = {}
    for side, lens in (("src", src_lens), ("tgt", tgt_lens)):
        offsets[side] = np.zeros(len(lens) + 1, dtype="<i8")
        np.cumsum(lens, out=offsets[side][1:])
    # safetensors' layout: larger dtypes first, then by name; the header padded with spaces to 8 bytes
    parts: list[tuple[str, str, np.ndarray | Path]] = [  # (name, dtype, the ids or the raw file holding them)
        ("src_offsets", "I64", offsets["src"]),
        ("tgt_offsets", "I64", offsets["tgt"]),
        ("src_ids", "I32", src_ids),
        ("tgt_ids", "I32", tgt_ids),
    ]
    header: dict[str, dict[str, Any]] = {}  # JSON
    at = 0
    for name, dtype, data in parts:
        count = len(data) if isinstance(data, np.ndarray) else int(offsets[name[:3]][-1])
        header[name] = {"dtype": dtype, "shape": [count], "data_offsets": [at, at + count * _DTYPES[dtype].itemsize]}
        at += count * _DTYPES[dtype].itemsize
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as out:
        out.write(np.uint64(len(text)).astype("<u8").tobytes() + text)
        for name, _, data in parts:
            if isinstance(data, np.ndarray):
                out.write(data.tobytes())
                continue
            begin, end = header[name]["data_offsets"]
            copied = 0
            with open(data, "rb") as f:
                while block := f.read(1 << 24):
                    out.write(block)
                    copied += len(block)
            if copied != end - begin:
                raise DataError(f"{data}: {copied} bytes of ids where the lengths say {end - begin}")
