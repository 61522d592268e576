"""Documents: text with structure (Markdown, HTML, subtitles) in, the same structure out, its words translated.

A format module reads a document, hands every piece of text meant for people to one `Translate` call (so the
model sees one batch), and writes the document back with only those pieces replaced. It never sees the model:
`Translate` is `LineTranslator.translate_batch` (or a test's fake), which splits each text into sentences,
translates them and joins them back, giving each text's `Translation` (its `.text`, and its `.alignment` when
the engine aligns words: what carries inline markup to the words it belongs to).

Every format module exposes `translate(text, translate, *, lang, warn, where) -> str`, named in `MODULES`.
This package knows formats and their names; not the model, not the command line."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from nmt.errors import ConfigError

if TYPE_CHECKING:  # `nmt --help` reads FORMATS, and imports no tokenizer
    from nmt.line_translator import Translation

Translate = Callable[[list[str]], "list[Translation]"]  # one-line texts in, one Translation each out, in order
Warn = Callable[[str], None]

FORMATS = ("text", "markdown", "html", "srt", "vtt")
MODULES = {  # the module that reads and writes each format (imported only when a document needs it)
    "text": "nmt.documents.text",
    "markdown": "nmt.documents.markdown",
    "html": "nmt.documents.html",
    "srt": "nmt.documents.subtitles",
    "vtt": "nmt.documents.subtitles",
}
EXTENSIONS = {  # a file's extension -> its format (anything else is text)
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".srt": "srt",
    ".vtt": "vtt",
}


def format_of(path: str | Path | None) -> str:
    """The format a file's extension says (stdin, None, is text)."""
    if path is None:
        return "text"
    return EXTENSIONS.get(Path(path).suffix.lower(), "text")


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"input format {fmt!r}: choose {', '.join(FORMATS)}")
    return fmt


def translate_document(
    text: str,
    fmt: str,
    translate: Translate,
    *,
    lang: str | None,
    warn: Warn = lambda message: None,
    where: str = "line ",
) -> str:
    """`text` (a whole document in format `fmt`) translated, in the same format and structure. `lang` is the
    source language code (for sentence boundaries); warnings name `where` and the document's line
    ("notes.md:12: ...")."""
    module = importlib.import_module(MODULES[check_format(fmt)])
    result: str = module.translate(text, translate, lang=lang, warn=warn, where=where)
    return result
