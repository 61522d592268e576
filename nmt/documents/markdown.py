"""Markdown as a document: the text of paragraphs, headings, list items, block quotes, table cells and link texts
translated; everything else byte-identical (code blocks, inline code, URLs and link targets, images, HTML, front
matter, link definitions, container prefixes such as '> ' and list indentation, blank lines).

markdown-it-py finds the blocks (their source lines) and parses their inline text; this module replaces each
text's source span in the original lines rather than rendering the document again. A paragraph keeps its source
lines (its translation is wrapped over them, or over fewer when it is shorter); a hard line break keeps its line,
the text on each side being translated on its own. Emphasis, links and inline HTML tags become spans and inline
code, images and autolinks atoms of an inline run (nmt.documents.inline), carried to the words they belong to
(nmt.documents.carry).
Image alt texts are kept as they are (an image is an atom). Knows Markdown only: not the model, not HTML."""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from markdown_it import MarkdownIt, rules_inline
from markdown_it.helpers import parseLinkLabel
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token

from nmt.documents import Translate, Warn
from nmt.documents.carry import render
from nmt.documents.inline import Builder, Run

Slot = tuple[int, int, int]  # (line, start column, end column): the part of one source line a text holds

RECORDING = {  # the inline rules whose tokens must say where they came from, by their names in markdown-it-py
    "backticks": rules_inline.backtick,
    "link": rules_inline.link,
    "image": rules_inline.image,
    "autolink": rules_inline.autolink,
    "html_inline": rules_inline.html_inline,
    "newline": rules_inline.newline,
    "escape": rules_inline.escape,
}
RECORDED = {"code_inline", "image", "html_inline", "link_open", "link_close", "softbreak", "hardbreak"}
SPECIAL = re.compile(r"([\\`*\[\]<>|~]|(?<![^\W_])_|_(?![^\W_]))")  # to escape in translated words (not d_model)
ENTITY = re.compile(r"&(?=#?\w+;)")
VOID = re.compile(r"<(?:!--|\?|!)|<(?:area|base|br|col|embed|hr|img|input|link|meta|source|track|wbr)\b|/>$", re.I)
OPEN_TAG = re.compile(r"<([A-Za-z][\w-]*)")
CLOSE_TAG = re.compile(r"</([A-Za-z][\w-]*)\s*>")


def translate(text: str, translate: Translate, *, lang: str | None, warn: Warn, where: str) -> str:
    lines = text.split("\n")
    ends = ["\r" if line.endswith("\r") else "" for line in lines]
    bodies = [line[:-1] if end else line for line, end in zip(lines, ends)]
    parser = _Parser()
    units = list(_units(parser, bodies, warn, where))
    todo = [unit for unit in units if unit.run.words]
    results = translate([unit.run.text for unit in todo]) if todo else []
    edits: list[tuple[Slot, str]] = []
    dropped: set[int] = set()
    for unit, result in zip(todo, results):
        if not result.text.strip():  # nothing came back: the source stays
            continue
        chunks = render(unit.run, result.text, result.alignment, escape_word)
        if result.alignment is not None and _shape(parser.inline(" ".join(chunks))) != unit.shape:
            # Markdown reads markup by its neighbours: `*` `*x*` `*` moved together would read `**x**` (strong).
            # The relative positions keep the source's order, hence its reading.
            chunks = render(unit.run, result.text, None, escape_word)
        placed, gone = _wrap(chunks, unit.slots, bodies)
        edits += placed
        dropped |= gone
    for (line, start, end), new in sorted(edits, key=lambda edit: (edit[0][0], -edit[0][1])):
        bodies[line] = bodies[line][:start] + new + bodies[line][end:]
    return "\n".join(body + end for i, (body, end) in enumerate(zip(bodies, ends)) if i not in dropped)


def escape_word(word: str) -> str:
    """A translated word as Markdown text: its markup characters backslash-escaped."""
    word = ENTITY.sub("&amp;", SPECIAL.sub(r"\\\1", word))
    return "\\" + word if word and set(word) == {"#"} else word  # a heading's closing sequence


def escape_line_start(line: str) -> str:
    """A line of translated text that would start a block (a list item, a heading, a quote, a setext underline)
    escaped so that it stays text."""
    if re.match(r"(?:[-+=]+|#{1,6}|>)(?:\s|$)", line) or line.startswith(">"):
        return "\\" + line
    number = re.match(r"\d{1,9}(?=[.)](?:\s|$))", line)
    return line[: number.end()] + "\\" + line[number.end() :] if number else line


@dataclass
class _Unit:
    """One text to translate: its run, and the source lines (their parts) it replaces."""

    slots: list[Slot]
    run: Run
    shape: tuple[Any, ...]  # its markup as a tree (nmt.documents.markdown._shape), to check the output by


# ---------------------------------------------------------------------------------------------
# Reading: blocks, their source lines, their inline runs


class _Parser:
    """markdown-it-py, recording where in a text each inline token it makes came from (markdown-it gives inline
    tokens no positions; atoms and link targets must be kept verbatim)."""

    def __init__(self) -> None:
        self.md = MarkdownIt("commonmark").enable(["table", "strikethrough"]).disable(["inline", "text_join"])
        self.ranges: dict[int, tuple[int, int, int]] = {}  # id(token) -> (start, end, label end for links)
        self.env: dict[str, Any] = {}  # the document's link reference definitions
        for name, rule in RECORDING.items():
            self.md.inline.ruler.at(name, self._recording(rule))

    def _recording(self, rule: Callable[[StateInline, bool], bool]) -> Callable[[StateInline, bool], bool]:
        def recorded(state: StateInline, silent: bool) -> bool:
            start, count = state.pos, len(state.tokens)
            found = rule(state, silent)
            if found and not silent:
                label = parseLinkLabel(state, start, True) if state.src[start] == "[" else -1
                for token in state.tokens[count:]:
                    if token.type in RECORDED and id(token) not in self.ranges:
                        self.ranges[id(token)] = (start, state.pos, label)
            return found

        return recorded

    def blocks(self, source: str) -> list[Token]:
        return self.md.parse(source, self.env)

    def inline(self, text: str) -> list[Token]:
        tokens: list[Token] = []
        self.ranges = {}  # ids of tokens gone may come back
        self.md.inline.parse(text, self.md, self.env, tokens)
        return tokens


def _units(parser: _Parser, bodies: list[str], warn: Warn, where: str) -> Iterator[_Unit]:
    source = list(bodies)
    for line in range(_front_matter(bodies)):  # kept as it is: the parser sees blank lines
        source[line] = ""
    tokens = parser.blocks("\n".join(source))
    cursors: dict[int, int] = {}  # a table row's line -> where its next cell is looked for
    for i, token in enumerate(tokens):
        if token.type != "inline" or not token.map or not token.content.strip():
            continue
        slots = _slots(token, tokens[i - 1], source, cursors)
        region = "\n".join(source[line][start:end] for line, start, end in slots or [])
        if not slots or (tokens[i - 1].type not in ("th_open", "td_open") and region != token.content):
            warn(f"{where}{token.map[0] + 1}: could not find this text in its lines; kept as it is")
            continue
        yield from _segments(parser, region, slots)


def _front_matter(lines: list[str]) -> int:
    """How many lines a YAML front matter block takes at the top (`---` ... `---` or `...`), or 0."""
    if not lines or lines[0].rstrip() != "---":
        return 0
    for i in range(1, len(lines)):
        if lines[i].rstrip() in ("---", "..."):
            return i + 1
    return 0


def _slots(token: Token, parent: Token, lines: list[str], cursors: dict[int, int]) -> list[Slot] | None:
    """Where an inline token's text stands in the source lines, or None if it cannot be found."""
    assert token.map is not None
    first = token.map[0]
    if parent.type in ("th_open", "td_open"):  # one cell of a table row: `\|` in the source is `|` here
        wanted = token.content.replace("|", "\\|")
        at = lines[first].find(wanted, cursors.get(first, 0))
        if at < 0:
            return None
        cursors[first] = at + len(wanted)
        return [(first, at, at + len(wanted))]
    if parent.type == "heading_open" and parent.markup.startswith("#"):  # `## Title ##`
        hashes = lines[first].find(parent.markup)
        at = lines[first].find(token.content, hashes + len(parent.markup))
        return [(first, at, at + len(token.content))] if hashes >= 0 and at >= 0 else None
    contents = token.content.split("\n")
    if len(contents) != token.map[1] - first:
        return None
    slots = []
    for line, content in zip(range(first, token.map[1]), contents):
        body = lines[line]
        base = len(body) - len(content) if body.endswith(content) else len(body.rstrip()) - len(content)
        if base < 0 or body[base : base + len(content)] != content:
            return None
        slots.append((line, base, base + len(content)))
    return slots


def _segments(parser: _Parser, region: str, slots: list[Slot]) -> Iterator[_Unit]:
    """The runs of a text, one per stretch between hard line breaks (each keeps its own lines)."""
    builder, start, first = Builder(), 0, 0
    children = parser.inline(region)
    skip_to_close = False
    for i, token in enumerate(children):
        if skip_to_close:  # inside an autolink, already kept whole as an atom
            skip_to_close = token.type != "link_close"
            continue
        if token.type == "hardbreak":
            at, after, _ = parser.ranges[id(token)]
            end = len(region[:at].rstrip(" ")) if region[at] == "\n" else at
            yield _Unit(_sub_slots(region, slots, start, end), builder.finish(), _shape(children[first:i]))
            builder, start, first = Builder(), after, i + 1
            continue
        skip_to_close = _feed(builder, token, region, parser.ranges)
    yield _Unit(_sub_slots(region, slots, start, len(region)), builder.finish(), _shape(children[first:]))


def _shape(tokens: list[Token]) -> tuple[Any, ...]:
    """Inline markup as a tree, its text and the order of siblings left out: what a translation must keep."""
    stack: list[list[Any]] = [[]]
    for token in tokens:
        if token.nesting == 1:
            stack.append([token.type, token.markup, token.attrGet("href")])
        elif token.nesting == -1 and len(stack) > 1:
            node = stack.pop()
            stack[-1].append((*node[:3], tuple(sorted(map(repr, node[3:])))))
        elif token.type not in ("text", "text_special", "softbreak"):
            stack[-1].append((token.type, token.content))
    while len(stack) > 1:
        node = stack.pop()
        stack[-1].append((*node[:3], tuple(sorted(map(repr, node[3:])))))
    return tuple(sorted(map(repr, stack[0])))


def _feed(builder: Builder, token: Token, region: str, ranges: dict[int, tuple[int, int, int]]) -> bool:
    """One inline token into the run; True when it opens an autolink (kept whole, up to its link_close)."""
    kind = token.type
    start, end, label = ranges.get(id(token), (0, 0, -1))
    verbatim = region[start:end].replace("\n", " ")
    if kind in ("text", "text_special"):
        builder.text(token.content)
    elif kind == "softbreak":
        builder.text("\n")
    elif kind in ("code_inline", "image"):
        builder.atom(verbatim)
    elif kind == "link_open" and token.markup == "autolink":
        builder.atom(verbatim)
        return True
    elif kind == "link_open":
        builder.open("[", "link")
    elif kind == "link_close":
        builder.close(region[label:end].replace("\n", " ") if label >= 0 else "]", "link", unwind=True)
    elif kind == "html_inline":
        _html(builder, token.content.replace("\n", " "))
    elif kind.endswith("_open"):
        builder.open(token.markup, kind[: -len("_open")])
    elif kind.endswith("_close") and not builder.close(token.markup, kind[: -len("_close")], unwind=True):
        builder.atom(token.markup, markup=True)
    return False


def _html(builder: Builder, tag: str) -> None:
    """Inline HTML: a matched pair of tags is a span, anything else (a comment, <br>, a lone tag) an atom."""
    opening, closing = OPEN_TAG.match(tag), CLOSE_TAG.fullmatch(tag)
    if opening and not VOID.search(tag):
        builder.open(tag, "<" + opening.group(1).lower())
    elif not (closing and builder.close(tag, "<" + closing.group(1).lower())):
        builder.atom(tag)


def _sub_slots(region: str, slots: list[Slot], start: int, end: int) -> list[Slot]:
    """The parts of the source lines that region[start:end] takes (the region is its slots joined by newlines)."""
    starts = [0]
    for _, first, last in slots[:-1]:
        starts.append(starts[-1] + last - first + 1)
    first_line = bisect.bisect_right(starts, start) - 1
    last_line = max(first_line, bisect.bisect_right(starts, end) - 1)
    out = []
    for i in range(first_line, last_line + 1):
        line, first, last = slots[i]
        lo, hi = max(start, starts[i]) - starts[i], min(end, starts[i] + last - first) - starts[i]
        out.append((line, first + lo, first + max(lo, hi)))
    return out


# ---------------------------------------------------------------------------------------------
# Writing: a translation wrapped over the lines its source took


def _wrap(chunks: list[str], slots: list[Slot], bodies: list[str]) -> tuple[list[tuple[Slot, str]], set[int]]:
    """Edits putting `chunks` on the slots' lines, about as long as the source's, and the lines left empty
    (dropped: the translation needed fewer). The first line keeps what comes before it (a list marker), the
    last what follows it (a hard break's markup)."""
    widths = [max(end - start, 1) for _, start, end in slots]
    total = sum(len(chunk) + 1 for chunk in chunks)
    lines: list[list[str]] = [[]]
    filled, budget = 0, total * widths[0] / sum(widths)
    for chunk in chunks:
        if lines[-1] and filled + (len(chunk) + 1) / 2 > budget and len(lines) < len(slots):  # past half of it
            budget += total * widths[len(lines)] / sum(widths)
            lines.append([])
        lines[-1].append(chunk)
        filled += len(chunk) + 1
    texts = [escape_line_start(" ".join(line)) for line in lines]
    edits = list(zip(slots, texts))
    if len(texts) < len(slots):  # the last line used takes the end of the last source line
        (line, start, _), text = edits[-1]
        last_line, _, last_end = slots[-1]
        edits[-1] = ((line, start, len(bodies[line])), text + bodies[last_line][last_end:])
    return edits, {line for line, _, _ in slots[len(texts) :]}
