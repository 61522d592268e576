"""nmt: neural machine translation from the command line, and from Python: `nmt.load(MODEL).translate(lines)`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from nmt.version import __version__

if TYPE_CHECKING:
    from nmt.api import Loaded

__all__ = ["__version__", "load"]


def load(model: str | Path, **options: Any) -> Loaded:
    """`nmt.load(MODEL, beam_size=5, ...)`: a loaded model to translate with (see nmt.api.load for the options).
    torch is imported only now, so `import nmt` stays instant."""
    from nmt.api import load as _load

    return _load(model, **options)
