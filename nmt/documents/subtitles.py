"""Subtitles (SRT and WebVTT) as documents: only the cues' text lines are translated. Every other line is written
back as it was read, byte for byte: cue numbers and identifiers, timing lines with their cue settings, a WebVTT
file's header, NOTE, STYLE and REGION blocks, blank lines, '\\r\\n' line ends, a byte-order mark.

A sentence that runs over several cues is translated once: the cues' text lines are read as one stream, cut
into sentences (nmt.sentences), and each sentence's translation is shared back over the lines it came from, along
the word alignment when the engine gives one, else in proportion to each line's share of the source characters,
on word boundaries and in order, every line getting a word where there are enough. So a cue keeps its number of
lines. A line's leading speaker dash, music note or tag (`- `, `♪`, `<i>`, `{\\an8}`) and its trailing tags stay
where they are; a speaker's dash also starts a new sentence.

Which block is a cue, a comment or a style block, and what a timing line looks like, are webvtt-py's rules (a
maintained reader of both formats; the optional extra nmt[subtitles]); its writer re-formats timings, so the
lines are kept here and only the text lines replaced. Malformed input (a broken timing line, a cue without its
number, text outside any cue, a missing blank line) is translated as it stands, with a warning naming the line.

Knows lines, cues and sentences; not the model (`Translate`), not the command line."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from nmt.documents import Translate, Warn
from nmt.errors import ConfigError
from nmt.line_translator import Translation
from nmt.segments import pharaoh_pairs
from nmt.sentences import split_sentences

INSTALL = "pip install 'nmt[subtitles]'"
# A stream without sentence ends (song lyrics) is cut at line boundaries past this many characters, so that the
# model is not given a whole film as one sentence
MAX_SENTENCE_CHARS = 300
# What frames a line's text and stays in place: leading space, tags, a speaker's dash, music notes...
_FRAME_START = re.compile(r"(?:\s|<[^>]*>|\{\\[^}]*\}|[-‐–—](?:\s+|(?=[^\W\d_]))|♪)*")
_FRAME_END = re.compile(r"(?:\s|<[^>]*>|\{\\[^}]*\}|♪)*$")  # ... and trailing tags and notes
_DASH = re.compile(r"[-‐–—]")
_LEAD = re.compile(r"[-‐–—]\s+")
_TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")  # markup inside a line (left out of what is translated)
# A timing line, or one meant as one (a broken arrow): it is kept as it is, never translated
_TIMING_LIKE = re.compile(r"-->|^\s*\d+:\d+[:.,]\d+.*(?:->|–>|—>|→|-- >)")


def _timing_like(line: str) -> bool:
    return bool(_TIMING_LIKE.search(line))


def _library() -> tuple[Any, Any]:
    """webvtt-py's SRT and WebVTT modules, or a one-line error saying how to install them."""
    try:
        from webvtt import srt, vtt
    except ImportError as e:
        raise ConfigError(f"SRT and WebVTT subtitles need webvtt-py: {INSTALL}") from e
    return srt, vtt


@dataclass
class Piece:
    """A cue's text line: `core` is translated; `before` and `after` (spaces, tags, a dash) are kept around it."""

    line: int  # 0-based, in the document
    cue: int  # the block it is in
    before: str
    core: str
    after: str
    out: list[tuple[str, bool]] = field(default_factory=list)  # its share of each sentence it is in, and glued

    @property
    def dialogue(self) -> bool:
        return bool(_DASH.search(_TAG.sub("", self.before)))  # a dash of its own, not one inside <c.a-b>


@dataclass(frozen=True)
class Fragment:
    """The part of a line that belongs to one sentence."""

    piece: Piece
    text: str
    glued: bool = False  # no space before it in the line (a sentence end inside a word, "?:"): none after either
    lead: str = ""  # a speaker's dash that starts a sentence inside the line ("Yes. - No."): kept, not translated


class Reader:
    """The blocks of a subtitle file and what each holds, by webvtt-py's rules; warnings name the line."""

    def __init__(self, lines: list[str], warn: Warn, where: str) -> None:
        self.srt, self.vtt = _library()
        self.lines, self.warn, self.where = lines, warn, where
        self.webvtt = lines[0].startswith("WEBVTT")

    def say(self, index: int, message: str) -> None:
        self.warn(f"{self.where}{index + 1}: {message}")

    def blocks(self) -> list[list[int]]:
        """Runs of non-blank lines (their indices); a timing line where a cue cannot go on starts a new block,
        with its cue number when one is just before it (a missing blank line)."""
        blocks: list[list[int]] = []
        block: list[int] = []
        for i, line in enumerate(self.lines):
            if not line.strip():
                if block:
                    blocks.append(block)
                block = []
                continue
            if block and _timing_like(line) and self._breaks(block):
                moved = block[-1:] if len(block) > 2 and self.lines[block[-1]].strip().isdigit() else []
                blocks.append(block[: len(block) - len(moved)])
                block = moved
                self.say(block[0] if block else i, "a cue begins here with no blank line before it; read as a new cue")
            block.append(i)
        if block:
            blocks.append(block)
        return blocks

    def _breaks(self, block: list[int]) -> bool:
        """Whether a timing line after `block` starts a new cue (it cannot be this block's own timing line)."""
        first = self.lines[block[0]]
        return len(block) >= 2 or _timing_like(first) or (block[0] == 0 and self.webvtt)

    def text_lines(self, block: list[int]) -> list[int]:
        """The lines of `block` to translate: a cue's text, or stray text; none of a header, comment or style."""
        lines = [self.lines[i] for i in block]
        if self.webvtt and block[0] == 0:
            return []
        timing = 0 if _timing_like(lines[0]) else 1 if len(lines) > 1 and _timing_like(lines[1]) else None
        if timing is None:
            if self.webvtt and self._vtt_block(lines):  # as webvtt-py reads: a cue first, else a comment or style
                return []
            if len(lines) == 1 and lines[0].strip().isdigit():
                self.say(block[0], "a cue number with no timing line after it; kept as it is")
                return []
            self.say(block[0], "text outside any cue (no timing line before it); translated as it stands")
            return block
        self._check_cue(block, lines, timing)
        return block[timing + 1 :]

    def _vtt_block(self, lines: list[str]) -> bool:
        vtt = self.vtt
        return bool(
            vtt.WebVTTCommentBlock.is_valid(lines)
            or vtt.WebVTTStyleBlock.is_valid(lines)
            or vtt.WebVTTRegionBlock.is_valid(lines)
        )

    def _check_cue(self, block: list[int], lines: list[str], timing: int) -> None:
        timing_line = lines[timing]
        if not (
            self.srt.SRTCueBlock.CUE_TIMINGS_PATTERN.match(timing_line)
            or self.vtt.WebVTTCueBlock.CUE_TIMINGS_PATTERN.match(timing_line)
        ):
            self.say(block[timing], "a broken cue timing line; kept as it is, the cue's text translated")
        elif not self.webvtt and timing == 0:
            self.say(block[0], "a cue without its number; kept so, its text translated")
        elif not self.webvtt and not self.srt.SRTCueBlock.is_valid(lines):
            self.say(block[0], f"cue number {lines[0].strip()!r} is not a number; kept as it is")

    def pieces(self) -> list[Piece]:
        return [
            piece
            for cue, block in enumerate(self.blocks())
            for i in self.text_lines(block)
            if (piece := self._piece(i, cue)) is not None
        ]

    def _piece(self, index: int, cue: int) -> Piece | None:
        line = self.lines[index]
        before = _FRAME_START.match(line)
        start = before.end() if before else 0
        end = _FRAME_END.search(line, start)
        stop = end.start() if end else len(line)
        core = line[start:stop]
        if tags := _TAG.findall(core):
            self.say(index, f"markup inside the line ({' '.join(tags)}) is left out of its translation")
            core = _TAG.sub("", core)
        core = " ".join(core.split())
        return Piece(index, cue, line[:start], core, line[stop:]) if core else None


def sentences(pieces: list[Piece], lang: str | None) -> list[list[Fragment]]:
    """The text lines read as streams (a speaker's dash starts a new one), cut into sentences: each sentence as
    the fragments of lines it is made of, in order. Over-long ones are cut at line boundaries."""
    found: list[list[Fragment]] = []
    for run in _runs(pieces):
        stream = " ".join(piece.core for piece in run)
        starts, at = [], 0
        for piece in run:
            starts.append(at)
            at += len(piece.core) + 1
        at = 0
        for segment in split_sentences(stream, lang):
            begin, at = at, at + len(segment)
            sentence = [
                fragment
                for piece, start in zip(run, starts)
                if start < at
                and begin < start + len(piece.core)
                and (fragment := _fragment(piece, max(begin - start, 0), at - start))
            ]
            found.extend(_capped(sentence))
    return found


def _fragment(piece: Piece, begin: int, end: int) -> Fragment | None:
    part = piece.core[begin:end]
    text = part.strip()
    if not text:
        return None
    first = begin + len(part) - len(part.lstrip())
    lead = _LEAD.match(text) if first > 0 else None
    if lead and lead.end() < len(text):
        return Fragment(piece, text[lead.end() :], not piece.core[first - 1].isspace(), lead.group())
    return Fragment(piece, text, first > 0 and not piece.core[first - 1].isspace())


def _runs(pieces: list[Piece]) -> list[list[Piece]]:
    runs: list[list[Piece]] = []
    for piece in pieces:
        if not runs or piece.dialogue:
            runs.append([])
        runs[-1].append(piece)
    return runs


def _capped(sentence: list[Fragment]) -> list[list[Fragment]]:
    groups: list[list[Fragment]] = []
    size = 0
    for fragment in sentence:
        if not groups or (size + len(fragment.text) > MAX_SENTENCE_CHARS and groups[-1]):
            groups.append([])
            size = 0
        groups[-1].append(fragment)
        size += len(fragment.text) + 1
    return groups


def share(fragments: list[Fragment], result: Translation) -> list[str]:
    """A sentence's translation shared over the fragments it came from, in order and on word boundaries: along
    its word alignment when there is one, else in proportion to the fragments' characters. Every fragment gets
    at least one word when the translation has enough, else every cue."""
    words = result.text.split()
    if len(fragments) == 1:
        return [" ".join(words)]
    wanted = _by_alignment(fragments, result.alignment, len(words)) if result.alignment else None
    owners = _monotone(wanted or _by_length(fragments, words), len(fragments), _units(fragments, len(words)))
    return [" ".join(w for w, owner in zip(words, owners) if owner == i) for i in range(len(fragments))]


def _units(fragments: list[Fragment], n: int) -> list[int] | None:
    """What must not be left empty, numbered for each fragment: the fragments themselves when there are words
    enough, else the cues; None when there are fewer words than cues."""
    if n >= len(fragments):
        return list(range(len(fragments)))
    cues = [fragment.piece.cue for fragment in fragments]
    units = [sum(1 for a, b in zip(cues, cues[1 : i + 1]) if a != b) for i in range(len(cues))]
    return units if n > units[-1] else None


def _by_alignment(fragments: list[Fragment], alignment: str, n: int) -> list[float | None] | None:
    """For each target word, the fragment its aligned source words are in (their mean; None: unaligned)."""
    owner = [i for i, fragment in enumerate(fragments) for _ in fragment.text.split()]
    votes: dict[int, list[int]] = {}
    try:
        pairs = pharaoh_pairs(alignment)
    except ValueError:
        return None
    for s, t in pairs:
        if s < len(owner) and t < n:
            votes.setdefault(t, []).append(owner[s])
    if not votes:
        return None
    return [sum(v) / len(v) if (v := votes.get(j)) else None for j in range(n)]


def _by_length(fragments: list[Fragment], words: list[str]) -> list[float | None]:
    """For each target word, the fragment at the same relative place in the source (by characters)."""
    bounds, at = [], 0
    for fragment in fragments:
        at += len(fragment.text) + 1
        bounds.append(at)
    total, target = bounds[-1], sum(len(w) + 1 for w in words) or 1
    wanted: list[float | None] = []
    at = 0
    for word in words:
        middle = (at + (len(word) + 1) / 2) / target * total
        at += len(word) + 1
        wanted.append(float(next((i for i, bound in enumerate(bounds) if middle < bound), len(bounds) - 1)))
    return wanted


def _monotone(wanted: list[float | None], k: int, units: list[int] | None) -> list[int]:
    """The owner (one of k fragments) of each word, never going back, closest to `wanted` (distance summed).
    Given `units` (each fragment's, in order), every unit gets a word: the first word's is the first unit, the
    last's the last, and owners never skip a unit."""
    n = len(wanted)
    if n == 0:
        return []

    def cost(j: int, owner: int) -> float:
        w = wanted[j]
        return 0.0 if w is None else abs(owner - w)

    inf = float("inf")
    best = [[cost(0, f) if units is None or units[f] == 0 else inf for f in range(k)]]
    back: list[list[int]] = [[0] * k]
    for j in range(1, n):
        came = [_previous(best[-1], f, units) for f in range(k)]
        best.append([best[-1][g] + cost(j, f) for f, g in enumerate(came)])
        back.append(came)
    ends = [f for f in range(k) if units is None or units[f] == units[-1]]
    owner = min(ends, key=lambda f: best[-1][f])
    owners = [owner]
    for j in range(n - 1, 0, -1):
        owner = back[j][owner]
        owners.append(owner)
    return owners[::-1]


def _previous(row: list[float], f: int, units: list[int] | None) -> int:
    """The best owner of the word before one owned by `f` (staying wins ties: words keep together)."""
    choices = [g for g in range(f + 1) if units is None or units[f] - units[g] <= 1]
    return min(choices, key=lambda g: (row[g], g != f))


def translate(text: str, translate: Translate, *, lang: str | None, warn: Warn, where: str) -> str:
    """An SRT or WebVTT document (WebVTT when it starts with its 'WEBVTT' header) with its cues' text translated;
    everything else as it was."""
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    raw = text[len(bom) :].split("\n")
    ends = ["\r" if line.endswith("\r") else "" for line in raw]
    lines = [line[: len(line) - len(end)] for line, end in zip(raw, ends)]
    reader = Reader(lines, warn, where)
    groups = sentences(reader.pieces(), lang)
    results = translate([" ".join(fragment.text for fragment in group) for group in groups]) if groups else []
    for group, result in zip(groups, results):
        for warning in result.warnings:
            reader.say(group[0].piece.line, warning)
        for fragment, words in zip(group, share(group, result)):
            if words:
                fragment.piece.out.append((fragment.lead + words, fragment.glued))
    return bom + _written(lines, ends, groups)


def _written(lines: list[str], ends: list[str], groups: list[list[Fragment]]) -> str:
    """The document's lines with each text line replaced by its translation (a line left with no words at all,
    where the translation was shorter than its lines, is dropped: a blank line would end the cue)."""
    pieces = {fragment.piece.line: fragment.piece for group in groups for fragment in group}
    out = []
    for i, (line, end) in enumerate(zip(lines, ends)):
        piece = pieces.get(i)
        if piece is None:
            out.append(line + end)
        elif piece.out:
            text = "".join(words if glued or not n else f" {words}" for n, (words, glued) in enumerate(piece.out))
            out.append(piece.before + text + piece.after + end)
    return "\n".join(out)
