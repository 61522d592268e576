"""Text in and out: cleaning a line (as every corpus and every sentence to translate is cleaned), and text files
as `nmt translate` and `nmt.load(...).translate_file` read and write them.

Reading: lines split on '\\n' only ('\\r\\n' accepted), invalid UTF-8 replaced with a warning (never fatal, never a
dropped line), and a file or stream that is not text at all (gzip, an executable) refused in one line, by one
check (`check_text`) that the readers of corpora and references use too. Writing: a file
appears whole or not at all (`Output`)."""

from __future__ import annotations

import codecs
import io
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import BinaryIO, TypeVar

from nmt.errors import DataError

Warn = Callable[[str], None]
T = TypeVar("T")

# Control characters (Unicode category Cc) that are not whitespace: `clean` drops them.
_CONTROLS = re.compile(
    "[" + "".join(re.escape(chr(c)) for c in (*range(0x20), *range(0x7F, 0xA0)) if not chr(c).isspace()) + "]"
)


def clean(line: str) -> str:
    """NFC-normalise, drop control characters, collapse every whitespace run to one space, strip."""
    line = unicodedata.normalize("NFC", line)
    if not line.isprintable():
        line = _CONTROLS.sub("", line)
    return " ".join(line.split())


def clean_lines(lines: list[str]) -> list[str]:
    """`clean` of each line (none may contain '\\n'): normalising and dropping controls on the joined
    block, in two C-level passes, is what makes cleaning millions of lines fast."""
    text = _CONTROLS.sub("", unicodedata.normalize("NFC", "\n".join(lines)))  # NFC never crosses a '\n'
    return [" ".join(line.split()) for line in text.split("\n")]


def read_text_lines(stream: Iterable[bytes], name: str, warn: Warn) -> Iterator[str]:
    """Lines split on '\\n' only ('\\r\\n' accepted); invalid UTF-8 is replaced, with a warning, never fatal."""
    for number, raw in enumerate(stream, start=1):  # binary iteration splits on b'\n' alone
        raw = raw[:-1] if raw.endswith(b"\n") else raw
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        yield _decoded(raw, name, number, warn)


def _decoded(raw: bytes, name: str, number: int, warn: Warn) -> str:
    """Line `number` of `name` as text: invalid UTF-8 replaced (U+FFFD), with a warning naming the line."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        warn(f"{name}:{number}: invalid UTF-8 at column {e.start + 1}; replaced with U+FFFD")
        return raw.decode("utf-8", errors="replace")


HEAD_BYTES = 1 << 20  # what `check_text` looks at: the first MiB of a file, the first block read of a stream
GZIP_MAGIC = b"\x1f\x8b"


def looks_binary(raw: bytes, whole: bool = True) -> tuple[int, int, int]:
    """(lines with NUL bytes or invalid UTF-8, lines, lines with NUL bytes) in the first MiB: a text file with
    a stray bad byte has few, an executable or a compressed file has most. Unless `raw` is `whole`, its last
    line may stop inside a character, which is not counted against it."""
    lines = raw[:HEAD_BYTES].split(b"\n")
    if len(lines) > 1 and not lines[-1]:
        lines.pop()  # what follows the last newline, when nothing does, is no line
    whole = whole and len(raw) <= HEAD_BYTES
    bad = nul = 0
    for i, line in enumerate(lines):
        try:
            if whole or i < len(lines) - 1:
                line.decode("utf-8")
            else:
                codecs.getincrementaldecoder("utf-8")().decode(line)  # an unfinished character is no error
            bad += b"\0" in line
        except UnicodeDecodeError:
            bad += 1
        nul += b"\0" in line
    return bad, len(lines), nul


def check_text(head: bytes, name: str, whole: bool = True) -> None:
    """A DataError when `head`, the start of a file or stream (all of it if `whole`), is not text (a gzip,
    an executable): the one check of every reader of text, so that a file, stdin, a corpus or a reference
    is refused in the same line. Text with a few bad bytes passes, its readers saying where they are: over
    30% of the lines bad, and either NUL bytes or at least 3 bad lines (a short text with a bad byte is
    not binary)."""
    bad, lines, nul = looks_binary(head, whole)
    if head[:2] == GZIP_MAGIC or (bad > 0.3 * lines and (nul or bad >= 3)):
        raise DataError(
            f"{name}: not a text file ({bad_share(bad, lines)} NUL bytes or invalid UTF-8); "
            "give UTF-8 text, one sentence per line (gunzip or `iconv -t utf-8` it first)"
        )


def bad_share(bad: int, lines: int) -> str:
    """How many of the first lines are bad, as a sentence's subject and verb: 'the first line holds', 'the first
    3 lines all hold', '1 of the first 3 lines holds', '2 of the first 3 lines hold'."""
    if lines == 1:
        return "the first line holds"
    if bad == lines:
        return f"the first {lines:,} lines all hold"
    return f"{bad:,} of the first {lines:,} lines {'holds' if bad == 1 else 'hold'}"


def read_lines(path: Path, warn: Warn) -> list[str]:
    """Every line of a UTF-8 text file (see `read_text_lines`); a DataError for what is not one."""
    raw = _file_bytes(path, "a text file with one sentence per line")
    check_text(raw, str(path))
    return list(read_text_lines(io.BytesIO(raw), str(path), warn))


def _file_bytes(path: Path, wanted: str) -> bytes:
    try:
        return path.read_bytes()
    except IsADirectoryError as e:
        raise DataError(f"{path}: is a directory; give {wanted}") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror}); check the path") from e


def read_document(path: Path | None, warn: Warn) -> str:
    """A whole document (a file, or stdin for None) as it is, line ends and all: refused by `check_text` as
    `read_lines` refuses a file, invalid UTF-8 replaced with a warning naming the line as it warns."""
    name = str(path) if path is not None else "<stdin>"
    raw = _file_bytes(path, "a document file") if path is not None else sys.stdin.buffer.read()
    check_text(raw, name)
    # line by line, so that each warning names its line; no UTF-8 sequence spans a b"\n", so the lines joined
    # are the whole decoded at once
    return "\n".join(_decoded(line, name, number, warn) for number, line in enumerate(raw.split(b"\n"), start=1))


def stream_lines(stream: BinaryIO, name: str, warn: Warn) -> Iterator[str]:
    """The lines of a stream (stdin) as they come (see `read_text_lines`), once its first block, read now,
    has passed `check_text`: a DataError before any line is given for what is not text. One read of what
    is there (a pipe's buffer), so that a stream written a little at a time is not waited for."""
    head = getattr(stream, "read1", stream.read)(HEAD_BYTES)
    check_text(head, name, whole=not head)
    return read_text_lines(_after(head, stream), name, warn)


def _after(head: bytes, stream: BinaryIO) -> Iterator[bytes]:
    """The lines of `head` and then of the rest of the stream, the line `head` stops inside made whole."""
    if not head:
        return  # the end already (another read of a terminal would wait for more)
    *ended, unended = head.split(b"\n")
    for line in ended:
        yield line + b"\n"
    rest = iter(stream)
    first = next(rest, b"")
    if unended or first:
        yield unended + first
    if first:  # past the end, a terminal is read again: stop at the first end
        yield from rest


class Output:
    """Where translations go: stdout as they come, or a file written as batches finish and put in
    place (atomically) only when every line is there; a failed run leaves no partial file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        if path is None:
            self.stream: BinaryIO = sys.stdout.buffer
        else:
            self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            self.stream = open(self.tmp, "wb")

    def write(self, text: str) -> None:
        self.stream.write(text.encode("utf-8"))

    def flush(self) -> None:
        self.stream.flush()

    def __enter__(self) -> Output:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self.path is None:
            self.stream.flush()
            return
        self.stream.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of `size` items (the last one shorter), taken as the items come."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
