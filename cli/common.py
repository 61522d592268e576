"""What every command shares: the consoles, and turning library errors into one line and an exit code.
Heavy modules (torch) are imported inside commands, so `nmt --help` starts quickly."""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from nmt.errors import ConfigError, NmtError

# stdout carries results (translations, tables); everything else goes to stderr.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one error line to stderr; return the Exit to raise."""
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True)
    return typer.Exit(code)


def handle_errors(func: F) -> F:
    """Run a command; an NmtError becomes `error: ...` on stderr and its exit code (2). With NMT_DEBUG=1 the
    traceback comes first (for bug reports)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NmtError as e:
            if os.environ.get("NMT_DEBUG") == "1":
                traceback.print_exc(file=sys.stderr)
            raise fail(str(e), e.exit_code) from e
        except KeyboardInterrupt:
            err.print("interrupted")
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def writable(path: Path, flag: str, directory: bool = False) -> Path:
    """Make sure an output can be written before any work is done: create its parent directories (as
    every command does) and write a probe file beside it. A file output must not be a directory, a
    directory output not a file."""
    if directory and path.is_file():
        raise ConfigError(f"{flag} {path}: a file is there; {flag} needs a directory")
    if not directory and path.is_dir():
        raise ConfigError(f"{flag} {path}: a directory is there; {flag} needs a file name")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.probe-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"{flag} {path}: cannot write in {parent} ({e.strerror}); choose another {flag}") from e
    return path


def count(n: int, word: str) -> str:
    """'1 line', '2 lines', '1,971 pairs'."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"
