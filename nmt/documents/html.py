"""HTML as a document: the text of every block (a paragraph, a heading, a list item, a table cell, a title) is
translated as one inline run (nmt.documents.inline), with inline tags (<b>, <a href>, <span>...) carried to the
words they belong to (nmt.documents.carry); attributes meant for people (alt, title, placeholder, aria-label) are
translated too.
Everything else is byte-identical: script, style, code, pre, textarea, svg and math with all they hold, comments,
the doctype, every tag and attribute not named above, entities outside the translated text, whitespace around
blocks. Translated text is escaped minimally (& < >, and the attribute's quote).

The standard library's html.parser reads the page; its positions let every untranslated byte be copied from the
source. Malformed input (a tag never closed, a closing tag never opened) is translated as well as it can be, with
a warning naming the line: the stray markup is kept where it stood. Knows HTML only: not the model, not Markdown."""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass
from html import escape, unescape
from html.parser import HTMLParser
from typing import cast

from nmt.documents import Translate, Warn
from nmt.documents.carry import render
from nmt.documents.inline import Builder, Run
from nmt.line_translator import Translation

SKIP = frozenset({"script", "style", "code", "pre", "textarea", "svg", "math", "template"})  # never translated
BLOCK_SKIP = frozenset({"pre"})  # ends the run around it (the others sit inside a sentence, as atoms)
INLINE = frozenset(
    "a abbr b bdi bdo big button cite data del dfn em font i ins kbd label mark nobr q s samp small span strike "
    "strong sub sup time tt u var".split()
)
INLINE_VOID = frozenset({"br", "img", "wbr", "input"})  # atoms inside a sentence
VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
OPTIONAL_END = frozenset(
    "html head body p li dt dd tr td th thead tbody tfoot option optgroup colgroup caption rt rp".split()
)
PEOPLE = frozenset({"alt", "title", "placeholder", "aria-label"})  # attributes a reader sees
TAG_NAME = re.compile(r"<[^\s/>]+")
BROKEN = re.compile(r"<[!?/A-Za-z]")  # data the parser gave up on reading as markup
ATTRIBUTE = re.compile(r"""([^\s/>"'=][^\s/>=]*)(\s*=\s*("[^"]*"|'[^']*'|(?!['"])[^>\s]*))?""")


@dataclass
class _Event:
    kind: str  # start, end, startend, data, other
    tag: str
    start: int  # offset in the source
    data: str = ""  # data: the text, entities decoded
    end: int = 0


class _Reader(HTMLParser):
    """Every parser event with where it starts in the source."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.lines = [0] + [m.end() for m in re.finditer("\n", text)]
        self.events: list[_Event] = []

    def _add(self, kind: str, tag: str = "", data: str = "") -> None:
        line, column = self.getpos()
        self.events.append(_Event(kind, tag, self.lines[line - 1] + column, data))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._add("start", tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._add("startend", tag)

    def handle_endtag(self, tag: str) -> None:
        self._add("end", tag)

    def handle_data(self, data: str) -> None:
        self._add("data", data=data)

    def handle_comment(self, data: str) -> None:
        self._add("other", "!--")

    def handle_decl(self, decl: str) -> None:
        self._add("other")

    def handle_pi(self, data: str) -> None:
        self._add("other")

    def unknown_decl(self, data: str) -> None:
        self._add("other")


def read(text: str) -> list[_Event]:
    """The page's events; each one's source is text[event.start:event.end], and together they are the text."""
    reader = _Reader(text)
    reader.feed(text)
    reader.close()
    events = sorted(reader.events, key=lambda event: event.start)  # close() may flush what was held back
    if not events or events[0].start > 0:
        events.insert(0, _Event("data", "", 0, unescape(text[: events[0].start] if events else text)))
    for event, following in zip(events, events[1:] + [_Event("other", "", len(text))]):
        event.end = following.start
    merged: list[_Event] = []
    for event in events:  # a tag or comment cut short by the end: the parser gives it as text, in pieces
        if event.kind == "data" and merged and merged[-1].kind == "broken":
            merged[-1].end = event.end
            continue
        if event.kind == "data" and BROKEN.match(text, event.start):
            event.kind = "broken"
        merged.append(event)
    return merged


def translate(text: str, translate: Translate, *, lang: str | None, warn: Warn, where: str) -> str:
    events = read(text)
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    found: list[tuple[int, str]] = []  # warnings, by where in the text: told in the order of the lines

    def warn_at(offset: int, message: str) -> None:
        found.append((offset, message))

    def original(i: int) -> str:
        return text[events[i].start : events[i].end]

    skipped: set[int] = set()
    for event in events:
        if event.kind == "broken":
            warn_at(event.start, f"markup never finished ({text[event.start : event.end][:20]!r}); kept")
    pieces = _pieces(events, skipped, warn_at)
    attributes = [
        (i, attribute)
        for i, event in enumerate(events)
        if event.kind in ("start", "startend") and i not in skipped
        for attribute in _people(text, event)
    ]
    runs = [None if isinstance(piece, int) else _build(piece, events, original) for piece in pieces]
    todo = [run.text for run in runs if run is not None and run.words]
    results = translate(todo + [value for _, (_, _, _, value) in attributes]) if todo or attributes else []
    tags = _translated_tags(text, events, attributes, results[len(todo) :])

    def source(i: int) -> str:
        return tags.get(i, original(i))

    out: list[str] = []
    answers = iter(results[: len(todo)])
    for piece, run in zip(pieces, runs):
        if isinstance(piece, int):
            out.append(source(piece))
            continue
        done = _build(piece, events, source, warn_at)  # again, with attributes translated, and warnings
        result = next(answers) if run is not None and run.words else None
        if result is None or not result.text.strip():
            out.append("".join(source(i) for i in _indices(piece)))
            continue
        raw = "".join(original(i) for i in _indices(piece))
        lead, trail = raw[: len(raw) - len(raw.lstrip())], raw[len(raw.rstrip()) :]
        body = " ".join(render(done, result.text, result.alignment, lambda word: escape(word, quote=False)))
        out.append(lead + body + trail)
    for offset, message in sorted(found, key=lambda item: item[0]):
        warn(f"{where}{bisect.bisect_right(line_starts, offset)}: {message}")
    return "".join(out)


WarnAt = Callable[[int, str], None]  # a warning about the text at an offset
Piece = int | list[tuple[int, int]]  # an event kept as it is, or a run: (first, last) event ranges in order


def _pieces(events: list[_Event], skipped: set[int], warn_at: WarnAt) -> list[Piece]:
    """The page cut into events kept as they are and runs of inline content (each range one event, or an
    element never translated from its start tag to its end tag); `skipped` gets the events of those elements."""
    pieces: list[Piece] = []
    run: list[tuple[int, int]] = []
    blocks: list[tuple[str, int]] = []
    i = 0
    while i < len(events):
        event = events[i]
        inline = event.kind == "data" or event.tag in INLINE or event.tag in INLINE_VOID or event.tag == "!--"
        if event.kind == "start" and event.tag in SKIP:
            last = _matching_end(events, i)
            if last is None:
                warn_at(event.start, f"<{event.tag}> is never closed; kept as it is to the end")
                last = len(events) - 1
            skipped.update(range(i, last + 1))
            if event.tag in BLOCK_SKIP:
                pieces += ([run] if run else []) + list(range(i, last + 1))
                run = []
            else:
                run.append((i, last))
            i = last + 1
            continue
        if inline:
            run.append((i, i))
        else:
            if run:
                pieces.append(run)
                run = []
            pieces.append(i)
            _check_block(event, blocks, warn_at)
        i += 1
    if run:
        pieces.append(run)
    for tag, offset in blocks:
        if tag not in OPTIONAL_END:
            warn_at(offset, f"<{tag}> is never closed")
    return pieces


def _matching_end(events: list[_Event], first: int) -> int | None:
    tag, depth = events[first].tag, 0
    for i in range(first, len(events)):
        if events[i].tag == tag and events[i].kind in ("start", "end"):
            depth += 1 if events[i].kind == "start" else -1
            if depth == 0:
                return i
    return None


def _check_block(event: _Event, blocks: list[tuple[str, int]], warn_at: WarnAt) -> None:
    """Warn of block tags closed without being opened, or left open inside one that closes."""
    if event.kind == "start" and event.tag not in VOID:
        blocks.append((event.tag, event.start))
    elif event.kind == "end" and event.tag not in VOID:
        if event.tag not in (tag for tag, _ in blocks):
            warn_at(event.start, f"</{event.tag}> closes nothing; kept as it is")
            return
        while blocks:
            tag, offset = blocks.pop()
            if tag == event.tag:
                break
            if tag not in OPTIONAL_END:
                warn_at(offset, f"<{tag}> is never closed")


def _indices(piece: Piece) -> list[int]:
    if isinstance(piece, int):
        return [piece]
    return [i for first, last in piece for i in range(first, last + 1)]


def _build(
    piece: list[tuple[int, int]],
    events: list[_Event],
    source: Callable[[int], str],
    warn_at: WarnAt | None = None,
) -> Run:
    """A run's inline content as a Run; warnings only when `warn_at` is given."""
    builder = Builder()
    for first, last in piece:
        event = events[first]
        if first != last or event.tag in SKIP:  # an element never translated, kept whole
            builder.atom("".join(source(i) for i in range(first, last + 1)))
        elif event.kind == "data":
            builder.text(event.data)
        elif event.kind == "start" and event.tag not in VOID:
            builder.open(source(first), event.tag, (event.tag, event.start))
        elif event.kind == "end" and event.tag in INLINE:
            if not builder.close(source(first), event.tag):
                builder.atom(source(first))
                if warn_at:
                    warn_at(event.start, f"</{event.tag}> closes nothing here; kept as it is")
        else:
            builder.atom(source(first))
    run = builder.finish()
    for note in run.unclosed:
        tag, offset = cast(tuple[str, int], note)
        if warn_at:
            warn_at(offset, f"<{tag}> is not closed here; kept as it is")
    return run


def _people(text: str, event: _Event) -> list[tuple[int, int, str, str]]:
    """The attributes of a start tag meant for people: (value start, value end, its quote, its text)."""
    raw = text[event.start : event.end]
    name = TAG_NAME.match(raw)
    found = []
    for attribute in ATTRIBUTE.finditer(raw, name.end() if name else 0):
        value = attribute.group(3)
        if attribute.group(1).lower() not in PEOPLE or not value:
            continue
        quote = value[0] if value[0] in "'\"" else ""
        words = " ".join(unescape(value[1:-1] if quote else value).split())
        if words:
            found.append((event.start + attribute.start(3), event.start + attribute.end(3), quote, words))
    return found


def _translated_tags(
    text: str,
    events: list[_Event],
    attributes: list[tuple[int, tuple[int, int, str, str]]],
    results: list[Translation],
) -> dict[int, str]:
    """Start tags with their people's attributes translated, by event index."""
    tags: dict[int, str] = {}
    for (i, (start, end, quote, _)), result in sorted(
        zip(attributes, results), key=lambda item: (item[0][0], -item[0][1][0])
    ):
        if not result.text.strip():
            continue
        raw = tags.get(i, text[events[i].start : events[i].end])
        value = escape(result.text, quote=False).replace(quote or '"', "&quot;" if quote != "'" else "&#x27;")
        at, to = start - events[i].start, end - events[i].start
        tags[i] = raw[:at] + (quote or '"') + value + (quote or '"') + raw[to:]
    return tags
