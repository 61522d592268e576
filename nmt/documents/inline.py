"""A run of inline text with markup (a Markdown paragraph, an HTML <p>), read: the plain text the model
translates, and where the markup stood among its words (nmt.documents.carry writes it back into the translation).

Markup comes in two kinds. A span wraps words (emphasis, a link, <b>...</b>): its opening and closing markup are
kept verbatim. An atom is a verbatim piece between words that is not translated (inline code, an image, <br>, a
URL). A span that holds no words is kept as an atom; one never closed ends with the run, with no closing markup
(as in the source); a close never opened is left to the format module (an atom, usually).

Words are whitespace-separated, as the model's alignments count them (nmt.attention.word_alignment). This module
knows neither Markdown nor HTML: a format module feeds a `Builder` in source order."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

WORD = re.compile(r"\S+")
URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"']*[^\s<>\"'.,;:!?)\]}]")  # a bare URL: kept, never translated
HEAD = re.compile(r"^[^\w\s]+")  # leading punctuation of a word (an opening quote)
TAIL = re.compile(r"[^\w\s]+$")  # trailing punctuation of a word (a full stop after a link)


@dataclass
class _Span:
    open: str
    key: str | None
    note: object
    start: int  # where it opens in the plain text
    piece: int  # how many source pieces came before it (to rebuild it verbatim when it holds no words)
    atoms: int  # how many atoms came before it
    last: str  # the source character before it
    parent: int | None
    texts: int  # how many texts with words came before it
    close: str = ""
    end: int = -1  # -1 while it is open


@dataclass
class _Atom:
    text: str
    pos: int  # the separating space it stands on in the plain text
    glued_left: bool  # no whitespace between it and what comes before (kept so in the output)
    owner: int | None  # the innermost span around it
    glued_right: bool = False
    markup: bool = False


@dataclass(frozen=True)
class SpanAt:
    """A span over source words first..last (inclusive). `head`/`tail`: where its markup stood inside its
    first/last word, and goes inside the target word: PUNCTUATION (`*hello*,`: inside the word's punctuation), a
    fraction of the word (`**un**done`), or None (around the whole word)."""

    open: str
    close: str
    first: int
    last: int
    parent: int | None
    head: float | None
    tail: float | None


PUNCTUATION = -1.0  # a span's markup stood inside its word's punctuation (SpanAt.head, SpanAt.tail)


@dataclass(frozen=True)
class AtomAt:
    """An atom after source word `after` (-1: before every word), glued to its neighbours or not."""

    text: str
    after: int
    owner: int | None
    glued_left: bool
    glued_right: bool
    markup: bool = False  # markup of a span that did not close (or open) here: glued as in the source


@dataclass(frozen=True)
class Run:
    """What a Builder made: the words the model translates (`text`, one line), spans and atoms around them."""

    words: tuple[str, ...]
    spans: tuple[SpanAt, ...]
    atoms: tuple[AtomAt, ...]
    unclosed: tuple[object, ...]  # the notes of spans never closed (kept as atoms)

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def plain(self) -> bool:
        """No markup at all: the translation is the output."""
        return not self.spans and not self.atoms


class Builder:
    """Feed a run's pieces in source order: text (unescaped, newlines allowed), atoms, opening and closing markup."""

    def __init__(self, protect_urls: bool = True) -> None:
        self._plain: list[str] = []
        self._length = 0
        self._pieces: list[str] = []  # every verbatim piece, in order
        self._spans: list[_Span] = []
        self._atoms: list[_Atom] = []
        self._stack: list[int] = []
        self._last = ""  # the last source character (for glue)
        self._waiting: list[_Atom | _Span] = []  # atoms and opens waiting to learn what follows them
        self._protect_urls = protect_urls
        self._texts = 0  # how many texts with words were given (a span with none between is an atom)

    def _follow(self, first: str) -> None:
        for item in self._waiting:
            if isinstance(item, _Atom):
                item.glued_right = not first.isspace()
        self._waiting = []

    def text(self, text: str) -> None:
        if not text:
            return
        if self._protect_urls and ("://" in text or "www." in text):
            cursor = 0
            for match in URL.finditer(text):
                self._text(text[cursor : match.start()])
                self.atom(match.group())
                cursor = match.end()
            text = text[cursor:]
        self._text(text)

    def _text(self, text: str) -> None:
        if not text:
            return
        self._follow(text[0])
        self._pieces.append(text)
        self._plain.append(text)
        self._length += len(text)
        self._last = text[-1]
        self._texts += not text.isspace()

    def atom(self, text: str, markup: bool = False) -> None:
        """A verbatim piece that is not translated; it stands between words (a space separates it in the plain
        text, so that `one<br>two` is two words). `markup`: a span's markup that could not be one here (a close
        that opened nothing), kept glued to its neighbours as in the source."""
        self._follow(text[:1] or " ")
        glued = bool(self._last) and not self._last.isspace()
        atom = _Atom(text, self._length, glued, self._stack[-1] if self._stack else None, markup=markup)
        self._atoms.append(atom)
        self._waiting.append(atom)
        self._pieces.append(text)
        self._plain.append(" ")
        self._length += 1
        self._last = text[-1:] or self._last

    def open(self, markup: str, key: str | None = None, note: object = None) -> None:
        """Opening markup of a span; `close` with the same `key` ends it."""
        self._follow(" ")  # an atom is glued to words, not to markup that moves with other words
        parent = self._stack[-1] if self._stack else None
        span = _Span(
            markup, key, note, self._length, len(self._pieces), len(self._atoms), self._last, parent, self._texts
        )
        self._stack.append(len(self._spans))
        self._spans.append(span)
        self._pieces.append(markup)
        self._last = " "

    def close(self, markup: str, key: str | None = None, unwind: bool = False) -> bool:
        """Closing markup of the innermost open span, if its key is `key`; False (nothing done) otherwise. With
        `unwind`, spans opened inside it and still open end here, with no closing markup (Markdown's emphasis
        may cross an inline HTML tag)."""
        keys = [self._spans[i].key for i in self._stack]
        if unwind and key in keys:
            while keys.pop() != key:
                self.close("", self._spans[self._stack[-1]].key)
        if not self._stack or self._spans[self._stack[-1]].key != key:
            return False
        index = self._stack.pop()
        span = self._spans[index]
        if self._texts == span.texts:  # no words inside: one atom, verbatim
            verbatim = span.open + "".join(self._pieces[span.piece + 1 :]) + markup
            folded = self._atoms[span.atoms :]
            self._waiting = [item for item in self._waiting if not any(item is atom for atom in folded)]
            del self._spans[index:], self._atoms[span.atoms :], self._pieces[span.piece :]
            self._truncate(span.start)
            self._last = span.last
            self.atom(verbatim)
            return True
        self._follow(" ")
        span.close, span.end = markup, self._length
        self._pieces.append(markup)
        self._last = " "
        return True

    def _truncate(self, length: int) -> None:
        """Drop the plain text after `length` (only whitespace: what a span without words held)."""
        while self._plain and self._length - len(self._plain[-1]) >= length:
            self._length -= len(self._plain.pop())
        if self._length > length:
            self._plain[-1] = self._plain[-1][: length - self._length]
            self._length = length

    def finish(self) -> Run:
        """The run; spans still open end with it, with no closing markup (as in the source)."""
        unclosed = [self._spans[index].note for index in reversed(self._stack)]
        while self._stack:
            self.close("", self._spans[self._stack[-1]].key)
        plain = "".join(self._plain)
        words = [(m.start(), m.end()) for m in WORD.finditer(plain)]
        starts = [start for start, _ in words]
        spans = self._spans_at(plain, words, starts)
        atoms = [
            AtomAt(
                atom.text,
                _words_before(starts, atom.pos) - 1,
                atom.owner,
                atom.glued_left,
                atom.glued_right,
                atom.markup,
            )
            for atom in self._atoms
        ]
        return Run(tuple(plain[s:e] for s, e in words), tuple(spans), tuple(atoms), tuple(reversed(unclosed)))

    def _spans_at(self, plain: str, words: list[tuple[int, int]], starts: list[int]) -> list[SpanAt]:
        out: list[SpanAt] = []
        for span in self._spans:
            first = _words_before(starts, span.start + 1) - 1
            if first < 0 or words[first][1] <= span.start:
                first += 1  # the span starts between words
            last = _words_before(starts, span.end) - 1
            word_start, word_end = words[first][0], words[last][1]
            head = _where(plain[word_start : span.start], words[first], HEAD)
            tail = _where(plain[span.end : word_end] if span.end < word_end else "", words[last], TAIL, from_end=True)
            out.append(SpanAt(span.open, span.close, first, last, span.parent, head, tail))
        return out


def _where(outside: str, word: tuple[int, int], punctuation: re.Pattern[str], from_end: bool = False) -> float | None:
    """Where in a word a span's markup stood, `outside` being the part of the word left out of the span."""
    if not outside:
        return None
    if punctuation.fullmatch(outside):
        return PUNCTUATION
    length = word[1] - word[0]
    return (length - len(outside)) / length if from_end else len(outside) / length


def _words_before(starts: list[int], pos: int) -> int:
    """How many words start before `pos`."""
    return bisect.bisect_left(starts, pos)
