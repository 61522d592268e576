"""Reading corpora: UTF-8 text files (optionally gzipped) streamed as lines or blocks of lines, and parallel
corpora (PREFIX.src + PREFIX.tgt, or one two-column TSV file) read as cleaned, aligned sentence pairs, with a
one-line error naming file and line for every malformed input.

Knows nothing about token ids, numpy or batches: text files in, strings out."""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

from nmt.errors import DataError
from nmt.textio import check_text, clean, clean_lines

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
    first = True
    with handle:
        while True:
            try:
                data = handle.read(block_bytes)
            except (OSError, EOFError, zlib.error) as e:
                raise _bad_gzip(path, e) from e
            if data:
                if first:  # what is not text at all is refused as a whole, before a line of it is named
                    check_text(data, str(path), whole=len(data) < block_bytes)
                    first = False
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
                ) from e
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
    except FileNotFoundError as e:
        raise DataError(f"{path}: no such file") from e
    except IsADirectoryError as e:
        raise DataError(f"{path}: is a directory, expected a text file") from e


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
            raise _bad_gzip(path, e) from e
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
