"""Plain text as a document: every line is translated on its own (sentences inside it split by `Translate`),
line breaks and blank lines kept as they are."""

from __future__ import annotations

from nmt.documents import Translate, Warn


def translate(text: str, translate: Translate, *, lang: str | None, warn: Warn, where: str) -> str:
    lines = text.split("\n")
    results = translate(lines)
    return "\n".join(result.text for result in results)
