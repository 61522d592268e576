"""Documents through `nmt translate` (--input-format, or the file's extension) and the API's
`translate_document`, with the tiny trained model: the document comes back in its own format, its cue numbers
and timings as they were; the options that describe lines are refused in one line."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import one_error_line
from nmt_cli.main import app
from typer.testing import CliRunner

import nmt
from nmt.errors import ConfigError
from nmt.line_translator import LineTranslator

pytest.importorskip("webvtt", reason="webvtt-py is not installed (pip install -e '.[dev]')")

pytestmark = pytest.mark.integration

NMT = str(Path(sys.executable).with_name("nmt"))  # the console script pyproject.toml declares
FIXTURES = Path(__file__).parent / "fixtures" / "documents"
STORY = FIXTURES / "lighthouse.srt"
SCENE = FIXTURES / "harbour.vtt"
runner = CliRunner()


def kept(document: str) -> list[str]:
    """The lines a subtitle file keeps as they are: cue numbers, identifiers, timings, header, notes, blanks."""
    lines = document.split("\n")
    return [line for i, line in enumerate(lines) if "-->" in line or not line or "-->" in "".join(lines[i + 1 : i + 2])]


@pytest.mark.system
def test_an_srt_file_comes_back_as_srt_with_its_cues_by_extension_or_flag(tiny_model_dir, tmp_path):
    source = STORY.read_text(encoding="utf-8")
    by_extension = subprocess.run(
        [NMT, "translate", "-m", str(tiny_model_dir), "--threads", "1", str(STORY)], capture_output=True, text=True
    )
    assert by_extension.returncode == 0, by_extension.stderr
    out = by_extension.stdout
    assert kept(out) == kept(source) and len(kept(source)) == 300  # 100 numbers, 100 timings, 100 blank lines
    assert out != source and "-->" not in "".join(set(out.split("\n")) - set(source.split("\n")))
    copy = tmp_path / "story.txt"  # no extension to go by: the flag says it
    copy.write_text(source, encoding="utf-8")
    flagged = subprocess.run(
        [NMT, "translate", "-m", str(tiny_model_dir), "--threads", "1", "--input-format", "srt", "-o", "out.srt"],
        input=source,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert flagged.returncode == 0, flagged.stderr
    assert (tmp_path / "out.srt").read_text(encoding="utf-8") == out and flagged.stdout == ""


def test_input_format_text_reads_a_subtitle_file_line_by_line_as_before(tiny_model_dir):
    result = runner.invoke(
        app, ["translate", "-m", str(tiny_model_dir), "--threads", "1", "--input-format", "text", str(SCENE)]
    )
    assert result.exit_code == 0, result.output
    lines = SCENE.read_text(encoding="utf-8").split("\n")[:-1]
    assert result.stdout == "".join(f"{line}\n" for line in nmt.load(tiny_model_dir, threads=1).translate(lines))


def test_a_webvtt_file_keeps_its_blocks_and_a_malformed_one_is_warned_of(tiny_model_dir):
    result = runner.invoke(app, ["translate", "-m", str(tiny_model_dir), "--threads", "1", str(SCENE)])
    assert result.exit_code == 0, result.output
    assert kept(result.stdout) == kept(SCENE.read_text(encoding="utf-8"))
    assert result.stdout.startswith("WEBVTT - The harbour") and "STYLE\n::cue(.tomas) {" in result.stdout
    broken = "WEBVTT\n\n00:01.000 -> 00:02.000\nHello there.\nStray words.\n"
    result = runner.invoke(
        app, ["translate", "-m", str(tiny_model_dir), "--threads", "1", "--input-format", "vtt"], input=broken
    )
    assert result.exit_code == 0, result.output
    assert "warning: <stdin>:3: a broken cue timing line" in result.stderr
    assert result.stdout.split("\n")[:3] == ["WEBVTT", "", "00:01.000 -> 00:02.000"]


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--format", "jsonl"], ["--format jsonl", "its extension says srt"]),
        (["--beam", "2", "--nbest", "2"], ["--nbest 2"]),
        (["--scores"], ["--scores"]),
        (["--align"], ["--align"]),
        (["--input-format", "vtt", "--scores"], ["--input-format vtt"]),
        (["--input-format", "docx"], ["input format 'docx'", "markdown, html, srt, vtt"]),
    ],
)
def test_options_that_describe_lines_are_refused_for_a_document_in_one_line(flags, words, tmp_path):
    # no model is there: the refusal comes first
    result = runner.invoke(app, ["translate", "-m", str(tmp_path / "none"), *flags, str(STORY)])
    one_error_line(result, *words)


def test_without_webvtt_py_it_says_what_to_install_before_the_model_loads(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "webvtt", None)  # as if not installed: importing it fails
    result = runner.invoke(app, ["translate", "-m", str(tmp_path / "none"), str(STORY)])
    one_error_line(result, "SRT and WebVTT subtitles need webvtt-py: pip install 'nmt[subtitles]'")


def test_a_binary_subtitle_file_is_refused_as_a_text_file_is(tmp_path):
    packed = tmp_path / "film.srt"
    packed.write_bytes(gzip.compress(STORY.read_bytes()))
    one_error_line(
        runner.invoke(app, ["translate", "-m", str(tmp_path / "none"), str(packed)]), "film.srt", "not a text file"
    )


def test_the_api_translates_a_document_as_the_command_does(tiny_model_dir):
    translator = nmt.load(tiny_model_dir, threads=1)
    source = SCENE.read_text(encoding="utf-8")
    out = translator.translate_document(source, format="vtt")
    command = runner.invoke(app, ["translate", "-m", str(tiny_model_dir), "--threads", "1", str(SCENE)])
    assert out == command.stdout and kept(out) == kept(source)
    assert translator.translator.align is False  # the loaded translator is left as it was
    lines = ["How was your day?", "", "The cat sleeps."]
    assert translator.translate_document("\n".join(lines)) == "\n".join(translator.translate(lines))
    with pytest.raises(ConfigError, match="input format 'rtf'"):
        translator.translate_document("x", format="rtf")
    warnings: list[str] = []
    translator.translate_document("1\n00:00:01,000 -> x\nHi.\n", format="srt", warn=warnings.append, where="f.srt:")
    assert warnings == ["f.srt:2: a broken cue timing line; kept as it is, the cue's text translated"]


class Engine(LineTranslator):
    """An engine that translates nothing: what `translate_document` asks of it is all that is looked at."""

    def __init__(self, can_align: bool, align: bool = False) -> None:
        self.can_align, self.align = can_align, align

    def with_config(self, align=None, **changes):
        return Engine(self.can_align, bool(align))


@pytest.mark.unit
@pytest.mark.parametrize("fmt", ["text", "markdown", "html", "srt", "vtt"])
def test_documents_ask_for_alignments_where_the_engine_has_them_and_say_where_it_has_not(fmt):
    from nmt.api import Loaded

    notes: list[str] = []
    aligning = Loaded(Path("m"), Engine(can_align=True))
    chosen = aligning._for_document(fmt, notes.append)
    assert chosen.align is (fmt != "text") and aligning._for_document(fmt, notes.append) is chosen  # made once
    assert aligning.translator.align is False and notes == []
    blind = Loaded(Path("m"), Engine(can_align=False))
    assert blind._for_document(fmt, notes.append) is blind.translator
    assert notes == (
        [
            f"{fmt}: this engine (CTranslate2) gives no word alignment, so inline markup is placed by "
            "position; the PyTorch engine carries it along the words"
        ]
        if fmt in ("markdown", "html")
        else []
    )
