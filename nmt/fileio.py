"""File-system safety: writing a file or a directory whole or not at all (temporary name, fsync, rename),
pointing a link atomically, reading a small JSON file with a bound on its size, and the sha256 of a file.

What a crash leaves is either the old version or the new one, plus hidden temporaries named
`.NAME.tmp-PID` (`.NAME.old-PID` for a replaced directory) that the next writer may remove.
Standard library only, and no other nmt module: the light commands (`nmt info`, `nmt plot`) and the
heavy ones share it. It knows no file names and raises no user-facing error: callers word those."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

MAX_JSON_BYTES = 16 << 20  # a config, summary or state file larger than this is not one of ours


def fsync_path(path: Path) -> None:
    """Flush a file's or a directory's entry to disk (a directory: the names in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path: Path, text: str) -> None:
    """Write whole or not at all (temporary file, fsync, rename): a crash never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    """`data` as indented JSON with sorted keys, written whole or not at all (see `write_text`)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


@contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """An empty `.NAME.tmp-PID` directory beside `final` for the block to write into, committed to `final`
    (`commit_dir`) when the block ends without an error and removed in every case: `final` is the old
    directory or the whole new one, never a part."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        commit_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def commit_dir(tmp: Path, final: Path) -> None:
    """fsync the files of a fully written `tmp` directory, rename it to `final` (replacing an older one) and
    fsync the parent. A crash leaves either the old `final` or the new one, never a mixture."""
    for f in tmp.iterdir():
        fsync_path(f)
    fsync_path(tmp)
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)
    fsync_path(final.parent)


def point(link: Path, target: Path) -> None:
    """Make `link` a relative symlink to `target`, atomically (a new link renamed over the old)."""
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(os.path.relpath(target, link.parent))
    os.replace(tmp, link)
    fsync_path(link.parent)


Problem = Literal["size", "syntax", "depth", "type"]


class JsonFileError(ValueError):
    """A JSON file that is too large (`problem` "size", `detail` its size in bytes), not JSON ("syntax", the
    parser's message), nested too deeply for the parser ("depth") or not an object ("type"). The caller
    words the one-line error, since what the file is for decides what the user should do."""

    def __init__(self, path: Path, problem: Problem, detail: str = "") -> None:
        super().__init__(f"{path}: {problem} {detail}".rstrip())
        self.path, self.problem, self.detail = path, problem, detail


def read_json(path: Path, max_bytes: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """The JSON object in `path`, read only if it is at most `max_bytes` long. OSError (FileNotFoundError
    among them) when it cannot be read, JsonFileError when it is not a JSON object of a sane size."""
    size = path.stat().st_size
    if size > max_bytes:
        raise JsonFileError(path, "size", str(size))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:  # UnicodeDecodeError too
        raise JsonFileError(path, "syntax", str(e)) from e
    except RecursionError as e:
        raise JsonFileError(path, "depth", str(e)) from e
    if not isinstance(data, dict):
        raise JsonFileError(path, "type")
    return data


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
