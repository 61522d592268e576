"""Subtitles as documents (nmt/documents/subtitles.py): cues keep their numbers, identifiers, timings and
settings byte for byte; a sentence over several cues is translated once and shared back over them; malformed
files are translated with warnings, nothing lost. The translator is a fake that records what it is given."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmt.documents import translate_document
from nmt.line_translator import Translation

pytest.importorskip("webvtt", reason="webvtt-py is not installed (pip install -e '.[dev]')")
webvtt = pytest.importorskip("webvtt")

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parent / "fixtures" / "documents"
STORY = (FIXTURES / "lighthouse.srt").read_text(encoding="utf-8")
SCENE = (FIXTURES / "harbour.vtt").read_text(encoding="utf-8")


class Fake:
    """A translator that records each call's texts and answers with `answer(text)` (and its alignment)."""

    def __init__(self, answer: Callable[[str], tuple[str, str | None]] = lambda text: (text.upper(), None)) -> None:
        self.answer, self.calls = answer, []

    def __call__(self, texts: list[str]) -> list[Translation]:
        self.calls.append(list(texts))
        found = [self.answer(text) for text in texts]
        return [Translation(text, 0.0, [(text, 0.0, 0.0)], alignment=alignment) for text, alignment in found]

    @property
    def texts(self) -> list[str]:
        return [text for call in self.calls for text in call]


def run(document: str, fmt: str, fake: Fake | None = None) -> tuple[str, list[str], Fake]:
    warnings: list[str] = []
    fake = fake or Fake()
    out = translate_document(document, fmt, fake, lang="en", warn=warnings.append, where="doc:")
    return out, warnings, fake


def timing_lines(document: str) -> list[str]:
    return [line for line in document.split("\n") if "-->" in line]


def cues(document: str) -> list[tuple[str, str]]:
    """The cues' timings as webvtt-py reads them (a reader other than ours)."""
    return [(c.start, c.end) for c in webvtt.from_buffer(__import__("io").StringIO(document), format="srt")]


def text_lines(document: str) -> list[str]:
    """The text lines of a well-formed SRT file (not its numbers, timings or blank lines)."""
    return [line for block in document.split("\n\n") for line in block.split("\n")[2:] if line]


def test_a_100_cue_story_keeps_every_number_and_timing_and_each_cue_its_own_words() -> None:
    out, warnings, fake = run(STORY, "srt")
    assert warnings == [] and len(fake.calls) == 1  # one batch for the whole file
    assert out.count("\n") == STORY.count("\n")
    assert timing_lines(out) == timing_lines(STORY) and len(timing_lines(STORY)) == 100
    numbers = [block.split("\n")[0] for block in out.split("\n\n")]
    assert numbers == [str(n) for n in range(1, 101)]
    assert cues(out) == cues(STORY)
    # a translation with the source's words, shared by characters, gives every line its own words back
    assert text_lines(out) == [line.upper() for line in text_lines(STORY)]


def test_a_sentence_over_several_cues_is_translated_once() -> None:
    _, _, fake = run(STORY, "srt")
    sentence = (
        "Each evening she climbed the ninety steps to light the lamp, counting them aloud as her grandfather "
        "had taught her."
    )
    assert sum(sentence in cue for cue in STORY.split("\n\n")) == 0  # it runs over cues 4 to 7
    assert fake.texts.count(sentence) == 1
    assert all(re.search(r"[.!?]$", text) for text in fake.texts)  # no text stops mid-sentence at a cue's end
    # every word of the file is sent once, none twice: the dialogue dashes stay in place, not translated
    sent = Counter(word for text in fake.texts for word in text.split())
    assert sent == Counter(word for line in text_lines(STORY) for word in line.split() if word != "-")


def test_the_alignment_decides_which_cue_gets_which_words() -> None:
    """Each source word becomes as many copies as its length: no proportion of characters says where the
    cue boundary falls; the alignment does."""

    def copies(text: str) -> tuple[str, str | None]:
        words, pairs = [], []
        for i, word in enumerate(text.split()):
            for _ in range(len(word) ** 2):
                pairs.append(f"{i}-{len(words)}")
                words.append(word.upper())
        return " ".join(words), " ".join(pairs)

    document = "1\n00:00:01,000 --> 00:00:02,000\nI\n\n2\n00:00:02,000 --> 00:00:03,000\nwonder whatever happened.\n"
    aligned, _, _ = run(document, "srt", Fake(copies))
    assert text_lines(aligned) == ["I", " ".join(["WONDER"] * 36 + ["WHATEVER"] * 64 + ["HAPPENED."] * 81)]
    unaligned, _, _ = run(document, "srt", Fake(lambda text: (copies(text)[0], None)))
    assert text_lines(unaligned) != text_lines(aligned)  # by characters the first cue would get more


def test_a_short_translation_leaves_no_cue_empty_where_it_can() -> None:
    document = (
        "1\n00:00:01,000 --> 00:00:02,000\nThe ferry came in\n\n2\n00:00:02,000 --> 00:00:03,000\nat dawn,\n\n"
        "3\n00:00:03,000 --> 00:00:04,000\nloaded with flour.\n"
    )
    out, _, _ = run(document, "srt", Fake(lambda text: ("Le bac arrivait.", None)))
    assert text_lines(out) == ["Le", "bac", "arrivait."]
    out, _, _ = run(document, "srt", Fake(lambda text: ("Bac.", None)))  # fewer words than cues: cues stay
    assert out == document.replace("The ferry came in\n", "").replace("at dawn,", "Bac.").replace(
        "loaded with flour.\n", ""
    )


def test_fewer_words_than_lines_still_give_every_cue_a_word_whatever_the_alignment_says() -> None:
    """Three cues of two lines, a translation of four words, all aligned to the last source word."""
    document = "".join(
        f"{n}\n00:00:0{n},000 --> 00:00:0{n},900\n{first}\n{second}\n\n"
        for n, (first, second) in enumerate(
            [("When the wind", "fell at last"), ("the sea turned", "as flat"), ("as a", "table.")], start=1
        )
    )
    last = len(" ".join(text_lines(document)).split()) - 1
    out, _, _ = run(document, "srt", Fake(lambda text: ("La mer était plate.", f"{last}-0 {last}-1 {last}-2 {last}-3")))
    cue_texts = [" ".join(block.split("\n")[2:]) for block in out.split("\n\n") if block]
    assert cue_texts == ["La", "mer", "était plate."]
    assert timing_lines(out) == timing_lines(document)


def test_a_webvtt_file_keeps_its_header_notes_style_identifiers_and_settings() -> None:
    out, warnings, fake = run(SCENE, "vtt")
    assert warnings == [] and len(fake.calls) == 1
    before, after = SCENE.split("\n"), out.split("\n")
    assert len(before) == len(after)
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    assert all(before[i] and "-->" not in before[i] and "NOTE" not in before[i] for i in changed)
    assert before[: changed[0]] == after[: changed[0]]  # header, NOTE and STYLE blocks, the first identifier
    assert "<v Mara>DID YOU BRING THE APPLES?" in after and "<c.tomas>A WHOLE CRATE OF THEM.</c>" in after
    assert "- AND A LETTER FOR YOU." in after  # a speaker's dash stays, and starts its own sentence
    assert "The ferry came in at dawn, loaded with flour and coffee." in fake.texts  # over two cues
    assert after[-3:] == ["SHE READ IT TWICE", "AND SMILED.", ""]  # a two-line cue keeps its two lines


def test_speakers_dashes_stay_in_place_and_are_not_translated() -> None:
    document = "1\n00:00:01,000 --> 00:00:02,000\n- Who are you? - Tomas.\n-Where from?\n"
    out, _, fake = run(document, "srt")
    assert fake.texts == ["Who are you?", "Tomas.", "Where from?"]
    assert out == "1\n00:00:01,000 --> 00:00:02,000\n- WHO ARE YOU? - TOMAS.\n-WHERE FROM?\n"


def test_a_cue_whose_identifier_starts_like_a_note_is_still_a_cue() -> None:
    out, warnings, fake = run("WEBVTT\n\nNOTES-1\n00:01.000 --> 00:02.000\nHello.\n\nNOTE a comment\n", "vtt")
    assert out == "WEBVTT\n\nNOTES-1\n00:01.000 --> 00:02.000\nHELLO.\n\nNOTE a comment\n"
    assert fake.texts == ["Hello."] and warnings == []


def test_line_ends_and_byte_order_mark_are_kept() -> None:
    document = "\ufeff1\r\n00:00:01,000 --> 00:00:02,000\r\nHello there.\r\n\r\n"
    out, _, _ = run(document, "srt")
    assert out == "\ufeff1\r\n00:00:01,000 --> 00:00:02,000\r\nHELLO THERE.\r\n\r\n"


def test_malformed_input_is_translated_with_warnings_naming_the_lines_and_nothing_lost() -> None:
    document = (
        "1\n00:00:01,000 --> 00:00:02,000\nA broken file.\n"  # no blank line before the next cue
        "2\n00:00:02,000 --> 00:00:03,000\nIts second cue.\n\n"
        "3\n00:00:03,000 -> 00:0x:04\nA broken timing.\n\n"
        "00:00:04,000 --> 00:00:05,000\nNo cue number.\n\n"
        "Stray words outside any cue.\n\n"
        "7\n\n"
        "x\n00:00:06,000 --> 00:00:07,000\nA bad number.\n"
    )
    out, warnings, fake = run(document, "srt")
    assert [w.split(":")[1] for w in warnings] == ["4", "9", "12", "15", "17", "19"], warnings
    for warning in warnings:
        assert warning.startswith("doc:") and len(warning.splitlines()) == 1
    sent = " ".join(fake.texts)
    for words in ("A broken file.", "Its second cue.", "A broken timing.", "No cue number.", "Stray words", "A bad"):
        assert words in sent and words.upper() in out
    for kept in ("3", "00:00:03,000 -> 00:0x:04", "7", "x", *timing_lines(document)):
        assert kept in out.split("\n")


def test_empty_and_text_free_documents() -> None:
    assert run("", "srt")[0] == ""
    out, _, fake = run("WEBVTT\n\nNOTE nothing to say\n", "vtt")
    assert out == "WEBVTT\n\nNOTE nothing to say\n" and fake.texts == []


# ---------------------------------------------------------------------------------------------
# Property tests: generated files

WORDS = st.sampled_from(["the", "boat", "Mara", "sailed", "home", "late,", "slowly.", "Why?", "yes!", "3", "l'eau"])
LINE = st.lists(WORDS, min_size=1, max_size=6).map(" ".join)
CUE = st.tuples(st.lists(LINE, min_size=1, max_size=3), st.integers(0, 10**7), st.integers(1, 10**5), st.booleans())


def stamp(ms: int, comma: bool) -> str:
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{',' if comma else '.'}{ms:03d}"


def generated(cue_list: list[tuple[list[str], int, int, bool]], vtt: bool) -> str:
    blocks = ["WEBVTT"] if vtt else []
    for n, (lines, start, length, dash) in enumerate(cue_list, start=1):
        head = f"cue-{n}" if vtt else str(n)
        text = [f"- {line}" if dash else line for line in lines]
        timing = f"{stamp(start, not vtt)} --> {stamp(start + length, not vtt)}"
        blocks.append("\n".join([head, timing, *text]))
    return "\n\n".join(blocks) + "\n"


def identity(text: str) -> tuple[str, str | None]:
    return text, None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cue_list=st.lists(CUE, min_size=1, max_size=12), vtt=st.booleans())
def test_generated_files_keep_every_cue_and_timing_and_every_word(cue_list, vtt) -> None:
    document = generated(cue_list, vtt)
    out, warnings, fake = run(document, "vtt" if vtt else "srt", Fake(identity))
    assert warnings == [] and len(fake.calls) == 1
    assert timing_lines(out) == timing_lines(document)
    heads = [block.split("\n")[0] for block in out.split("\n\n")]
    assert heads == [block.split("\n")[0] for block in document.split("\n\n")]  # numbers, identifiers, header
    assert Counter(out.split()) == Counter(document.split())  # every word kept, none doubled
    for before, after in zip(document.split("\n\n"), out.split("\n\n")):
        assert after.count("\n") <= before.count("\n") and after.split("\n")[1:2] == before.split("\n")[1:2]


# any characters but tags (taken out of a line's text on purpose) and lone surrogates (text decoded from a file or
# a request never holds one)
@settings(max_examples=150, deadline=None)
@given(
    document=st.text(alphabet=st.characters(exclude_characters="<>{}", exclude_categories=("Cs",)), max_size=300),
    vtt=st.booleans(),
)
def test_any_text_is_read_without_a_crash_and_without_losing_a_word(document, vtt) -> None:
    document = ("WEBVTT\n" if vtt else "") + document
    warnings: list[str] = []
    out = translate_document(document, "srt", Fake(identity), lang="en", warn=warnings.append, where="doc:")
    assert Counter(out.split()) == Counter(document.split())
    assert all(len(warning.splitlines()) == 1 for warning in warnings)
