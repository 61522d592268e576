"""Reading text: one check (`check_text`) refuses what is not text, whether it comes as a file or a stream, and
lets text with a stray bad byte through; a stream reads the same lines as the file it came from, wherever
its first block stops."""

from __future__ import annotations

import gzip
import io
import re

import pytest

from nmt.errors import DataError
from nmt.textio import check_text, read_lines, stream_lines

pytestmark = pytest.mark.unit

TEXT = "Hello.\nCafé crème, déjà vu.\n日本語の文です。\n\nThe last line has no newline".encode()
BINARY = {
    "executable": b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 12,  # NUL bytes on its only line
    "gzip": gzip.compress(TEXT),
    "bytes": bytes(range(256)) * 40,
    "utf-16": "Bonjour.\nMerci.\n".encode("utf-16"),
}


class Pipe(io.RawIOBase):
    """A stream that hands out its bytes `block` at a time, as a pipe does when its writer is slow."""

    def __init__(self, data: bytes, block: int) -> None:
        self.data, self.block = data, block

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        n = min(len(buffer), self.block, len(self.data))
        buffer[:n], self.data = self.data[:n], self.data[n:]
        return n


@pytest.mark.parametrize("name", list(BINARY))
def test_what_is_not_text_is_refused_alike_as_a_file_and_as_a_stream(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(BINARY[name])
    with pytest.raises(DataError) as as_file:
        read_lines(path, print)
    with pytest.raises(DataError) as as_stream:
        stream_lines(io.BufferedReader(Pipe(BINARY[name], 4096)), str(path), print)  # raises before any line
    # the same line; the counts are of what each looked at (a file's first MiB, a stream's first block)
    assert re.sub(r"\d+", "N", str(as_stream.value)) == re.sub(r"\d+", "N", str(as_file.value))
    assert str(as_file.value).startswith(f"{path}: not a text file (")


@pytest.mark.parametrize(
    "text",
    [
        b"ok\ncaf\xe9\n",  # a short text with one bad byte (1 of its 3 pieces)
        b"caf\xe9",
        b"control\x00chars in a line\n" + b"fine\n" * 5,  # a NUL, but in 1 line of 7
        TEXT * 40 + b"one \xff bad byte\n" + TEXT * 40,
    ],
)
def test_text_with_a_stray_bad_byte_passes(text):
    check_text(text, "t.txt")


@pytest.mark.parametrize("block", [1, 7, 4096])
def test_a_stream_reads_the_lines_of_its_file_wherever_its_first_block_stops(tmp_path, block):
    data = TEXT * 3 + b"\xff\xfe invalid\r\nwindows\r\n"
    path = tmp_path / "t.txt"
    path.write_bytes(data)
    warned: list[str] = []
    lines = list(stream_lines(io.BufferedReader(Pipe(data, block)), str(path), warned.append))
    assert lines == read_lines(path, lambda message: None)
    number = data[: data.index(b"\xff")].count(b"\n") + 1
    assert len(warned) == 1 and warned[0].startswith(f"{path}:{number}: invalid UTF-8 at column ")


def test_a_first_block_that_stops_inside_a_character_is_still_text():
    head = "déjà".encode()[:-1]  # 'à' is 2 bytes: the block stops after the first
    check_text(head, "<stdin>", whole=False)
    with pytest.raises(DataError):
        check_text(b"\x1f\x8b" + head, "<stdin>", whole=False)  # a gzip's magic number


def test_an_empty_stream_gives_no_line():
    assert list(stream_lines(io.BytesIO(b""), "<stdin>", print)) == []
