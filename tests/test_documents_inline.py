"""Inline runs (nmt/documents/inline.py) carried to a translation (nmt/documents/carry.py): spans land around the
target words aligned to theirs, atoms after the word aligned to the one before them, and whatever the alignment,
every piece of markup comes out once, nested."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmt.documents.carry import render
from nmt.documents.inline import Builder, Run

pytestmark = pytest.mark.unit


def build(*parts: tuple[str, ...]) -> Run:
    builder = Builder()
    for kind, *args in parts:
        getattr(builder, kind)(*args)
    return builder.finish()


def reversed_translation(run: Run) -> tuple[str, str]:
    n = len(run.words)
    return " ".join(word.upper() for word in reversed(run.words)), " ".join(f"{i}-{n - 1 - i}" for i in range(n))


def test_plain_text_is_the_words_without_markup():
    run = build(("text", "Hello "), ("open", "<b>", "b"), ("text", "big\n world"), ("close", "</b>", "b"))
    assert run.text == "Hello big world"
    assert [(span.first, span.last) for span in run.spans] == [(1, 2)]


def test_a_span_follows_its_words_when_the_order_changes():
    run = build(("text", "a "), ("open", "<b>", "b"), ("text", "b"), ("close", "</b>", "b"), ("text", " c d"))
    target, alignment = reversed_translation(run)
    assert " ".join(render(run, target, alignment)) == "D C <b>B</b> A"


def test_nested_spans_stay_nested_and_around_their_words():
    run = build(
        ("text", "a "),
        ("open", "<b>", "b"),
        ("text", "b "),
        ("open", "<i>", "i"),
        ("text", "c"),
        ("close", "</i>", "i"),
        ("text", " d"),
        ("close", "</b>", "b"),
        ("text", " e"),
    )
    target, alignment = reversed_translation(run)
    assert " ".join(render(run, target, alignment)) == "E <b>D <i>C</i> B</b> A"


def test_an_atom_goes_after_the_word_aligned_to_the_one_before_it():
    run = build(("text", "run "), ("atom", "`nmt`"), ("text", " now please"))
    # run -> 2, now -> 1, please -> 0: the atom follows RUN wherever it went
    assert " ".join(render(run, "PLEASE NOW RUN", "0-2 1-1 2-0")) == "PLEASE NOW RUN `nmt`"
    assert " ".join(render(run, "RUN NOW PLEASE", "0-0 1-1 2-2")) == "RUN `nmt` NOW PLEASE"


def test_atoms_at_the_edges_stay_at_the_edges():
    run = build(("atom", "<img>"), ("text", " one two "), ("atom", "<br>"))
    target, alignment = reversed_translation(run)
    assert " ".join(render(run, target, alignment)) == "<img> TWO ONE <br>"


def test_without_alignment_markup_keeps_its_relative_position():
    run = build(("text", "one two "), ("open", "*"), ("text", "three four"), ("close", "*"))
    assert " ".join(render(run, "UN DEUX TROIS QUATRE CINQ SIX", None)) == "UN DEUX TROIS *QUATRE CINQ SIX*"


def test_crossing_alignments_fall_back_to_valid_nesting():
    run = build(("open", "<b>", "b"), ("text", "a b"), ("close", "</b>", "b"), ("text", " "))
    run2 = build(*_siblings())
    # both spans aligned over the same target words: the second cannot cross the first
    out = " ".join(render(run2, "W X Y Z", "0-0 1-3 2-1 3-2"))
    assert out.count("<b>") == out.count("</b>") == out.count("<i>") == out.count("</i>") == 1
    assert _nested(out, {"<b>": "</b>", "<i>": "</i>"})
    assert " ".join(render(run, "X Y", "0-1 1-0")) == "<b>X Y</b>"


def _siblings() -> list[tuple[str, ...]]:
    return [
        ("open", "<b>", "b"),
        ("text", "a b"),
        ("close", "</b>", "b"),
        ("text", " "),
        ("open", "<i>", "i"),
        ("text", "c d"),
        ("close", "</i>", "i"),
    ]


def test_punctuation_outside_a_span_stays_outside():
    run = build(("text", "see "), ("open", "[", "link"), ("text", "the docs"), ("close", "](u)", "link"), ("text", "."))
    assert " ".join(render(run, "VOIR LA DOC.", "0-0 1-1 2-2")) == "VOIR [LA DOC](u)."
    quoted = build(("text", '"'), ("open", "**"), ("text", "yes"), ("close", "**"), ("text", '"'))
    assert " ".join(render(quoted, '"OUI"', "0-0")) == '"**OUI**"'


def test_a_span_without_words_is_one_atom():
    run = build(("text", "a "), ("open", "<a href=x>", "a"), ("atom", "<img>"), ("close", "</a>", "a"), ("text", " b"))
    assert run.spans == () and [atom.text for atom in run.atoms] == ["<a href=x><img></a>"]
    assert " ".join(render(run, "A B", "0-0 1-1")) == "A <a href=x><img></a> B"


def test_markup_never_closed_or_never_opened_is_kept_where_it_stood():
    builder = Builder()
    builder.text("one ")
    builder.open("<b>", "b", "note")
    builder.text("two")
    assert not builder.close("</i>", "i")
    run = builder.finish()
    assert run.unclosed == ("note",) and [(span.open, span.close) for span in run.spans] == [("<b>", "")]
    assert " ".join(render(run, "ONE TWO", "0-0 1-1")) == "ONE <b>TWO"
    assert " ".join(render(run, "TWO ONE", "0-1 1-0")) == "<b>TWO ONE"


def test_a_bare_url_is_not_translated():
    run = build(("text", "see https://example.com/a?b=1, then"))
    assert run.text == "see , then"
    assert " ".join(render(run, "VOIR , ALORS", "0-0 1-1 2-2")) == "VOIR https://example.com/a?b=1, ALORS"


def test_escape_touches_only_translated_words():
    run = build(("text", "a "), ("atom", "`*`"), ("text", " b"))
    assert " ".join(render(run, "A* B", "0-0 1-1", lambda word: word.replace("*", "\\*"))) == "A\\* `*` B"


# ---------------------------------------------------------------------------------------------
# Whatever the run and the alignment: every piece of markup once, properly nested, every word in order


def _nested(text: str, pairs: dict[str, str]) -> bool:
    if not pairs:
        return True
    closing = {close: open_ for open_, close in pairs.items()}
    stack: list[str] = []
    for token in re.findall("|".join(re.escape(t) for t in [*pairs, *closing]), text):
        if token in pairs:
            stack.append(token)
        elif not stack or stack.pop() != closing[token]:
            return False
    return not stack


@st.composite
def runs(draw: st.DrawFn) -> tuple[list[tuple[str, ...]], list[str], list[str]]:
    """Builder calls with unique markup (<s0>..</s0>, [a0]), the spans' markup and the atoms."""
    calls: list[tuple[str, ...]] = []
    opened: list[int] = []
    spans, atoms = [], []
    for _ in range(draw(st.integers(1, 14))):
        choice = draw(st.sampled_from(["text", "text", "atom", "open", "close"]))
        if choice == "text":
            calls.append(("text", draw(st.sampled_from(["w ", " x", "y, ", "z.", "  ", "q\nr"]))))
        elif choice == "atom":
            atoms.append(f"[a{len(atoms)}]")
            calls.append(("atom", atoms[-1]))
        elif choice == "open":
            opened.append(len(spans))
            spans.append(f"<s{len(spans)}>")
            calls.append(("open", spans[-1], str(opened[-1])))
        elif opened:
            index = opened.pop()
            calls.append(("close", f"</s{index}>", str(index)))
    for index in reversed(opened):
        calls.append(("close", f"</s{index}>", str(index)))
    return calls, spans, atoms


@settings(max_examples=300, deadline=None)
@given(runs(), st.integers(0, 12), st.randoms(use_true_random=False), st.booleans())
def test_any_run_any_alignment_keeps_every_piece_nested(case, n_target, rng, aligned):
    calls, spans, atoms = case
    run = build(*calls)
    target = [f"t{i}" for i in range(n_target)]
    pairs = [(s, rng.randrange(max(n_target, 1))) for s in range(len(run.words)) for _ in range(rng.randrange(3))]
    alignment = " ".join(f"{s}-{t}" for s, t in pairs) if aligned and n_target else None
    out = " ".join(render(run, " ".join(target), alignment))
    for atom in atoms:
        assert out.count(atom) == 1, (out, calls)
    for index, markup in enumerate(spans):
        assert out.count(markup) == 1 and out.count(f"</s{index}>") == 1, (out, calls)
    assert _nested(out, {markup: f"</s{i}>" for i, markup in enumerate(spans)}), (out, calls)
    assert re.sub(r"</?s\d+>", "", re.sub(r"\[a\d+\]", " ", out)).split() == target, (out, calls)
