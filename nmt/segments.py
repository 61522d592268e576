"""A line as the pieces the model translates, and their translations put back together as the line's.

`sentences` gives a line's sentences (nmt.sentences), or the whole line with split "none", each without the
whitespace around it, which is kept to join the translations back. `fit` cuts a sentence longer than the model
takes: at punctuation inside it (; then : then , then dashes), then between words, and a single word longer
than that between its subword pieces, packing neighbours back together while they fit; no text is ever left
out. `join` writes the translations with the line's own spacing, and `word_offsets` says
where each piece's words start among the joined line's whitespace-separated words (to shift an alignment).

Knows text, ids and a SentencePiece tokenizer; not the model, not the search, not `Translation`."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

from nmt.sentences import split_sentences
from nmt.textio import clean
from nmt.tokenizer import Tokenizer

# where a sentence too long for the model is cut, tried in order: after a semicolon, a colon, a comma (each
# followed by a space, or the full-width forms that need none), after a dash, then between words
CUTS = (
    re.compile(r";\s+|；\s*"),
    re.compile(r":\s+|：\s*"),
    re.compile(r",\s+|[，、]\s*"),
    re.compile(r"[—–]\s*"),
    re.compile(r"\s+"),
)
CONTINUATION = re.compile(r"<0x[89AB][0-9A-F]>")  # a byte-fallback piece inside a UTF-8 character, not at its start
LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")  # str.splitlines' breaks: not in a line


@dataclass(frozen=True)
class Piece:
    """What one search translates: a sentence of a line, or a part of one too long for the model. `source` is
    its text without the whitespace around it, `after` the whitespace that follows it in the line."""

    source: str
    ids: list[int]
    after: str = ""


def spacing(text: str) -> str:
    """Whitespace as it may be written back into one line: a line break of any kind becomes a space."""
    return LINE_BREAKS.sub(" ", text)


def sentences(line: str, split: str, lang: str | None) -> tuple[str, list[tuple[str, str]]]:
    """The whitespace before a line's first sentence, and each sentence with the whitespace after it. With split
    "none" the line is one sentence and its spacing is not kept (the translation alone, as a test set wants)."""
    if not line.strip():
        return "", []
    if split == "none":
        return "", [(line.strip(), "")]
    out = []
    lead = ""
    for i, segment in enumerate(split_sentences(line, lang)):
        core = segment.strip()
        if i == 0:
            lead = spacing(segment[: len(segment) - len(segment.lstrip())])
        out.append((core, spacing(segment[len(segment.rstrip()) :])))
    return lead, out


def fit(text: str, ids: list[int], limit: int, tok: Tokenizer, level: int = 0) -> list[Piece]:
    """`text` (ids: its encoding) as pieces of at most `limit` tokens, in order: cut at `CUTS[level]` and after,
    neighbours packed back together while they fit. The pieces' sources and `after`s are the text again."""
    if len(ids) <= limit:
        return [Piece(text, ids)]
    if level == len(CUTS):
        return _between_pieces(ids, limit, tok)
    parts = _cut(text, CUTS[level])
    if len(parts) == 1:
        return fit(text, ids, limit, tok, level + 1)
    counts = [len(seq) for seq in tok.encode_batch([clean(p) for p in parts])]
    groups = list(_packed(counts, limit))
    texts = ["".join(parts[a:b]) for a, b in groups]
    encoded = tok.encode_batch([clean(t) for t in texts])
    out: list[Piece] = []
    for (a, b), group, group_ids in zip(groups, texts, encoded):
        if len(group_ids) > limit and b - a > 1:  # packed by counts that did not add up: each part alone
            for part in parts[a:b]:
                out += _piece(part, tok.encode(clean(part)), limit, tok, level)
        else:
            out += _piece(group, group_ids, limit, tok, level)
    return out


def _piece(text: str, ids: list[int], limit: int, tok: Tokenizer, level: int) -> list[Piece]:
    """A part of a text (with its trailing whitespace) as pieces: itself, or cut further at the next level."""
    core = text.rstrip()
    pieces = fit(core, ids, limit, tok, level + 1)
    last = pieces[-1]
    return [*pieces[:-1], Piece(last.source, last.ids, spacing(text[len(core) :]))]


def _cut(text: str, at: re.Pattern[str]) -> list[str]:
    """`text` cut after each match of `at` (never at its very start or end); the parts join to `text`."""
    ends = [m.end() for m in at.finditer(text) if 0 < m.end() < len(text)]
    bounds = [0, *ends, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def _packed(counts: list[int], limit: int) -> Iterator[tuple[int, int]]:
    """Consecutive runs [a, b) of parts whose token counts add up to at most `limit` (a part over it alone)."""
    start, total = 0, 0
    for i, n in enumerate(counts):
        if i > start and total + n > limit:
            yield start, i
            start, total = i, 0
        total += n
    yield start, len(counts)


def _between_pieces(ids: list[int], limit: int, tok: Tokenizer) -> list[Piece]:
    """A word longer than the model takes (no space inside it): `limit` pieces at a time, each cut moved back
    to the start of a word ('▁') when there is one in the second half of the window, and never inside a
    character spelt in bytes (byte fallback)."""
    pieces = tok.to_pieces(ids)
    out, start = [], 0
    while start < len(ids):
        end = min(start + limit, len(ids))
        if end < len(ids):
            window = range(end, start, -1)  # cutting before piece i, the latest first
            whole = next((i for i in window if not CONTINUATION.fullmatch(pieces[i])), end)
            end = next((i for i in window if i > start + limit // 2 and pieces[i].startswith("▁")), whole)
        out.append(Piece(tok.decode(ids[start:end]), ids[start:end]))
        start = end
    return out


def _wide(char: str) -> bool:
    """A character of a script written without spaces between words or sentences (CJK)."""
    return unicodedata.east_asian_width(char) in ("W", "F")


def join(lead: str, texts: list[str], afters: list[str]) -> tuple[str, list[str]]:
    """The line's translation: `lead`, then each text followed by its whitespace. Where the source had none
    between two sentences (Chinese, Japanese) but the translations are written with spaces, one is put in; an
    empty translation takes no whitespace after it (but the line's last). Returns the text and the whitespace
    used after each."""
    used = []
    for i, (text, after) in enumerate(zip(texts, afters)):
        last = i == len(texts) - 1
        if not text and not last:
            after = ""
        elif not after and not last and texts[i + 1] and not (_wide(text[-1]) or _wide(texts[i + 1][0])):
            after = " "
        used.append(after)
    return lead + "".join(t + a for t, a in zip(texts, used)), used


def word_offsets(texts: list[str], afters: list[str]) -> list[int]:
    """Where each text's first word is among the whitespace-separated words of `"".join(text + after)`: the
    number of words before it, one less where it continues the word before (no whitespace between)."""
    offsets, words, inside = [], 0, False  # inside: what came so far ends in the middle of a word
    for text, after in zip(texts, afters):
        glued = inside and bool(text) and not text[0].isspace()
        offsets.append(words - 1 if glued else words)
        written = text + after
        words += len(written.split()) - (1 if glued else 0)
        if written:
            inside = not written[-1].isspace()
    return offsets


def pharaoh_pairs(alignment: str) -> list[tuple[int, int]]:
    """The (source word, target word) pairs of a Pharaoh alignment 'i-j i-j ...' (nmt.attention.pharaoh writes
    it); a ValueError for anything else."""
    out = []
    for pair in alignment.split():
        i, j = pair.split("-")
        out.append((int(i), int(j)))
    return out


def shifted(alignment: str, src: int, tgt: int) -> list[str]:
    """Pharaoh pairs 'i-j' moved by `src` source and `tgt` target words."""
    return [f"{i + src}-{j + tgt}" for i, j in pharaoh_pairs(alignment)]
