"""Text in and out: cleaning a line (as every corpus and every sentence to translate is cleaned), and text files
as `nmt translate` and `nmt.load(...).translate_file` read and write them.

Reading: lines split on '\\n' only ('\\r\\n' accepted), invalid UTF-8 replaced with a warning (never fatal, never a
dropped line), and a file that is not text at all (gzip, an executable) refused in one line. Writing: a file
appears whole or not at all (`Output`)."""

from __future__ import annotations

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


def read_text_lines(stream: BinaryIO, name: str, warn: Warn) -> Iterator[str]:
    """Lines split on '\\n' only ('\\r\\n' accepted); invalid UTF-8 is replaced, with a warning, never fatal."""
    for number, raw in enumerate(stream, start=1):  # binary iteration splits on b'\n' alone
        raw = raw[:-1] if raw.endswith(b"\n") else raw
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as e:
            warn(f"{name}:{number}: invalid UTF-8 at column {e.start + 1}; replaced with U+FFFD")
            yield raw.decode("utf-8", errors="replace")


def looks_binary(raw: bytes) -> tuple[int, int]:
    """(lines with NUL bytes or invalid UTF-8, lines) in the first MiB: a text file with a stray bad
    byte has few, an executable or a compressed file has most."""
    lines = raw[: 1 << 20].split(b"\n")
    if len(lines) > 1 and not lines[-1]:
        lines.pop()  # what follows the last newline, when nothing does, is no line
    bad = 0
    for line in lines:
        try:
            line.decode("utf-8")
            bad += b"\0" in line
        except UnicodeDecodeError:
            bad += 1
    return bad, len(lines)


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
    try:
        raw = path.read_bytes()
    except IsADirectoryError as e:
        raise DataError(f"{path}: is a directory; give a text file with one sentence per line") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror}); check the path") from e
    bad, lines = looks_binary(raw)
    if raw[:2] == b"\x1f\x8b" or bad > 0.3 * lines:
        raise DataError(
            f"{path}: not a text file ({bad_share(bad, lines)} NUL bytes or invalid UTF-8); "
            "give UTF-8 text, one sentence per line (gunzip or `iconv -t utf-8` it first)"
        )
    return list(read_text_lines(io.BytesIO(raw), str(path), warn))


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
