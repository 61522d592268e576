"""Sentences inside a line: where one sentence ends and the next begins, for any language code a model records.

The boundaries are sentencex's (Wikimedia's rule-based splitter, with fallbacks from any language to a related
one and finally to a generic rule set), chosen over pysbd, blingfire and a Moses-style splitter by
benchmarks/sentence_split.py (docs/benchmarks.md). This module knows text and language codes only: not the
model, not tokens, not documents."""

from __future__ import annotations

DEFAULT_LANG = "en"  # the rules for a model that records no language (older config.json files)


def split_sentences(text: str, lang: str | None) -> list[str]:
    """The sentences of `text`, in order, each with the whitespace that follows it, so that
    `"".join(split_sentences(text, lang)) == text` always holds: a line's own spacing is kept when its
    translations are joined back. Leading whitespace stays with the first segment; empty text gives []."""
    import sentencex  # here, not at import: `nmt translate --split none` never needs it

    segments = [s for s in sentencex.segment(lang or DEFAULT_LANG, text) if s]
    if "".join(segments) != text:  # never lose a character, whatever the rules did
        return [text] if text else []
    return _leading_space_merged(segments)


def _leading_space_merged(segments: list[str]) -> list[str]:
    """A whitespace-only segment (text that starts with spaces) joins the next one: no empty sentence."""
    out: list[str] = []
    carry = ""
    for segment in segments:
        if not segment.strip():
            carry += segment
            continue
        out.append(carry + segment)
        carry = ""
    if carry:
        if out:
            out[-1] += carry
        else:
            out.append(carry)
    return out
