"""Attention made visible: the weights behind a translation, word alignments from them, `nmt attention`."""

from __future__ import annotations

import json
import re
import struct

import pytest
import torch
from nmt_cli.main import app
from typer.testing import CliRunner

from nmt.attention import KINDS, attention_maps, word_alignment
from nmt.layers import _RECORDS, recording_attention
from nmt.search import greedy
from nmt.tokenizer import SPECIAL
from nmt.translate import Translator

pytestmark = pytest.mark.integration

runner = CliRunner()
SENTENCES = ["How was your day?", "The cat sleeps on the red sofa.", "Where is the station, please?"]


@pytest.fixture(scope="module")
def translator(tiny_model_dir):
    return Translator.load(tiny_model_dir, threads=1)


def maps_of(translator, line):
    [ids] = translator.encode([line], lambda s: None)
    [[best]] = translator.search_ids([ids])
    maps = attention_maps(
        translator.model,
        ids,
        best.tokens,
        translator.src_tok.to_pieces(ids),
        translator.tgt_tok.to_pieces(best.tokens),
        bos_id=SPECIAL.bos,
        eos_id=SPECIAL.eos,
    )
    return ids, best.tokens, maps


@pytest.mark.parametrize("line", SENTENCES)
def test_rows_sum_to_one_with_a_row_per_target_piece_and_a_column_per_source_piece(translator, line):
    ids, tokens, maps = maps_of(translator, line)
    config = translator.model.config
    assert maps.src_pieces[-1] == maps.tgt_pieces[-1] == "</s>"
    src, tgt = len(ids) + 1, len(tokens) + 1  # EOS included on both sides
    assert maps.cross.shape == (config.dec_layers, config.n_heads, tgt, src)
    assert maps.encoder.shape == (config.enc_layers, config.n_heads, src, src)
    assert maps.decoder.shape == (config.dec_layers, config.n_heads, tgt, tgt)
    for kind in KINDS:
        torch.testing.assert_close(maps.of(kind).sum(dim=-1), torch.ones(maps.of(kind).shape[:-1]))
    assert torch.all(maps.decoder.triu(1) == 0)  # the decoder never looks ahead
    assert _RECORDS.get() is None  # nothing is recorded outside the block


def test_the_cached_decoder_used_the_same_cross_attention(translator):
    """Greedy decoding step by step (cached keys and values) attends exactly as the teacher-forced pass says."""
    model = translator.model
    [ids] = translator.encode([SENTENCES[1]], lambda s: None)
    src = torch.tensor([[*ids, SPECIAL.eos]])
    with torch.inference_mode(), recording_attention() as records:
        [hyp] = greedy(
            model, src, torch.tensor([src.size(1)]), bos_id=SPECIAL.bos, eos_id=SPECIAL.eos, pad_id=SPECIAL.pad
        )
    maps = attention_maps(
        model,
        ids,
        hyp.tokens,
        translator.src_tok.to_pieces(ids),
        translator.tgt_tok.to_pieces(hyp.tokens),
        bos_id=SPECIAL.bos,
        eos_id=SPECIAL.eos,
    )
    for layer in range(model.config.dec_layers):
        steps = [w for name, w in records if name == f"decoder.{layer}.cross"]  # one (1, heads, 1, src) per step
        assert len(steps) == len(hyp.tokens) + 1
        cached = torch.cat([w[0] for w in steps], dim=1)  # (heads, steps, src)
        torch.testing.assert_close(cached, maps.cross[layer], atol=1e-5, rtol=1e-4)


def test_word_alignment_indices_are_words_of_both_sides(translator):
    for line in SENTENCES:
        ids, tokens, maps = maps_of(translator, line)
        pairs = word_alignment(maps)
        src_words = sum(p.startswith("▁") or i == 0 for i, p in enumerate(maps.src_pieces[:-1]))
        tgt_words = sum(p.startswith("▁") or i == 0 for i, p in enumerate(maps.tgt_pieces[:-1]))
        assert pairs and all(0 <= s < src_words and 0 <= t < tgt_words for s, t in pairs)
        assert {t for _, t in pairs} == set(range(tgt_words))  # every target word is aligned


def test_translate_align_gives_valid_pairs_for_every_line_and_keeps_empty_lines(tiny_model_dir):
    lines = [SENTENCES[0], "", "   ", SENTENCES[1], SENTENCES[2]]
    result = runner.invoke(
        app, ["translate", "-m", str(tiny_model_dir), "--align", "--threads", "1"], input="\n".join(lines) + "\n"
    )
    assert result.exit_code == 0, result.output
    out = result.stdout.split("\n")[:-1]
    assert len(out) == len(lines)
    for source, line in zip(lines, out):
        if not source.strip():
            assert line == ""
            continue
        text, _, alignment = line.partition(" ||| ")
        pairs = [tuple(map(int, p.split("-"))) for p in alignment.split()]
        assert pairs and all(re.fullmatch(r"\d+-\d+", p) for p in alignment.split())
        assert all(s < len(source.split()) and t < len(text.split()) for s, t in pairs), (source, line)
    jsonl = runner.invoke(
        app,
        ["translate", "-m", str(tiny_model_dir), "--align", "--format", "jsonl", "--threads", "1"],
        input=SENTENCES[0] + "\n",
    )
    assert re.fullmatch(r"(\d+-\d+ ?)+", json.loads(jsonl.stdout)["alignment"])


def test_attention_command_draws_a_png_and_writes_the_weights(tiny_model_dir, tmp_path):
    pytest.importorskip("matplotlib")
    png, data = tmp_path / "a.png", tmp_path / "a.json"
    result = runner.invoke(
        app,
        [
            "attention",
            "-m",
            str(tiny_model_dir),
            SENTENCES[0],
            "-o",
            str(png),
            "--json",
            str(data),
            "--head",
            "all",
            "--layer",
            "0",
            "--threads",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png.read_bytes()[16:24])
    assert width > 100 and height > 100
    dump = json.loads(data.read_text())
    assert dump["source"] == SENTENCES[0] and len(dump["cross"][0][0]) == len(dump["tgt_pieces"])
    assert all(len(row) == len(dump["src_pieces"]) for row in dump["cross"][0][0])
    bad = runner.invoke(app, ["attention", "-m", str(tiny_model_dir), "x", "--layer", "9", "--json", "-"])
    assert bad.exit_code == 2 and "--layer 9" in bad.stderr


def test_attention_without_matplotlib_says_how_to_install_it(tiny_model_dir, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    result = runner.invoke(app, ["attention", "-m", str(tiny_model_dir), "Hello", "-o", str(tmp_path / "a.png")])
    assert result.exit_code == 2 and "pip install 'nmt[plot]'" in result.stderr
    assert not (tmp_path / "a.png").exists()
    as_json = runner.invoke(app, ["attention", "-m", str(tiny_model_dir), "Hello", "--json", "-", "--threads", "1"])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["source"] == "Hello"


def test_attention_of_a_model_whose_decoder_starts_from_pad(tmp_path):
    """An imported model's shape (Marian's options and vocabulary): the maps are those the cached search used."""
    from helpers import save_marian

    translator = Translator.load(save_marian(tmp_path / "m"), threads=1)
    ids = translator.specials
    assert ids.bos == ids.pad != SPECIAL.bos
    [src] = translator.encode(["the cat sleeps on the sofa ."], lambda s: None)
    [[best]] = translator.with_config(beam_size=1).search_ids([src])
    maps = translator.attention_maps(src, best.tokens)
    assert maps.tgt_pieces == [*translator.tgt_tok.to_pieces(best.tokens), "</s>"]
    torch.testing.assert_close(maps.cross.sum(-1), torch.ones(maps.cross.shape[:-1]))
    source = torch.tensor([[*src, ids.eos]])
    with recording_attention() as stepped:
        greedy(translator.model, source, torch.tensor([source.size(1)]), bos_id=ids.bos, eos_id=ids.eos, pad_id=ids.pad)
    last = translator.model.config.dec_layers - 1
    steps = [w[0] for name, w in stepped if name == f"decoder.{last}.cross"]
    torch.testing.assert_close(torch.cat(steps, dim=1), maps.cross[last], atol=1e-5, rtol=0)
