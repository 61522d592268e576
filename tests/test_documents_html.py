"""HTML documents (nmt/documents/html.py): the tag tree of the output is the input's (the same elements, nesting
and attributes, but for the people's ones, translated), script/style/code/pre untouched, entities outside the
translated text byte-identical, malformed input warned of by line and never lost."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from helpers import ROOT, FakeTranslate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmt.documents import translate_document
from nmt.documents.html import translate

pytestmark = pytest.mark.unit

PAGE = ROOT / "tests" / "fixtures" / "documents" / "page.html"
PEOPLE = {"alt", "title", "placeholder", "aria-label"}
RAW = {"script", "style", "code", "pre", "textarea"}
INLINE = {"a", "b", "i", "em", "strong", "span", "u"}  # what the pages nest inside a sentence


class _Tree(HTMLParser):
    """A page as its tags (attributes for people left out), the text of untouched elements, and its words."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.shape: list[tuple[Any, ...]] = []
        self.text: list[str] = []  # outside untouched elements (a tag that is not inline separates words)
        self.people: list[str] = []  # words of attributes for people
        self.raw = 0

    @property
    def words(self) -> list[str]:
        return "".join(self.text).split()

    def _tag(self, kind: str, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.text.append("" if tag in INLINE else " ")
        self.shape.append((kind, tag, [(k, v) for k, v in attrs if k not in PEOPLE]))
        self.people += [word for k, v in attrs if k in PEOPLE and v for word in v.split()]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag("start", tag, attrs)
        self.raw += tag in RAW

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag("startend", tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        self.shape.append(("end", tag))
        self.text.append("" if tag in INLINE else " ")
        self.raw -= tag in RAW and self.raw > 0

    def handle_data(self, data: str) -> None:
        if self.raw:
            self.shape.append(("raw", data))
        else:
            self.text.append(data)

    def handle_comment(self, data: str) -> None:
        self.shape.append(("comment", data))

    def handle_decl(self, decl: str) -> None:
        self.shape.append(("decl", decl))


def tree(text: str) -> _Tree:
    parsed = _Tree()
    parsed.feed(text)
    parsed.close()
    return parsed


def given_words(fake: FakeTranslate) -> list[str]:
    return [word.upper() for text in fake.texts for word in text.split()]


@pytest.mark.parametrize("align", [True, False], ids=["aligned", "unaligned"])
def test_the_page_keeps_its_tree(align):
    source = PAGE.read_text()
    fake = FakeTranslate(align=align)
    out = translate(source, fake, lang="en", warn=pytest.fail, where="page.html:")
    before, after = tree(source), tree(out)
    assert after.shape == before.shape
    assert after.words + after.people == given_words(fake)
    assert len(fake.batches) == 1
    for kept in (
        '<a href="https://example.com/trains?day=sat&amp;time=am" title="TRAIN TIMES">',
        "<code>nmt translate --input-format html page.html</code>",
        "<pre>\nnmt serve --port 8080\n  # then open http://localhost:8080\n</pre>",
        '    document.querySelector("h1").title = "<b>not translated</b>";\n',
        "<style>\n    p { line-height: 1.4; }\n    code { color: #a33; }\n  </style>",
        '<img src="images/market.jpg" alt="THE OLD MARKET IN THE MORNING">',
        '<input type="text" placeholder="YOUR NAME" name="name">',
        "<!-- the page people see -->",
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n  <meta charset="utf-8">\n  <title>WEEKEND PLANS &amp; IDEAS',
    ):
        assert kept in out
    assert '<li>VISIT THE <span class="place">OLD MARKET</span> AND THE <b>RIVER <i>MUSEUM</i></b>, WHICH' in out


def test_inline_tags_follow_their_words():
    out = translate("<p>Take the <b>early train</b> <a href='/t'>now</a>.</p>", FakeTranslate(reverse=True),
                    lang="en", warn=pytest.fail, where="")  # fmt: skip
    assert out == "<p><a href='/t'>NOW</a>. <b>TRAIN EARLY</b> THE TAKE</p>"


def test_translated_text_is_escaped_and_the_rest_is_not_touched():
    def odd(texts: list[str]) -> list[Any]:
        return FakeTranslate(align=False)(['a < b & "c"' for _ in texts])

    source = '<p title="x">Tom &amp; Jerry</p><code>&lt;x&gt;</code>'
    assert translate(source, odd, lang="en", warn=pytest.fail, where="") == (
        '<p title="A &lt; B &amp; &quot;C&quot;">A &lt; B &amp; "C"</p><code>&lt;x&gt;</code>'
    )
    quoted = translate("<img alt='it is' src=a.png>", odd, lang="en", warn=pytest.fail, where="")
    assert quoted == "<img alt='A &lt; B &amp; \"C\"' src=a.png>"


def test_whitespace_around_blocks_and_blank_text_stay():
    source = "<div>\n  <p>\n    one\n    two\n  </p>\n  <p> </p>\n</div>\n"
    fake = FakeTranslate()
    assert translate(source, fake, lang="en", warn=pytest.fail, where="") == (
        "<div>\n  <p>\n    ONE TWO\n  </p>\n  <p> </p>\n</div>\n"
    )
    assert fake.texts == ["one two"]


def test_malformed_markup_is_warned_of_by_line_and_kept():
    warnings: list[str] = []
    source = "<p>one <b>two\n<p>three </i> four</p>\n</div>\n<p>five <!-- never closed"
    out = translate(source, FakeTranslate(), lang="en", warn=warnings.append, where="x.html:")
    assert out == "<p>ONE <b>TWO\n<p>THREE </i> FOUR</p>\n</div>\n<p>FIVE <!-- never closed"
    lines = [warning.split(":")[:2] for warning in warnings]
    assert lines == [["x.html", "1"], ["x.html", "2"], ["x.html", "3"], ["x.html", "4"]], warnings
    assert "<b>" in warnings[0] and "</i>" in warnings[1] and "</div>" in warnings[2] and "<!--" in warnings[3]


def test_an_element_left_open_is_kept_to_the_end():
    warnings: list[str] = []
    out = translate("<p>a</p>\n<pre>b\nc", FakeTranslate(), lang="en", warn=warnings.append, where="")
    assert out == "<p>A</p>\n<pre>b\nc" and warnings == ["2: <pre> is never closed; kept as it is to the end"]


def test_nothing_to_translate_calls_nothing():
    fake = FakeTranslate()
    source = "<!DOCTYPE html>\n<script>x < 1</script><br><img src=a.png>\n"
    assert translate(source, fake, lang="en", warn=pytest.fail, where="") == source
    assert fake.batches == []


def test_through_the_format_dispatch():
    assert translate_document("<b>hi</b> there", "html", FakeTranslate(), lang="en") == "<b>HI</b> THERE"


# ---------------------------------------------------------------------------------------------
# Generated pages: no crash, no lost text, the same tree

WORD = st.sampled_from(["the", "cat", "sat", "&amp;", "&lt;", "caf&eacute;", "it&#39;s", "a.", "(so)", "1", "x;"])


@st.composite
def inline(draw: st.DrawFn, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["word", "word", "tag", "link", "br", "img", "code"]))
        words = " ".join(draw(st.lists(WORD, min_size=1, max_size=3)))
        if kind == "word" or depth >= 2:
            parts.append(words)
        elif kind == "tag":
            tag = draw(st.sampled_from(sorted(INLINE - {"a"})))
            parts.append(f"<{tag}>{draw(inline(depth + 1))}</{tag}>")
        elif kind == "link":
            parts.append(f'<a href="/x?a=1&amp;b=2" title="{words}">{draw(inline(depth + 1))}</a>')
        elif kind == "br":
            parts.append("<br>")
        elif kind == "img":
            parts.append(f'<img src="p.png" alt="{words}">')
        else:
            parts.append(f"<code>{words} &lt;b&gt;</code>")
    # parts glued into one word (`<b>a</b>b<i>c</i>`) each want the same target word: their tags stay nested
    # but may change order (the Markdown tests glue emphasis inside a word)
    return draw(st.sampled_from([" ", "\n  "])).join(parts)


@st.composite
def pages(draw: st.DrawFn) -> str:
    blocks = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["p", "h2", "ul", "table", "pre", "div"]))
        if kind == "ul":
            blocks.append("<ul>" + "".join(f"<li>{draw(inline())}</li>" for _ in range(2)) + "</ul>")
        elif kind == "table":
            blocks.append(f"<table><tr><td>{draw(inline())}</td><td>{draw(inline())}</td></tr></table>")
        elif kind == "pre":
            blocks.append("<pre>  keep &amp;\n  this</pre>")
        else:
            blocks.append(f"<{kind}>{draw(inline())}</{kind}>")
    return "<body>\n" + "\n".join(blocks) + "\n</body>\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pages(), st.booleans(), st.booleans())
def test_generated_pages_keep_their_tree_and_every_text(source, reverse, align):
    fake = FakeTranslate(reverse=reverse, align=align)
    out = translate(source, fake, lang="en", warn=pytest.fail, where="")
    before, after = tree(source), tree(out)
    assert len(fake.batches) <= 1
    assert sorted(after.words + after.people) == sorted(given_words(fake))
    if reverse:
        assert sorted(map(repr, after.shape)) == sorted(map(repr, before.shape))
    else:
        assert after.shape == before.shape
        assert after.words + after.people == given_words(fake)
