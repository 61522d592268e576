"""Hugging Face transformers directories in and out (nmt/hf.py). An export loads with transformers' own classes
(AutoTokenizer, AutoModelForSeq2SeqLM) and computes what our model computes: teacher-forced log-probabilities
equal to 1e-4, and the same translations as our search when transformers' generate is given our search's
settings: the per-sentence length limit int(1.2 * source tokens + 10) with EOS forced at it (a logits processor:
transformers has one max_length), pad never emitted (bad_words_ids), early_stopping=True, and length_penalty 0
(transformers divides by length ** alpha, we by ((5 + length) / 6) ** alpha: the same only at 0). An import
reads MarianMT models built here with transformers (random weights, several shapes and options) and computes
what they compute; import(export(model)) translates as the model."""

from __future__ import annotations

import importlib.util
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

from nmt.hf import halves_order  # noqa: E402 (after the skip)
from nmt.hf_dir import export_hf, import_hf, quiet_transformers  # noqa: E402

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
            bad_words_ids=[[tok.pad_token_id]],  # our search never emits pad
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
    assert generate(tiny_hf, test_lines, beams=5) == ours(tiny_model_dir, test_lines, beams=5)
    lines = test_lines[:40]
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
    for args in (
        ["export", "-m", str(tiny_model_dir), "--format", "hf", "--out", str(tmp_path / "hf")],
        ["import", str(tmp_path), "--out", str(tmp_path / "model")],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2
        assert result.stderr.strip().splitlines() == [
            "error: transformers is not installed; install it with: pip install 'nmt[hf]'"
        ]


# ---------------------------------------------------------------------------------------------
# Import: MarianMT models made here with transformers, random weights, SentencePiece models trained on the sample


def train_spm(lines: list[str], size: int) -> bytes:
    """A SentencePiece model as OPUS-MT's are (<unk> 0, <s> 1, </s> 2: not nmt's ids, which vocab.json gives)."""
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=size, minloglevel=2, num_threads=1
    )
    return model.getvalue()


@pytest.fixture(scope="module")
def marian_spm(sample_dir) -> dict[str, bytes]:
    read = lambda name: (sample_dir / name).read_text(encoding="utf-8").splitlines()  # noqa: E731
    return {"en": train_spm(read("train.en"), 300), "fr": train_spm(read("train.fr"), 280)}


def marian_vocab(*protos: bytes, pad_last: bool = True) -> dict[str, int]:
    """vocab.json as OPUS-MT writes it: </s> 0, <unk> 1, the pieces of the SentencePiece models, <pad> last (or
    at 2: two vocabularies need it at the same id in nmt)."""
    import sentencepiece as spm

    pieces: dict[str, None] = {}
    for proto in protos:
        sp = spm.SentencePieceProcessor(model_proto=proto)
        pieces |= dict.fromkeys(sp.id_to_piece(i) for i in range(3, sp.get_piece_size()))
    order = ["</s>", "<unk>", *pieces, "<pad>"] if pad_last else ["</s>", "<unk>", "<pad>", *pieces]
    return {p: i for i, p in enumerate(order)}


OPUS_LEGACY = {
    "_num_labels": 3,
    "add_bias_logits": False,
    "add_final_layer_norm": False,
    "classif_dropout": 0.0,
    "gradient_checkpointing": False,
    "id2label": {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"},
    "label2id": {"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2},
    "max_length": 512,
    "normalize_before": False,
    "normalize_embedding": False,
    "num_beams": 4,
    "static_position_embeddings": True,
}
MARIAN = {  # the shapes and options of the MarianMT models imported (transformers' field names)
    "swish, shared, scaled, biased": dict(activation_function="swish", final_logits_bias=True),
    "relu, separate vocabularies, 2+1 layers": dict(
        activation_function="relu", separate=True, encoder_layers=2, decoder_layers=1
    ),
    "gelu, unscaled, untied output, 1+2 layers": dict(
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=False,
        encoder_layers=1,
        decoder_layers=2,
    ),
}


def marian_dir(
    path: Path,
    spms: dict[str, bytes],
    separate: bool = False,
    final_logits_bias: bool = False,
    **fields: Any,
) -> Path:
    """A MarianMT directory as OPUS-MT publishes them (config.json, model.safetensors, source.spm, target.spm,
    vocab.json, tokenizer_config.json) with random weights: its outputs are nonsense (a few tokens repeated up
    to the length limit), its log-probabilities what they are."""
    import json

    src_vocab = marian_vocab(spms["en"], pad_last=False) if separate else marian_vocab(spms["en"], spms["fr"])
    tgt_vocab = marian_vocab(spms["fr"], pad_last=False) if separate else src_vocab
    config = transformers.MarianConfig(
        **{
            "vocab_size": len(src_vocab),
            "decoder_vocab_size": len(tgt_vocab),
            "share_encoder_decoder_embeddings": not separate,
            "d_model": 16,
            "encoder_attention_heads": 2,
            "decoder_attention_heads": 2,
            "encoder_ffn_dim": 24,
            "decoder_ffn_dim": 24,
            "encoder_layers": 1,
            "decoder_layers": 1,
            "max_position_embeddings": 128,
            "scale_embedding": True,
            "pad_token_id": tgt_vocab["<pad>"],
            "decoder_start_token_id": tgt_vocab["<pad>"],
            "eos_token_id": 0,
            "forced_eos_token_id": 0,
            **fields,
        }
    )
    torch.manual_seed(0)
    model = transformers.MarianMTModel(config)
    with torch.no_grad():  # larger than transformers' init, so that every next-token distribution has a clear best
        for name, p in model.named_parameters():
            p.normal_(0.0, 1.0 if "embed" in name else 0.5)
        if final_logits_bias:
            model.final_logits_bias.normal_(0.0, 1.0)
    model.save_pretrained(str(path))
    # what OPUS-MT's config.json files still carry from transformers' BART days (and generation defaults)
    legacy = {
        **OPUS_LEGACY,
        "num_hidden_layers": config.encoder_layers,
        "extra_pos_embeddings": len(src_vocab),
        "bad_words_ids": [[tgt_vocab["<pad>"]]],
    }
    written = json.loads((path / "config.json").read_text(encoding="utf-8"))
    (path / "config.json").write_text(json.dumps({**legacy, **written}), encoding="utf-8")
    (path / "source.spm").write_bytes(spms["en"])
    (path / "target.spm").write_bytes(spms["fr"])
    (path / "vocab.json").write_text(json.dumps(src_vocab), encoding="utf-8")
    if separate:
        (path / "target_vocab.json").write_text(json.dumps(tgt_vocab), encoding="utf-8")
    tok_config = {"source_lang": "en", "target_lang": "fr", "separate_vocabs": separate}
    (path / "tokenizer_config.json").write_text(json.dumps(tok_config), encoding="utf-8")
    return path


@pytest.mark.parametrize("variant", MARIAN)
def test_import_computes_what_marian_computes(variant, marian_spm, pairs, tmp_path):
    """Teacher-forced log-probs within 1e-4; greedy and beam 5 the same lines (transformers' generate with our
    search's settings: the module docstring)."""

    hf_dir = marian_dir(tmp_path / "opus", marian_spm, **MARIAN[variant])
    model_dir = import_hf(hf_dir, tmp_path / "nmt")
    assert log_prob_gap(model_dir, hf_dir, pairs[:6]) < 1e-4
    lines = [src for src, _ in pairs[:8]]
    assert generate(hf_dir, lines, beams=1) == ours(model_dir, lines, beams=1)
    assert generate(hf_dir, lines, beams=5) == ours(model_dir, lines, beams=5)
    again = export_hf(model_dir, tmp_path / "again")  # and out again: a MarianMT directory that computes the same
    assert transformers.AutoConfig.from_pretrained(str(again)).model_type == "marian"
    assert generate(again, lines, beams=1) == generate(hf_dir, lines, beams=1)


@pytest.mark.parametrize("which", ["pre-norm (trained tiny)", "post-norm"])
def test_import_of_an_export_translates_as_the_model(which, tiny_model_dir, prepared_sample, test_lines, tmp_path):

    model_dir = tiny_model_dir if which.startswith("pre") else post_norm_model_dir(tmp_path / "m", prepared_sample)
    back = import_hf(export_hf(model_dir, tmp_path / "hf"), tmp_path / "back")
    assert load_model_dir(back).config["spm"] == {"src": "spm.model", "tgt": "spm.model"}  # nmt's own ids again
    lines = test_lines[:24]
    for beams in (1, 5):
        assert ours(back, lines, beams, length_penalty=1.0) == ours(model_dir, lines, beams, length_penalty=1.0)


@pytest.fixture(scope="module")
def opus_dir(marian_spm, tmp_path_factory) -> Path:
    return marian_dir(tmp_path_factory.mktemp("opus") / "opus", marian_spm)


REFUSED = {  # a change to the MarianMT directory -> what the one-line error names
    "pickle": ("pytorch_model.bin", "safe_serialization=True"),
    "normalize_embedding": ("normalize_embedding", "normalize_embedding"),
    "add_bias_logits": ("add_bias_logits", "add_bias_logits"),
    "heads": ("decoder_attention_heads", "decoder_attention_heads"),
    "layer drop": ("encoder_layerdrop", "encoder_layerdrop"),
    "activation": ("activation_function", "gelu_new"),
    "unknown field": ("rotary_dim", "rotary_dim"),
    "model type": ("model_type", "bart"),
}


@pytest.mark.parametrize("change", REFUSED)
def test_import_refuses_what_does_not_map_in_one_line(change, opus_dir, tmp_path):
    import json
    import shutil

    from nmt.errors import NmtError

    hf_dir = tmp_path / "changed"
    shutil.copytree(opus_dir, hf_dir)
    config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    field, said = REFUSED[change]
    if change == "pickle":
        (hf_dir / "model.safetensors").rename(hf_dir / "pytorch_model.bin")
    else:
        value = {"normalize_embedding": True, "add_bias_logits": True, "decoder_attention_heads": 4}.get(field)
        value = {"encoder_layerdrop": 0.1, "activation_function": "gelu_new", "rotary_dim": 8}.get(field, value)
        config[field] = "bart" if field == "model_type" else value
        (hf_dir / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(NmtError) as refused:
        import_hf(hf_dir, tmp_path / "nmt")
    assert said in str(refused.value) and "\n" not in str(refused.value)
    assert not (tmp_path / "nmt").exists()


def test_import_command_makes_a_model_the_commands_take(opus_dir, tmp_path):
    out = tmp_path / "opus_nmt"
    result = runner.invoke(app, ["import", str(opus_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    translated = runner.invoke(app, ["translate", "-m", str(out), "--threads", "1"], input="How are you?\nGood.\n")
    assert translated.exit_code == 0 and len(translated.stdout.splitlines()) == 2, translated.output
    info = runner.invoke(app, ["info", str(out), "--json"])
    assert info.exit_code == 0 and '"vocab.json"' in info.stdout, info.output
    drawn = runner.invoke(app, ["attention", "-m", str(out), "How are you?", "--json", "-", "--threads", "1"])
    assert drawn.exit_code == 0 and '"cross"' in drawn.stdout, drawn.output
    if importlib.util.find_spec("ctranslate2"):
        ct2 = runner.invoke(app, ["export", "-m", str(out), "--out", str(tmp_path / "ct2")])
        assert ct2.exit_code == 0, ct2.output
    again = runner.invoke(app, ["import", str(opus_dir), "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.stderr
