"""What every command shares: the consoles, and turning library errors into one line and an exit code.
Heavy modules (torch) are imported inside commands, so `nmt --help` starts quickly."""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from nmt.errors import NmtError

# stdout carries results (translations, tables); everything else goes to stderr.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one error line to stderr; return the Exit to raise."""
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True)
    return typer.Exit(code)


def handle_errors(func: F) -> F:
    """Run a command; an NmtError becomes `error: ...` on stderr and its exit code (2)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NmtError as e:
            raise fail(str(e), e.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            sys.exit(130)

    return wrapper  # type: ignore[return-value]
