"""The test documents through a real (tiny) model with word alignments from its attention: whatever it writes,
the documents keep their markup, code and links."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from helpers import ROOT

from nmt.config import DecodeConfig
from nmt.documents import translate_document
from nmt.translate import Translator

pytestmark = pytest.mark.integration

DOCUMENTS = ROOT / "tests" / "fixtures" / "documents"


@pytest.fixture(scope="module")
def aligning(tiny_model_dir):
    return Translator.load(tiny_model_dir, DecodeConfig(beam_size=2), threads=1, align=True)


def tags(text: str) -> list[str]:
    """Every element as the path of elements down to it, with its attributes but the ones for people: the tree,
    but for the order of siblings (inline tags follow their words, which the model may reorder)."""
    found: list[str] = []
    path: list[str] = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag, attrs):
            kept = [(k, v) for k, v in attrs if k not in ("alt", "title", "placeholder")]
            found.append(" > ".join([*path, f"{tag}{kept}"]))
            if tag not in ("br", "img", "input", "meta"):
                path.append(tag)

        def handle_endtag(self, tag):
            if tag in path:
                del path[len(path) - 1 - path[::-1].index(tag) :]

    parser = Tags()
    parser.feed(text)
    parser.close()
    return sorted(found)


def test_the_html_page_keeps_every_tag(aligning):
    source = (DOCUMENTS / "page.html").read_text()
    warnings: list[str] = []
    out = translate_document(source, "html", aligning.translate_batch, lang="en", warn=warnings.append)
    assert tags(out) == tags(source) and warnings == []
    for kept in re.findall(r"<(?:pre|code|script|style)>.*?</(?:pre|code|script|style)>", source, re.S):
        assert kept in out


def test_the_markdown_letter_keeps_its_code_and_links(aligning):
    source = (DOCUMENTS / "letter.md").read_text()
    out = translate_document(source, "markdown", aligning.translate_batch, lang="en")
    kept_verbatim = re.findall(r"```.*?```", source, re.S) + re.findall(
        r"`[^`\n]+`|\]\([^)]*\)|<https?://[^>]+>", source
    )
    for kept in kept_verbatim + ["    indented code stays as it is\n", '<div class="note">']:
        assert out.count(kept) == source.count(kept), kept
    assert out.startswith("---\ntitle: Weekend plans\ndate: 2026-12-05\n---\n")
    assert len(out.splitlines()) <= len(source.splitlines())
