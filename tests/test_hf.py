"""Hugging Face transformers directories in and out (nmt/hf.py). An export loads with transformers' own classes
(AutoTokenizer, AutoModelForSeq2SeqLM) and computes what our model computes: teacher-forced log-probabilities
equal to 1e-4, and the same translations as our search when transformers' generate is given our search's
settings: the per-sentence length limit int(1.2 * source tokens + 10) with EOS forced at it (a logits processor:
transformers has one max_length), early_stopping=True, and length_penalty 0 (transformers divides by
length ** alpha, we by ((5 + length) / 6) ** alpha: the same only at 0). An import reads MarianMT models built
here with transformers (random weights, several shapes) and computes what they compute."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import tiny_config
from nmt_cli.main import app
from typer.testing import CliRunner

from nmt.config import DecodeConfig
from nmt.hypotheses import max_lengths
from nmt.layers import sinusoid_table
from nmt.model import Transformer
from nmt.modeldir import load_model_dir, save_model_dir
from nmt.translate import Translator

transformers = pytest.importorskip("transformers")

from nmt.hf import export_hf, halves_order, quiet_transformers  # noqa: E402 (after the skip)

pytestmark = pytest.mark.integration

runner = CliRunner()
LIMIT = DecodeConfig()  # our search's default length limit: int(a * source tokens + b)


@pytest.fixture(autouse=True)
def _quiet():
    with quiet_transformers():
        yield


@pytest.fixture(scope="module")
def test_lines(sample_dir) -> list[str]:
    return (sample_dir / "test.en").read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def pairs(sample_dir) -> list[tuple[str, str]]:
    src = (sample_dir / "val.en").read_text(encoding="utf-8").splitlines()
    tgt = (sample_dir / "val.fr").read_text(encoding="utf-8").splitlines()
    return list(zip(src, tgt))[:24]


@pytest.fixture(scope="module")
def tiny_hf(tiny_model_dir, tmp_path_factory) -> Path:
    """The session's trained tiny model (pre-norm, shared embeddings) exported."""
    return export_hf(tiny_model_dir, tmp_path_factory.mktemp("hf") / "tiny")


def post_norm_model_dir(path: Path, prepared: Path, **shape: Any) -> Path:
    """A post-norm model with random weights over the prepared sample's vocabulary (it translates badly and
    long: every output reaches the length limit, which is what the limit's handling needs)."""
    spm = (prepared / "spm.model").read_bytes()
    vocab = len(load_spm(spm))
    torch.manual_seed(0)
    model = Transformer(tiny_config(vocab, pre_norm=False, max_positions=128, n_heads=4, **shape))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    meta = {"spm": {"src": "spm.model", "tgt": "spm.model"}, "src_lang": "en", "tgt_lang": "fr"}
    return save_model_dir(path, model, meta, {"spm.model": spm})


def load_spm(proto: bytes) -> Any:
    from nmt.tokenizer import Tokenizer

    return Tokenizer(proto)


# ---------------------------------------------------------------------------------------------
# Comparing the two


class NmtLengthLimit(transformers.LogitsProcessor):
    """Our search's length limit in transformers' generate: a row that has decoded `limit` tokens of its sentence
    may only end, and EOS keeps its own log-probability (nmt.search._at_limit)."""

    def __init__(self, limits: list[int], beams: int, eos: int) -> None:
        self.limits = torch.tensor(limits).repeat_interleave(beams)[:, None]  # (rows, 1)
        self.eos = eos

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        ended = self.limits <= input_ids.size(1) - 1  # the decoder start is not a decoded token
        others = torch.arange(scores.size(1)) != self.eos
        return scores.masked_fill(ended & others, -math.inf)


def generate(hf_dir: Path, lines: list[str], beams: int, length_penalty: float = 0.0) -> list[str]:
    """transformers' translations of `lines` with our search's settings (this module's docstring)."""
    tok = transformers.AutoTokenizer.from_pretrained(str(hf_dir))
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(str(hf_dir)).eval()
    batch = tok(lines, return_tensors="pt", padding=True)
    limits = max_lengths(batch.attention_mask.sum(1).tolist(), LIMIT.max_len_a, LIMIT.max_len_b)
    eos = model.generation_config.eos_token_id
    with torch.no_grad():
        out = model.generate(
            **batch,
            num_beams=beams,
            length_penalty=length_penalty,
            early_stopping=True,
            max_length=max(limits) + 2,  # the decoder start, the tokens, EOS
            forced_eos_token_id=None,
            logits_processor=[NmtLengthLimit(limits, beams, eos)],
        )
    return list(tok.batch_decode(out, skip_special_tokens=True))


def ours(model_dir: Path, lines: list[str], beams: int, length_penalty: float = 0.0, **decode: Any) -> list[str]:
    config = DecodeConfig(beam_size=beams, length_penalty=length_penalty, split="none", **decode)
    return [t.text for t in Translator.load(model_dir, config, threads=1).translate_lines(lines)]


def log_prob_gap(model_dir: Path, hf_dir: Path, pairs: list[tuple[str, str]]) -> float:
    """The largest |difference| between our teacher-forced log-probabilities of the reference translations and
    transformers', over every position and every vocabulary entry."""
    loaded = load_model_dir(model_dir)
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(str(hf_dir)).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(hf_dir))
    start = hf.generation_config.decoder_start_token_id
    gap = 0.0
    for src, tgt in pairs:
        src_ids = tok(src).input_ids  # with EOS
        tgt_ids = tok(text_target=tgt).input_ids
        assert src_ids == loaded.src_tokenizer.encode(src) + [tok.eos_token_id]  # the same ids on both sides
        tgt_in = torch.tensor([[start, *tgt_ids[:-1]]])
        with torch.no_grad():
            mine = loaded.model(torch.tensor([src_ids]), torch.tensor([len(src_ids)]), tgt_in).log_softmax(-1)
            theirs = hf(input_ids=torch.tensor([src_ids]), decoder_input_ids=tgt_in).logits.log_softmax(-1)
        gap = max(gap, float((mine - theirs).abs().max()))
    return gap


# ---------------------------------------------------------------------------------------------
# The layouts


@pytest.mark.unit
@pytest.mark.parametrize("d_model", [8, 32, 10])
def test_halves_order_turns_our_sinusoids_into_transformers(d_model):
    """Our interleaved table with its columns reordered is the one Marian and Pegasus compute."""
    from transformers.models.marian.modeling_marian import MarianSinusoidalPositionalEmbedding

    theirs = MarianSinusoidalPositionalEmbedding(40, d_model).create_weight()
    torch.testing.assert_close(sinusoid_table(40, d_model)[:, halves_order(d_model)], theirs, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------
# Export


def test_export_loads_with_transformers_own_classes(tiny_hf, tiny_model_dir):
    tok = transformers.AutoTokenizer.from_pretrained(str(tiny_hf))
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(str(tiny_hf))
    assert type(tok).__name__ == "MarianTokenizer"
    assert type(model).__name__ == "PegasusForConditionalGeneration"  # pre-norm
    card = (tiny_hf / "README.md").read_text(encoding="utf-8")
    config = load_model_dir(tiny_model_dir).config
    summary = (Path(config["data_dir"]) / "prepare.json").read_text(encoding="utf-8")
    assert "valid_bleu" in card and f"{config['valid']['valid_bleu']:.2f}" in card
    sums = [line.split("`")[1] for line in card.splitlines() if line.startswith("| ") and "`" in line]
    assert sums and all(s in summary for s in sums)  # every checksum in the card is one prepare.json records


def test_export_computes_our_log_probs(tiny_model_dir, tiny_hf, pairs):
    assert log_prob_gap(tiny_model_dir, tiny_hf, pairs) < 1e-4


def test_export_translates_as_ours(tiny_model_dir, tiny_hf, test_lines):
    """Greedy and beam 5 on the sample's test set: the same lines, every one; also with our normalize "length"
    (log-prob / length), which is transformers' length_penalty 1."""
    assert generate(tiny_hf, test_lines, beams=1) == ours(tiny_model_dir, test_lines, beams=1)
    lines = test_lines[:60]
    assert generate(tiny_hf, lines, beams=5) == ours(tiny_model_dir, lines, beams=5)
    by_length = ours(tiny_model_dir, lines, beams=5, normalize="length")
    assert generate(tiny_hf, lines, beams=5, length_penalty=1.0) == by_length


def test_post_norm_exports_to_marian(prepared_sample, pairs, tmp_path):
    model_dir = post_norm_model_dir(tmp_path / "post", prepared_sample, activation="gelu")
    hf_dir = export_hf(model_dir, tmp_path / "hf")
    assert transformers.AutoConfig.from_pretrained(str(hf_dir)).model_type == "marian"
    assert log_prob_gap(model_dir, hf_dir, pairs[:8]) < 1e-4
    lines = [src for src, _ in pairs[:12]]
    assert generate(hf_dir, lines, beams=1) == ours(model_dir, lines, beams=1)
    assert generate(hf_dir, lines, beams=5) == ours(model_dir, lines, beams=5)


def test_export_command(tiny_model_dir, tmp_path):
    out = tmp_path / "hf"
    result = runner.invoke(app, ["export", "-m", str(tiny_model_dir), "--format", "hf", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert {"config.json", "model.safetensors", "source.spm", "vocab.json", "README.md"} <= {
        p.name for p in out.iterdir()
    }
    again = runner.invoke(app, ["export", "-m", str(tiny_model_dir), "--format", "hf", "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.stderr
    int8 = ["export", "-m", str(tiny_model_dir), "--format", "hf", "--quantization", "int8", "-o", str(tmp_path / "q")]
    refused = runner.invoke(app, int8)
    assert refused.exit_code == 2 and "float32" in refused.stderr


def test_without_transformers_the_commands_say_how_to_install_it(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` raises ImportError
    for args in (["export", "-m", str(tiny_model_dir), "--format", "hf", "--out", str(tmp_path / "hf")],):
        result = runner.invoke(app, args)
        assert result.exit_code == 2
        assert result.stderr.strip().splitlines() == [
            "error: transformers is not installed; install it with: pip install 'nmt[hf]'"
        ]
