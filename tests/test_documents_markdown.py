"""Markdown documents (nmt/documents/markdown.py): the parsed tree of the output has the input's node types,
nesting and non-text content (code, URLs, link targets, HTML); code blocks and URLs are byte-identical; every
text sent to the model comes back; one batch, one-line texts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, FakeTranslate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from nmt.documents import translate_document
from nmt.documents.markdown import translate

pytestmark = pytest.mark.unit

LETTER = ROOT / "tests" / "fixtures" / "documents" / "letter.md"
KEPT = ("code_inline", "fence", "code_block", "html_block", "html_inline", "image")  # their content is kept


def parse(text: str) -> list[Any]:
    """markdown-it-py's tokens, front matter left out (markdown-it-py does not know it)."""
    if text.startswith("---\n"):
        text = text[text.index("\n---\n", 3) + 5 :]
    return MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(text)


def shape(text: str) -> list[tuple[Any, ...]]:
    """The tree without its words: node types, tags and nesting, with the content of what must stay verbatim and
    every attribute (link targets and titles, image sources). A stretch of text (soft breaks too) is one 'text'."""
    out: list[tuple[Any, ...]] = []

    def walk(tokens: list[Any]) -> None:
        for token in tokens:
            if token.type == "inline":
                walk(token.children or [])
                continue
            if token.type in ("text", "text_special", "softbreak"):
                if out and out[-1] == ("text",):
                    continue
                out.append(("text",))
                continue
            entry: tuple[Any, ...] = (token.type, token.tag, token.nesting, token.markup, sorted(token.attrs.items()))
            out.append(entry + ((token.content, token.info) if token.type in KEPT else ()))

    walk(parse(text))
    return out


def words(text: str) -> list[str]:
    """The words of the document's translatable text, in order (code, images and autolinks left out)."""
    out: list[str] = []

    def walk(tokens: list[Any]) -> None:
        autolink = False
        for token in tokens:
            if token.type == "inline":
                walk(token.children or [])
            elif token.type == "link_open":
                autolink = token.markup == "autolink"
            elif token.type == "link_close":
                autolink = False
            elif token.type in ("text", "text_special") and not autolink:
                out.append(token.content)
            elif token.type in ("softbreak", "hardbreak", "code_inline", "image", "html_inline"):
                out.append(" ")  # between words

    for token in parse(text):
        if token.type == "inline":
            walk(token.children or [])
            out.append(" ")
    return "".join(out).split()


def fenced(text: str) -> list[str]:
    return [token.content for token in parse(text) if token.type in ("fence", "code_block", "html_block")]


@pytest.mark.parametrize("align", [True, False], ids=["aligned", "unaligned"])
def test_the_letter_keeps_its_tree_and_its_code(align):
    source = LETTER.read_text()
    fake = FakeTranslate(align=align)
    out = translate(source, fake, lang="en", warn=pytest.fail, where="letter.md:")
    assert shape(out) == shape(source)
    assert fenced(out) == fenced(source)
    assert words(out) == [word.upper() for text in fake.texts for word in text.split()]
    assert out.startswith("---\ntitle: Weekend plans\ndate: 2026-12-05\n---\n")
    for kept in ("https://example.com/trains?day=sat&time=am", "`nmt serve`", "<https://museum.example.org>"):
        assert out.count(kept) == source.count(kept) == 1
    assert "# WEEKEND PLANS\n" in out and "> CHILDREN UNDER TWELVE GO IN FOR FREE." in out


def test_one_batch_of_one_line_texts_without_blank_ones():
    fake = FakeTranslate()
    translate(LETTER.read_text(), fake, lang="en", warn=pytest.fail, where="")
    assert len(fake.batches) == 1
    assert "I hope your week went well. Here is what I have in mind for Saturday and Sunday;" in fake.texts[2]
    assert all("\n" not in text and text.strip() for text in fake.texts)  # (FakeTranslate refuses them too)


def test_spans_follow_their_words_when_the_order_changes():
    out = translate("Take the **early train** to [the town](http://t.example).\n", FakeTranslate(reverse=True),
                    lang="en", warn=pytest.fail, where="")  # fmt: skip
    assert out == "[TOWN. THE](http://t.example) TO **TRAIN EARLY** THE TAKE\n"
    assert shape(out) == [
        ("paragraph_open", "p", 1, "", []),
        ("link_open", "a", 1, "", [("href", "http://t.example")]),
        ("text",),
        ("link_close", "a", -1, "", []),
        ("text",),
        ("strong_open", "strong", 1, "**", []),
        ("text",),
        ("strong_close", "strong", -1, "**", []),
        ("text",),
        ("paragraph_close", "p", -1, "", []),
    ]


def test_container_prefixes_and_line_breaks_stay():
    source = "> - one two\n>   three four  \n>   five\n\n    code\n"
    out = translate(source, FakeTranslate(), lang="en", warn=pytest.fail, where="")
    assert out == "> - ONE TWO\n>   THREE FOUR  \n>   FIVE\n\n    code\n"


def test_a_shorter_translation_takes_fewer_lines_and_keeps_the_rest():
    def shorter(texts: list[str]) -> list[Any]:
        return FakeTranslate(align=False)([text.split()[0] for text in texts])

    source = "- first line of an item\n  second line of it\n  third\n- next\n\nafter\n"
    assert translate(source, shorter, lang="en", warn=pytest.fail, where="") == "- FIRST\n- NEXT\n\nAFTER\n"


def test_translated_words_never_become_markup():
    def markup(texts: list[str]) -> list[Any]:
        return FakeTranslate()(["# 1. *not* [a](link) `code` | - <b> &amp;" for _ in texts])

    source = "| a |\n|---|\n| b |\n\nsome text\nover lines\n"
    out = translate(source, markup, lang="en", warn=pytest.fail, where="")
    assert shape(out) == shape(source)
    assert words(out) == "# 1. *NOT* [A](LINK) `CODE` | - <B> &AMP;".split() * 3


def test_hard_breaks_and_setext_headings_keep_their_markup():
    source = "Title\n=====\n\nline one\\\nline two\n"
    assert translate(source, FakeTranslate(), lang="en", warn=pytest.fail, where="") == (
        "TITLE\n=====\n\nLINE ONE\\\nLINE TWO\n"
    )


def test_windows_line_ends_are_kept():
    source = "# Hello\r\n\r\nsome *text*\r\n"
    assert translate(source, FakeTranslate(), lang="en", warn=pytest.fail, where="") == (
        "# HELLO\r\n\r\nSOME *TEXT*\r\n"
    )


def test_nothing_to_translate_calls_nothing():
    fake = FakeTranslate()
    source = "```\ncode\n```\n\n<div>x</div>\n\n![img](a.png)\n"
    assert translate(source, fake, lang="en", warn=pytest.fail, where="") == source
    assert fake.batches == []


def test_through_the_format_dispatch():
    assert translate_document("*hi* there\n", "markdown", FakeTranslate(), lang="en") == "*HI* THERE\n"


def test_the_readme_keeps_its_tree_and_its_code():
    source = (ROOT / "README.md").read_text()
    fake = FakeTranslate()
    out = translate(source, fake, lang="en", warn=pytest.fail, where="README.md:")
    assert shape(out) == shape(source)
    assert fenced(out) == fenced(source)
    assert words(out) == [word.upper() for text in fake.texts for word in text.split()]
    assert len(fake.batches) == 1


# ---------------------------------------------------------------------------------------------
# Generated documents: no crash, no lost text, the same tree

WORD = st.sampled_from(
    ["the", "cat", "sat", "on", "a", "mat", "it's", "(so)", "big!", "x_y", "1.", "#", "-", "5", "a_b", "[x]", "&", "~"]
)


@st.composite
def phrase(draw: st.DrawFn, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["word", "word", "word", "em", "strong", "link", "code", "image", "html"]))
        text = " ".join(draw(st.lists(WORD, min_size=1, max_size=3)))
        if kind == "word":
            parts.append(text)
        elif kind in ("em", "strong") and depth < 2:
            # words at both ends: `****a** b**` reads by its neighbours' punctuation (CommonMark's rule of 3),
            # which a translation changes; nobody writes it
            mark = "*" if kind == "em" else "**"
            parts.append(f"{mark}{draw(WORD)} {draw(phrase(depth + 1))} {draw(WORD)}{mark}")
        elif kind == "link" and depth < 2:
            parts.append(f"[{text}](https://example.com/{draw(st.integers(0, 9))})")
        elif kind == "code":
            parts.append(f"`{text}`")
        elif kind == "html":
            parts.append(draw(st.sampled_from([f"<b>{text}</b>", "<br>", f'<a href="x">{text}</a>', "<!-- c -->"])))
        else:
            parts.append(f"![{text}](i.png)")
    return " ".join(parts)


@st.composite
def documents(draw: st.DrawFn) -> str:
    blocks = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["paragraph", "heading", "list", "quote", "code", "table"]))
        if kind == "paragraph":
            breaks = st.sampled_from(["\n", "\n", "  \n", "\\\n"])
            lines = [draw(phrase()) for _ in range(draw(st.integers(1, 3)))]
            blocks.append(lines[0] + "".join(draw(breaks) + line for line in lines[1:]))
        elif kind == "heading":
            blocks.append("#" * draw(st.integers(1, 3)) + " " + draw(phrase()))
        elif kind == "list":
            blocks.append("\n".join(f"- {draw(phrase())}\n  {draw(phrase())}" for _ in range(draw(st.integers(1, 3)))))
        elif kind == "quote":
            blocks.append("> " + draw(phrase()) + "\n> " + draw(phrase()))
        elif kind == "code":
            blocks.append("```\n" + draw(phrase()) + "\n```")
        else:
            blocks.append(f"| {draw(phrase())} | b |\n|---|---|\n| {draw(phrase())} | c |")
    return "\n\n".join(blocks) + "\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), st.booleans(), st.booleans())
def test_generated_documents_keep_their_tree_and_every_text(source, reverse, align):
    fake = FakeTranslate(reverse=reverse, align=align)
    out = translate(source, fake, lang="en", warn=pytest.fail, where="")
    assert len(fake.batches) <= 1
    assert fenced(out) == fenced(source)
    given_words = [word.upper() for text in fake.texts for word in text.split()]
    # Where stretches of text fall between the nodes may change (markup inside a word, `a*b c*d`, wraps whole
    # words; reversed words put a span's neighbours on its other side); the nodes may not.
    nodes = [repr(entry) for entry in shape(source) if entry != ("text",)]
    out_nodes = [repr(entry) for entry in shape(out) if entry != ("text",)]
    if reverse:
        assert sorted(words(out)) == sorted(given_words)
        assert sorted(out_nodes) == sorted(nodes)
    else:
        assert words(out) == given_words
        assert out_nodes == nodes


def test_words_helper_sees_links_but_not_code():
    assert words("a [b](u) `c` ![d](e) <http://f>\n") == ["a", "b"]


def test_fixture_is_the_letter():
    assert Path(LETTER).exists() and re.search(r"^# Weekend plans$", LETTER.read_text(), re.M)
