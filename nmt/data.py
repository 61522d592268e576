"""Parallel text → cleaned sentence pairs → id arrays on disk → token-budgeted `Batch`es.
Knows nothing about models or search: text files in, padded id tensors out."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import unicodedata
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import zip_longest
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nmt.errors import DataError
from nmt.textio import clean, clean_lines

if TYPE_CHECKING:  # torch is imported where batches are built, so reading text stays light
    import torch

# ---------------------------------------------------------------------------------------------
# Reading text


BLOCK_BYTES = 1 << 20


def iter_lines(path: Path) -> Iterator[str]:
    """Lines of a UTF-8 text file (optionally gzipped), streamed, split on '\\n' only, '\\r\\n' accepted.

    Other Unicode line separators (U+2028, form feed, ...) stay inside their line: splitting on them
    would silently misalign a parallel corpus. A bad byte is reported with its line number as soon as
    it is reached; a file with nothing but whitespace is refused at its end.
    """
    for block in iter_line_blocks(path):
        yield from block


def iter_line_blocks(path: Path, block_bytes: int = BLOCK_BYTES) -> Iterator[list[str]]:
    """`iter_lines`, a list of lines (about `block_bytes` of text) at a time: decoding a block at once is
    what makes reading millions of lines fast. Every block holds at least one line."""
    path = Path(path)
    handle = _open_binary(path)
    blank, before, pending = True, 0, []  # before: lines in earlier blocks; pending: pieces of a line not yet ended
    with handle:
        while True:
            try:
                data = handle.read(block_bytes)
            except (OSError, EOFError, zlib.error) as e:
                raise _bad_gzip(path, e) from None
            if data:
                end = data.rfind(b"\n") + 1
                if not end:  # a long line: its pieces are joined once it ends (not copied at every read)
                    pending.append(data)
                    continue
                block = b"".join([*pending, data[:end]]) if pending else data[:end]
                pending = [data[end:]] if end < len(data) else []
            elif pending:
                block, pending = b"".join([*pending, b"\n"]), []  # the last line, without its line break
            else:
                break
            try:
                text = block.decode("utf-8")
            except UnicodeDecodeError as e:
                number, start = before + block.count(b"\n", 0, e.start) + 1, block.rfind(b"\n", 0, e.start) + 1
                raise DataError(
                    f"{path}:{number}: invalid UTF-8 (byte "
                    f"0x{block[e.start]:02x} at column {e.start - start + 1}); "
                    "re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
                ) from None
            if "\r" in text:
                text = text.replace("\r\n", "\n")
            lines = text.split("\n")
            lines.pop()  # after the block's last '\n'
            blank = blank and not text.strip()
            before += len(lines)
            yield lines
    if blank:
        raise DataError(f"{path}: file is empty; give a corpus with at least one sentence")


def _open_binary(path: Path) -> io.BufferedIOBase:
    """A text file (gzip-compressed when it ends in .gz) opened for reading bytes, or a clear error."""
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a text file") from None


def _bad_gzip(path: Path, e: Exception) -> DataError:
    """A read failed: for a .gz file, a bad header or a corrupt or truncated stream."""
    return DataError(f"{path}: not a valid gzip file ({e}); re-compress it or give the plain text")


def read_lines(path: Path) -> list[str]:
    """All lines of a text file at once; see `iter_lines`."""
    return list(iter_lines(path))


def count_lines(path: Path) -> int:
    """Lines in a text file (optionally gzipped) as `iter_lines` counts them, without decoding them."""
    path = Path(path)
    n, last = 0, b"\n"
    with _open_binary(path) as handle:
        try:
            while block := handle.read(1 << 22):
                n += block.count(b"\n")
                last = block[-1:]
        except (OSError, EOFError, zlib.error) as e:
            raise _bad_gzip(path, e) from None
    return n + (last != b"\n")


def corpus_files(prefix: str | Path, src: str, tgt: str) -> tuple[Path, Path] | Path:
    """The files behind a corpus name: (PREFIX.src, PREFIX.tgt), each possibly .gz, or one TSV file."""
    prefix = Path(prefix)
    if prefix.is_file() and prefix.suffix in (".tsv", ".gz") and not prefix.name.endswith((f".{src}.gz", f".{tgt}.gz")):
        return prefix
    found = []
    for lang in (src, tgt):
        plain, zipped = Path(f"{prefix}.{lang}"), Path(f"{prefix}.{lang}.gz")
        if plain.is_file():
            found.append(plain)
        elif zipped.is_file():
            found.append(zipped)
        else:
            raise DataError(
                f"{plain}: no such file (nor {zipped.name}); a corpus is PREFIX.{src} + PREFIX.{tgt} "
                "(optionally .gz) or a two-column .tsv file"
            )
    return found[0], found[1]


@dataclass
class ParallelText:
    """Aligned, cleaned sentence pairs and where they came from."""

    src: list[str]
    tgt: list[str]
    files: list[Path]

    def __len__(self) -> int:
        return len(self.src)


def misaligned(src_file: Path, tgt_file: Path, src_lines: int, tgt_lines: int) -> DataError:
    """The error for two sides of a corpus whose line counts differ, naming the first line without a partner."""
    short, long_ = (src_file, tgt_file) if src_lines < tgt_lines else (tgt_file, src_file)
    return DataError(
        f"{long_}:{min(src_lines, tgt_lines) + 1}: misaligned corpus: {src_file} has {src_lines} lines but "
        f"{tgt_file} has {tgt_lines}; {short} ends before this line. Both files must hold one sentence per line, "
        "aligned"
    )


def _tsv_fields(path: Path, lines: list[str], before: int, src: str, tgt: str) -> list[list[str]]:
    """The two fields of each line of a TSV block (`before` lines precede it), or the error for the first
    line that does not have exactly two."""
    rows = [line.split("\t") for line in lines]
    for number, fields in enumerate(rows, start=before + 1):
        if len(fields) != 2:
            raise DataError(
                f"{path}:{number}: expected 2 tab-separated fields ({src}, {tgt}), found {len(fields)}; "
                "remove or fix the line"
            )
    return rows


def iter_parallel(files: tuple[Path, Path] | Path, src: str, tgt: str) -> Iterator[tuple[str, str]]:
    """Cleaned sentence pairs of one corpus (its `corpus_files`), streamed; raises DataError at the first
    malformed line, naming file and line."""
    if isinstance(files, Path):
        before = 0
        for block in iter_line_blocks(files):
            for fields in _tsv_fields(files, block, before, src, tgt):
                yield clean(fields[0]), clean(fields[1])
            before += len(block)
        return
    src_file, tgt_file = files
    n = 0
    for n, pair in enumerate(zip_longest(iter_lines(src_file), iter_lines(tgt_file)), start=1):
        if pair[0] is None or pair[1] is None:
            raise misaligned(
                src_file,
                tgt_file,
                n - 1 if pair[0] is None else count_lines(src_file),
                n - 1 if pair[1] is None else count_lines(tgt_file),
            )
        yield clean(pair[0]), clean(pair[1])


def iter_side_blocks(files: tuple[Path, Path] | Path, side: int, src: str, tgt: str) -> Iterator[list[str]]:
    """One side (0: source, 1: target) of a corpus, cleaned, a block of lines at a time: what `iter_parallel`
    gives for that side, much faster, and either side on its own core. Raises DataError at the first
    malformed line of the files it reads; the caller compares the two sides' line counts (`misaligned`)."""
    if isinstance(files, Path):
        before = 0
        for block in iter_line_blocks(files):
            yield clean_lines([fields[side] for fields in _tsv_fields(files, block, before, src, tgt)])
            before += len(block)
    else:
        for block in iter_line_blocks(files[side]):
            yield clean_lines(block)


def read_parallel(prefix: str | Path, src: str, tgt: str) -> ParallelText:
    """Read and clean one corpus whole; raises DataError on any malformed input."""
    files = corpus_files(prefix, src, tgt)
    pairs = list(iter_parallel(files, src, tgt))
    return ParallelText(
        [s for s, _ in pairs], [t for _, t in pairs], [files] if isinstance(files, Path) else list(files)
    )


# ---------------------------------------------------------------------------------------------
# Carving held-out sets out of one corpus


def fold(sentence: str) -> str:
    """The key under which near-identical sentences meet: case folded, punctuation and spacing ignored
    ('How was your day?' and 'how was your day ?' share one key)."""
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in sentence.casefold())
    return " ".join(text.split())


def grouped_split(keys: Sequence[str], sizes: dict[str, int], seed: int) -> dict[str, list[int]]:
    """Carve held-out sets of exactly `sizes[name]` items out of `keys`, never splitting a group.

    Items with the same key (for parallel text: the folded source sentence) always land on the same
    side, so a test set cannot be answered from memory of a training pair. Groups are visited in the
    order of sha256(seed, key), which depends on nothing but the key and the seed; each goes whole into
    the first held-out set that still has room for it, everything else into 'train'. Returns the
    indices of each set in corpus order.
    """
    if "train" in sizes or any(n < 0 for n in sizes.values()):
        raise DataError(f"held-out sizes must be non-negative and not named 'train', got {sizes}")
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    if sum(sizes.values()) > len(keys):
        raise DataError(f"cannot carve {sum(sizes.values()):,} held-out pairs out of a corpus of {len(keys):,}")
    order = sorted(groups, key=lambda k: hashlib.sha256(f"{seed}\t{k}".encode()).digest())
    room = dict(sizes)
    out: dict[str, list[int]] = {"train": [], **{name: [] for name in sizes}}
    for key in order:
        members = groups[key]
        name = next((n for n, left in room.items() if len(members) <= left), "train")
        if name != "train":
            room[name] -= len(members)
        out[name].extend(members)
    short = {n: left for n, left in room.items() if left}
    if short:
        raise DataError(f"could not fill the held-out sets exactly (missing {short}); choose smaller sizes")
    return {name: sorted(idx) for name, idx in out.items()}


# ---------------------------------------------------------------------------------------------
# Id arrays on disk: one flat array per side plus offsets, in safetensors (no pickle)


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
        except FileNotFoundError:
            raise DataError(f"{path}: no such prepared split; run `nmt prepare` first") from None
        except Exception as e:  # safetensors raises its own error types for corrupted files
            raise DataError(f"{path}: unreadable prepared split ({e}); re-run `nmt prepare --force`") from None


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


# ---------------------------------------------------------------------------------------------
# Batches


@dataclass
class Batch:
    """A padded batch. src ends with EOS; tgt_in starts with BOS and tgt_out ends with EOS."""

    src: torch.Tensor  # (batch, src_len) long, right-padded with pad_id
    src_len: torch.Tensor  # (batch,) long
    tgt_in: torch.Tensor  # (batch, tgt_len) long
    tgt_out: torch.Tensor  # (batch, tgt_len) long, pad_id where there is no target
    index: torch.Tensor  # (batch,) long: positions of these pairs in their split
    n_tokens: int  # real target tokens (EOS included, padding excluded)
    rows: torch.Tensor  # (n_tokens,) long: where tgt_out.flatten() is not padding (found here, not on a GPU)

    def to(self, device: torch.device) -> Batch:
        """On `device`; copies from pinned memory (see `pin`) to a GPU do not wait for each other."""
        src, src_len, tgt_in, tgt_out = (
            t.to(device, non_blocking=True) for t in (self.src, self.src_len, self.tgt_in, self.tgt_out)
        )
        return Batch(
            src,
            src_len,
            tgt_in,
            tgt_out,
            self.index,
            self.n_tokens,
            self.rows.to(device, non_blocking=True),
        )

    def pin(self) -> Batch:
        """In page-locked memory, from where a GPU copies it without the host waiting."""
        src, src_len, tgt_in, tgt_out = (t.pin_memory() for t in (self.src, self.src_len, self.tgt_in, self.tgt_out))
        return Batch(
            src,
            src_len,
            tgt_in,
            tgt_out,
            self.index,
            self.n_tokens,
            self.rows.pin_memory(),
        )


def collate(data: ParallelIds, index: np.ndarray, pad_id: int, bos_id: int, eos_id: int) -> Batch:
    """Build one padded batch from the pairs at `index`."""
    import torch

    src_lens = data.src_lens[index] + 1  # + EOS
    tgt_lens = data.tgt_lens[index] + 1  # + BOS (in) / EOS (out)
    n = len(index)
    src = np.full((n, int(src_lens.max())), pad_id, dtype=np.int64)
    tgt_in = np.full((n, int(tgt_lens.max())), pad_id, dtype=np.int64)
    tgt_out = np.full_like(tgt_in, pad_id)
    for row, i in enumerate(index):
        s, t = data.src(int(i)), data.tgt(int(i))
        src[row, : len(s)] = s
        src[row, len(s)] = eos_id
        tgt_in[row, 0] = bos_id
        tgt_in[row, 1 : len(t) + 1] = t
        tgt_out[row, : len(t)] = t
        tgt_out[row, len(t)] = eos_id
    return Batch(
        torch.from_numpy(src),
        torch.from_numpy(src_lens.astype(np.int64)),
        torch.from_numpy(tgt_in),
        torch.from_numpy(tgt_out),
        torch.from_numpy(np.asarray(index, dtype=np.int64)),
        int(tgt_lens.sum()),
        torch.from_numpy(np.flatnonzero(tgt_out != pad_id)),
    )


def token_batches(src_lens: np.ndarray, tgt_lens: np.ndarray, batch_tokens: int, seed: int | None) -> list[np.ndarray]:
    """Group sentence indices into batches of at most `batch_tokens` padded tokens.

    Sorting by length (ties broken at random when a seed is given) keeps padding minimal; the batches
    themselves come back shuffled with that seed, or in length order when seed is None. A sentence
    longer than the budget still gets a batch of its own rather than being dropped.
    """
    n = len(src_lens)
    rng = np.random.default_rng(seed) if seed is not None else None
    tiebreak = rng.permutation(n) if rng is not None else np.arange(n)
    # +1 for EOS/BOS; the padded cost of a batch is its size times its longest side
    cost = np.maximum(src_lens, tgt_lens) + 1
    order = np.lexsort((tiebreak, src_lens, tgt_lens))
    batches: list[np.ndarray] = []
    start, longest = 0, 0
    for pos, c in enumerate(cost[order].tolist()):  # plain ints: millions of sentences in about a second
        longest_if_added = max(longest, c)
        if pos > start and longest_if_added * (pos - start + 1) > batch_tokens:
            batches.append(order[start:pos])
            start, longest_if_added = pos, c
        longest = longest_if_added
    if start < n:
        batches.append(order[start:n])
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


class TrainingData:
    """A prepared training split as one run sees it: pairs longer than it allows left out (an index over
    the mapped arrays, not a copy), and each epoch's token batches, whose order depends only on
    (seed, epoch), so that resuming mid-epoch replays it."""

    def __init__(self, path: Path, batch_tokens: int, seed: int, max_src_len: int, max_tgt_len: int) -> None:
        self.pairs = ParallelIds.load(path)
        keep = np.flatnonzero((self.pairs.src_lens <= max_src_len) & (self.pairs.tgt_lens <= max_tgt_len))
        self.skipped_long = len(self.pairs) - len(keep)
        if self.skipped_long:
            self.pairs = self.pairs.select(keep)
        self.batch_tokens, self.seed = batch_tokens, seed

    def __len__(self) -> int:
        return len(self.pairs)

    def epoch(self, epoch: int) -> list[np.ndarray]:
        """The batches of one epoch, in order: arrays of positions in `pairs`."""
        seed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])
        return token_batches(self.pairs.src_lens, self.pairs.tgt_lens, self.batch_tokens, seed)

    def batch(self, index: np.ndarray, pad_id: int, bos_id: int, eos_id: int) -> Batch:
        return collate(self.pairs, index, pad_id, bos_id, eos_id)

    def target_tokens(self, index: np.ndarray) -> int:
        """`Batch.n_tokens` of the batch at `index`, without making it."""
        return int(self.pairs.tgt_lens[index].sum()) + len(index)  # + EOS


def iterate_batches(
    data: ParallelIds, batch_tokens: int, seed: int | None, pad_id: int, bos_id: int, eos_id: int, skip: int = 0
) -> Iterator[Batch]:
    """Batches of one pass over `data`, skipping the first `skip` (for exact resumption)."""
    for index in token_batches(data.src_lens, data.tgt_lens, batch_tokens, seed)[skip:]:
        yield collate(data, index, pad_id, bos_id, eos_id)
