"""Markup carried to a translation along the word alignment: a span (nmt.documents.inline) goes around the
target words aligned to its source words (from the first to the last of them), an atom after the target word
aligned to the source word before it. Where the alignment is missing (an engine that cannot align) or would break
the nesting (two spans crossing), a span or an atom falls back to the same relative position in the target.
Every atom and every span's markup comes out exactly once, properly nested, and every target word in order.

Knows words, spans and atoms: not Markdown, not HTML (the format module escapes the words), not the model."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field

from nmt.documents.inline import HEAD, PUNCTUATION, TAIL, AtomAt, Run, SpanAt
from nmt.segments import pharaoh_pairs


def alignment_pairs(alignment: str | None, n_src: int, n_tgt: int) -> dict[int, list[int]] | None:
    """Source word -> its aligned target words, from a Pharaoh string; None without a usable alignment."""
    if alignment is None:
        return None
    aligned: dict[int, list[int]] = {}
    try:
        pairs = pharaoh_pairs(alignment)
    except ValueError:
        return None
    for s, t in pairs:
        if 0 <= s < n_src and 0 <= t < n_tgt:
            aligned.setdefault(s, []).append(t)
    return aligned


def render(run: Run, target: str, alignment: str | None, escape: Callable[[str], str] = lambda word: word) -> list[str]:
    """The translated run with its markup, as chunks: " ".join(chunks) is the text, and a line may break between
    any two chunks (each starts with a word or the opening markup before one). `target` is the translation of
    `run.text`, `alignment` its Pharaoh word alignment (None: by relative position)."""
    words = target.split()
    aligned = alignment_pairs(alignment, len(run.words), len(words))
    placed, roots = _place_spans(run, len(words), aligned)
    pieces = _Emitter(run, words, placed, roots, aligned).emit()
    return _chunks(pieces, escape)


def _relative(first: int, last: int, n_src: int, n_tgt: int) -> tuple[int, int]:
    start = first * n_tgt // max(n_src, 1)
    end = max(start + 1, -(-(last + 1) * n_tgt // max(n_src, 1)))
    return min(start, n_tgt), min(end, n_tgt)


class _Siblings:
    """The placed spans under one parent, sorted: they never cross, so their ends are sorted too."""

    def __init__(self) -> None:
        self.intervals: list[tuple[int, int, int]] = []  # (start, end, span index)
        self.keys: list[tuple[int, int]] = []  # (start, end): an empty span first

    def add(self, start: int, end: int, index: int) -> None:
        at = bisect.bisect_right(self.keys, (start, end))
        self.keys.insert(at, (start, end))
        self.intervals.insert(at, (start, end, index))

    def crossing(self, start: int, end: int) -> bool:
        """Whether [start, end) would overlap one of them (touching is fine)."""
        before = bisect.bisect_left(self.keys, (end, -1))  # those starting before it ends
        return before > 0 and self.intervals[before - 1][1] > start

    def holding(self, boundary: int) -> int | None:
        """The one holding a word boundary strictly inside, if any."""
        before = bisect.bisect_left(self.keys, (boundary, -1))
        if before and self.intervals[before - 1][1] > boundary:
            return self.intervals[before - 1][2]
        return None


@dataclass
class _Placed:
    span: SpanAt
    start: int  # target word boundaries: the span wraps target words start..end-1
    end: int
    children: _Siblings = field(default_factory=_Siblings)


def _place_spans(run: Run, n_tgt: int, aligned: dict[int, list[int]] | None) -> tuple[list[_Placed], _Siblings]:
    """Each span's target words; the spans at the top (the others are under their parent's `children`)."""
    placed: list[_Placed] = []
    roots = _Siblings()
    for index, span in enumerate(run.spans):
        fallback = _relative(span.first, span.last, len(run.words), n_tgt)
        wanted = None
        if aligned is not None:
            targets = [t for s in range(span.first, span.last + 1) for t in aligned.get(s, [])]
            wanted = (min(targets), max(targets) + 1) if targets else None
        bounds = (0, n_tgt) if span.parent is None else (placed[span.parent].start, placed[span.parent].end)
        siblings = roots if span.parent is None else placed[span.parent].children
        start, end = _fit(wanted, fallback, bounds, siblings)
        siblings.add(start, end, index)
        placed.append(_Placed(span, start, end))
    return placed, roots


def _fit(
    wanted: tuple[int, int] | None, fallback: tuple[int, int], bounds: tuple[int, int], siblings: _Siblings
) -> tuple[int, int]:
    """An interval inside `bounds` that crosses none of its placed siblings: the aligned one if it fits, else
    the relative one, else the best part of the free gap nearest to it."""
    low, high = bounds
    for option in (wanted, fallback):
        if option is None:
            continue
        start, end = max(option[0], low), min(option[1], high)
        if start < end and not siblings.crossing(start, end):
            return start, end
    taken = [(a, b) for a, b, _ in siblings.intervals]
    gaps = _gaps(bounds, taken)
    if not gaps:  # every word is taken by a sibling: an empty span where the relative position says
        point = min(max(fallback[0], low), high)
        for a, b in taken:
            if a < point < b:
                point = b
        return point, point
    want_start, want_end = fallback

    def distance(gap: tuple[int, int]) -> tuple[int, int]:
        overlap = min(gap[1], want_end) - max(gap[0], want_start)
        return (-overlap, max(gap[0] - want_end, want_start - gap[1], 0))

    gap = min(gaps, key=distance)
    start, end = max(gap[0], want_start), min(gap[1], want_end)
    if start >= end:  # no overlap: the gap's word nearest to where it was wanted
        start = min(max(want_start, gap[0]), gap[1] - 1)
        end = start + 1
    return start, end


def _gaps(bounds: tuple[int, int], taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The stretches of words inside `bounds` that no interval of `taken` holds."""
    gaps, cursor = [], bounds[0]
    for a, b in sorted(taken):
        if a > cursor:
            gaps.append((cursor, a))
        cursor = max(cursor, b)
    if cursor < bounds[1]:
        gaps.append((cursor, bounds[1]))
    return gaps


@dataclass
class _Piece:
    kind: str  # word, head, tail, open, close, atom
    text: str
    space_before: bool
    space_after: bool
    cut: float | None = None  # an open's: where in the next word it goes (SpanAt.head)


class _Emitter:
    """Walks the placed spans as a tree, putting words, atoms and markup in order."""

    def __init__(
        self,
        run: Run,
        words: list[str],
        placed: list[_Placed],
        roots: _Siblings,
        aligned: dict[int, list[int]] | None,
    ) -> None:
        self.words, self.placed, self.roots = words, placed, roots
        self.pieces: list[_Piece] = []
        self.atoms_at: dict[tuple[int | None, int], list[AtomAt]] = {}
        self.glue: dict[int, tuple[bool, bool]] = {}
        for atom in run.atoms:
            boundary = _atom_boundary(atom.after, len(run.words), len(words), aligned)
            owner = self._effective_owner(atom.owner, boundary)
            self.atoms_at.setdefault((owner, boundary), []).append(atom)
            self.glue[id(atom)] = _glue(atom, boundary, words, aligned)

    def _effective_owner(self, owner: int | None, boundary: int) -> int | None:
        while owner is not None and not self.placed[owner].start <= boundary <= self.placed[owner].end:
            owner = self.placed[owner].span.parent
        while True:  # down into a child that now holds the boundary strictly inside
            inner = (self.roots if owner is None else self.placed[owner].children).holding(boundary)
            if inner is None:
                return owner
            owner = inner

    def emit(self) -> list[_Piece]:
        self._node(None, 0, len(self.words))
        return self.pieces

    def _node(self, node: int | None, start: int, end: int) -> None:
        children = self.roots if node is None else self.placed[node].children
        cursor = start
        for _, _, child in children.intervals:
            placed = self.placed[child]
            self._words(node, cursor, placed.start)
            self._open(placed.span)
            self._node(child, placed.start, placed.end)
            self._close(placed.span)
            cursor = placed.end
        self._words(node, cursor, end)

    def _words(self, node: int | None, start: int, end: int) -> None:
        for boundary in range(start, end + 1):
            for atom in self.atoms_at.pop((node, boundary), []):
                left, right = self.glue[id(atom)]
                self.pieces.append(_Piece("atom", atom.text, not left, not right))
            if boundary < end:
                self._word(self.words[boundary])

    def _word(self, word: str) -> None:
        opens = 0  # the opens just before it that stood inside the word (inner spans start no earlier)
        while opens < len(self.pieces) and self.pieces[-1 - opens].kind == "open" and self.pieces[-1 - opens].cut:
            opens += 1
        at = _cut(word, self.pieces[-opens].cut, head=True) if opens else None
        if at is not None:
            self.pieces.insert(len(self.pieces) - opens, _Piece("head", word[:at], True, False))
            word = word[at:]
        self.pieces.append(_Piece("word", word, True, True))

    def _open(self, span: SpanAt) -> None:
        self.pieces.append(_Piece("open", span.open, True, False, span.head))

    def _close(self, span: SpanAt) -> None:
        close = _Piece("close", span.close, False, True)
        last = self.pieces[-1] if self.pieces else None
        if span.tail is not None and last is not None and last.kind == "tail":
            self.pieces.insert(len(self.pieces) - 1, close)
            return
        at = _cut(last.text, span.tail, head=False) if last is not None and last.kind == "word" else None
        if last is not None and at is not None:
            tail = last.text[at:]
            last.text, last.space_after = last.text[:at], False
            self.pieces += [close, _Piece("tail", tail, False, True)]
            return
        self.pieces.append(close)


def _cut(word: str, where: float | None, head: bool) -> int | None:
    """Where to cut a target word for markup that stood inside its source word (None: around the whole word)."""
    if where is None:
        return None
    if where == PUNCTUATION:
        found = HEAD.match(word) if head else TAIL.search(word)
        at = (found.end() if head else found.start()) if found else 0
    else:
        at = round(where * len(word))
    return at if 0 < at < len(word) else None


def _atom_boundary(after: int, n_src: int, n_tgt: int, aligned: dict[int, list[int]] | None) -> int:
    """The target word boundary an atom goes to: before every word, after every word, or after the target
    word aligned to the source word before it."""
    if after < 0:
        return 0
    if after >= n_src - 1:
        return n_tgt
    if aligned is not None and aligned.get(after):
        return max(aligned[after]) + 1
    return min(n_tgt, round((after + 1) * n_tgt / n_src))


def _glue(atom: AtomAt, boundary: int, words: list[str], aligned: dict[int, list[int]] | None) -> tuple[bool, bool]:
    """Whether an atom stays glued (no space) to the target word before and after it: where it was glued in the
    source and that word is the translation of its source neighbour (unaligned: is punctuation, `x`.)."""
    before, after = words[boundary - 1] if boundary > 0 else "", words[boundary] if boundary < len(words) else ""
    if atom.markup:
        return atom.glued_left and bool(before), atom.glued_right and bool(after)
    if aligned is None:
        return atom.glued_left and bool(TAIL.search(before)), atom.glued_right and bool(HEAD.match(after))
    left = atom.glued_left and bool(before) and boundary - 1 in aligned.get(atom.after, [])
    right = atom.glued_right and bool(after) and boundary in aligned.get(atom.after + 1, [])
    return left, right


def _chunks(pieces: list[_Piece], escape: Callable[[str], str]) -> list[str]:
    chunks: list[str] = []
    current = ""
    previous: _Piece | None = None
    for piece in pieces:
        space = previous is not None and previous.space_after and piece.space_before
        text = escape(piece.text) if piece.kind in ("word", "head", "tail") else piece.text
        breakable = piece.kind in ("word", "head") or (piece.kind == "open" and not piece.text.startswith("<"))
        if space and breakable and current:
            chunks.append(current)
            current = text
        else:
            current += (" " if space else "") + text
        previous = piece
    if current:
        chunks.append(current)
    return chunks
