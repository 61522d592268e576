"""The Python API: `nmt.load(MODEL, ...)` translates as `nmt translate` does."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest
from nmt_cli.main import app
from typer.testing import CliRunner

import nmt
from nmt.errors import ConfigError, DataError

pytestmark = pytest.mark.integration

LINES = ["How was your day?", "", "The cat sleeps on the red sofa.", "Where is the station, please?"]


def test_load_translates_line_for_line_as_the_command_does(tiny_model_dir):
    translator = nmt.load(tiny_model_dir, beam_size=4, threads=1)
    texts = translator.translate(LINES)
    command = CliRunner().invoke(
        app, ["translate", "-m", str(tiny_model_dir), "--beam", "4", "--threads", "1"], input="\n".join(LINES) + "\n"
    )
    assert command.exit_code == 0, command.output
    assert texts == command.stdout.split("\n")[:-1] and texts[1] == ""
    assert translator.translate(LINES[0]) == texts[:1]  # a string is one line


def test_results_carry_nbest_scores_and_alignment(tiny_model_dir):
    translator = nmt.load(tiny_model_dir, beam_size=4, nbest=2, threads=1)
    [result] = translator.translate([LINES[0]], results=True)
    assert len(result.nbest) == 2 and result.nbest[0][0] == result.text and result.nbest[0][1] == result.score
    [aligned] = nmt.load(tiny_model_dir, beam_size=2, align=True, threads=1).translate([LINES[0]], results=True)
    assert aligned.alignment and all("-" in pair for pair in aligned.alignment.split())
    assert nmt.load(tiny_model_dir, threads=1).info["kind"] == "model"


def test_sentences_of_a_line_are_translated_each_unless_split_none(tiny_model_dir, tmp_path):
    paragraph = "Hello! How was your day? I hope the meeting went well."
    [split] = nmt.load(tiny_model_dir, beam_size=2, threads=1, align=True).translate(paragraph, results=True)
    assert [s.source for s in split.sentences] == ["Hello!", "How was your day?", "I hope the meeting went well."]
    assert split.text == " ".join(s.text for s in split.sentences)
    assert split.nbest[0][2] == pytest.approx(sum(s.log_prob for s in split.sentences))
    # the alignment numbers the words of the whole line on both sides
    pairs = [tuple(map(int, pair.split("-"))) for pair in (split.alignment or "").split()]
    assert pairs and all(i < len(paragraph.split()) and j < len(split.text.split()) for i, j in pairs)
    assert max(i for i, _ in pairs) >= len("Hello! How was your day?".split())  # the third sentence's words too
    whole = nmt.load(tiny_model_dir, beam_size=2, threads=1, split="none")
    [one] = whole.translate(paragraph, results=True)
    assert len(one.sentences) == 1 and one.sentences[0].source == paragraph
    (tmp_path / "p.en").write_text(f"{paragraph}\n", encoding="utf-8")
    assert whole.translate_file(tmp_path / "p.en") == [one.text]
    with pytest.raises(ConfigError, match="split must be 'sentence' or 'none', not 'words'"):
        nmt.load(tiny_model_dir, split="words")


def test_bad_options_and_input_are_config_errors(tiny_model_dir):
    with pytest.raises(ConfigError, match="nmt.load: unknown option"):
        nmt.load(tiny_model_dir, beam_width=3)
    with pytest.raises(ConfigError, match="nbest"):
        nmt.load(tiny_model_dir, beam_size=2, nbest=3)


@pytest.mark.parametrize(
    "options, said",
    [
        (dict(beam=3, beam_size=2), "unknown option beam; did you mean beam_size?"),  # not silently one of them
        (dict(beem=5), "unknown option beem; did you mean beam_size?"),  # close to the flag's word, --beam
        (dict(lenpen=0.6), "unknown option lenpen; did you mean length_penalty?"),
        (dict(nbset=2), "unknown option nbset; did you mean nbest?"),
        (dict(zzz=1), "unknown option zzz; known: batch_tokens, beam_size, "),
    ],
)
def test_load_takes_one_name_per_option_and_suggests_it(tiny_model_dir, options, said):
    with pytest.raises(ConfigError) as raised:
        nmt.load(tiny_model_dir, **options)
    assert str(raised.value).startswith(f"nmt.load: {said}")
    with pytest.raises(ConfigError, match="engine 'onnx'"):
        nmt.load(tiny_model_dir, engine="onnx")
    with pytest.raises(ConfigError, match="newline"):
        nmt.load(tiny_model_dir, threads=1).translate(["two\nlines"])


def test_import_nmt_stays_light():
    code = "import sys, nmt; assert 'torch' not in sys.modules, 'torch imported'; print(nmt.__version__)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).returncode == 0


def test_translate_file_matches_the_command_and_says_where(tiny_model_dir, tmp_path):
    src = tmp_path / "notes.en"
    src.write_bytes("\n".join(LINES).encode() + b"\nbad \xff byte\n")
    command = CliRunner().invoke(
        app,
        [
            "translate",
            "-m",
            str(tiny_model_dir),
            "--beam",
            "3",
            "--threads",
            "1",
            "-i",
            str(src),
            "-o",
            str(tmp_path / "cli.fr"),
        ],
    )
    assert command.exit_code == 0, command.output
    said: list[str] = []
    seen: list[tuple[int, int]] = []
    loaded = nmt.load(tiny_model_dir, beam_size=3, threads=1)
    texts = loaded.translate_file(src, tmp_path / "api.fr", warn=said.append, progress=lambda *p: seen.append(p))
    assert len(texts) == len(LINES) + 1
    assert (tmp_path / "api.fr").read_text(encoding="utf-8") == "".join(f"{t}\n" for t in texts)
    assert (tmp_path / "api.fr").read_bytes() == (tmp_path / "cli.fr").read_bytes()
    assert said == [f"{src}:5: invalid UTF-8 at column 5; replaced with U+FFFD"]
    assert seen[-1] == (5, 5)
    with pytest.warns(UserWarning, match="notes.en:5: invalid UTF-8"):
        assert loaded.translate_file(src) == texts  # without dest: returned only


def test_translate_file_refuses_what_is_not_text(tiny_model_dir, tmp_path):
    src = tmp_path / "notes.en.gz"
    src.write_bytes(gzip.compress(b"How was your day?\n"))
    with pytest.raises(DataError, match="notes.en.gz: not a text file"):
        nmt.load(tiny_model_dir, threads=1).translate_file(src, tmp_path / "out.fr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.en.gz"]  # nothing written, not even a part


def test_the_documented_example_runs(tiny_model_dir, tmp_path, monkeypatch):
    page = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text(encoding="utf-8")
    section = page.split("## Example", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "nmt.load(" in code and "translate_file(" in code
    (tmp_path / "notes.en").write_text("How was your day?\nThe cat sleeps.\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace('"work/demo/run"', repr(str(tiny_model_dir))), "docs/api.md", "exec"), {})
    assert len((tmp_path / "notes.fr").read_text(encoding="utf-8").splitlines()) == 2


def test_load_changes_no_process_wide_setting_unless_asked(tiny_model_dir, monkeypatch):
    """A library must not retune its host: torch's thread count stays as the program set it, and the allocator
    setting (mallopt) is the commands' to make. threads=N asks."""
    import torch

    import nmt.runtime

    def refuse() -> bool:
        raise AssertionError("nmt.load changed the allocator (mallopt)")

    monkeypatch.setattr(nmt.runtime, "keep_freed_memory", refuse)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert nmt.load(tiny_model_dir).translate("a dog .")
        assert torch.get_num_threads() == 1
        nmt.load(tiny_model_dir, threads=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_align_is_given_when_made_and_kept_by_with_config(tiny_model_dir, tmp_path):
    """Alignment is a setting of the translator, not an attribute patched afterwards: another beam keeps it."""
    from nmt.translate import Translator

    aligned = nmt.load(tiny_model_dir, beam_size=2, align=True, threads=1).translator
    assert isinstance(aligned, Translator) and aligned.align
    wider = aligned.with_config(beam_size=3)
    assert wider.align and wider.translate_batch([LINES[0]])[0].alignment
    assert aligned.with_config(align=False).translate_batch([LINES[0]])[0].alignment is None
    assert not nmt.load(tiny_model_dir, threads=1).translator.align


def test_align_on_a_ctranslate2_export_is_refused_before_loading(tmp_path):
    from nmt.layout import EXPORT_FILE

    (tmp_path / EXPORT_FILE).write_text("{}")  # an export directory's marker; nothing else is read first
    with pytest.raises(ConfigError, match="CTranslate2 does not give"):
        nmt.load(tmp_path, align=True)
