"""Export a trained model to CTranslate2, a C++ inference engine for Transformers: the weights go
into a CTranslate2 model directory through its Python model-spec API, next to the SentencePiece
model(s) and an `nmt.json` that says where the export came from, so that the directory alone is
enough for `nmt translate --engine ctranslate2`.

    OUT/{model.bin, config.json, shared_vocabulary.json}   CTranslate2's own files
    OUT/{spm.model, nmt.json}                               ours: tokenizer, provenance, model shape

How our Transformer maps onto CTranslate2's `TransformerSpec`:
  - pre-/post-norm and ReLU/GELU/swish are spec options; the LayerNorm epsilon goes into its config.json;
  - sinusoidal positions are exported as a table, whichever layout the model has (CTranslate2's built-in
    sinusoids are the "halves" layout, nmt's default interleaves them), and the embedding scale as its value
    (sqrt(d_model), or 1 for a model without it);
  - our fused `qkv_proj` ([q; k; v] on the output dimension) is CTranslate2's fused self-attention
    projection as it is, and so is the cross-attention `kv_proj` ([k; v]);
  - pre-norm stacks end with one LayerNorm each, post-norm stacks have none;
  - the output projection's bias, where the model has one (Marian's final_logits_bias), is the projection's;
    tied or shared matrices are written once (CTranslate2 aliases identical variables);
  - the vocabularies are the pieces in id order (SentencePiece's, or a vocabulary's that maps them to the
    model's ids), so token strings and our ids map one to one; the vocabulary's special ids name the tokens:
    decoding starts from its bos (<s>; <pad> for Marian's), </s> is appended to the source and ends the output.
    That no output holds <pad> is the engine's (nmt.ct2), at translation time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nmt.config import to_dict
from nmt.ct2 import import_ctranslate2
from nmt.errors import CheckpointError, ConfigError
from nmt.fileio import sha256_file, staged_dir, write_json
from nmt.layout import CONFIG_FILE, CT2_MODEL_FILE, EXPORT_FILE, EXPORT_FORMAT, MODEL_FILE, QUANTIZATIONS
from nmt.model import Transformer
from nmt.modeldir import LoadedModel, load_model_dir, spm_files_of, vocab_files_of
from nmt.tokenizer import SpecialIds
from nmt.version import __version__

# ---------------------------------------------------------------------------------------------
# Our Transformer -> CTranslate2's TransformerSpec


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy()


def _linear(spec: Any, linear: torch.nn.Linear) -> None:
    spec.weight = _array(linear.weight)  # (out_features, in_features), as CTranslate2 stores it
    if linear.bias is not None:
        spec.bias = _array(linear.bias)


def _norm(spec: Any, norm: torch.nn.LayerNorm) -> None:
    spec.gamma = _array(norm.weight)
    spec.beta = _array(norm.bias)


def _inputs(spec: Any, embedding: torch.nn.Embedding, model: Transformer) -> None:
    """Token embeddings, their sqrt(d_model) scale and our (interleaved) sinusoid table."""
    embeddings = spec.embeddings[0] if isinstance(spec.embeddings, list) else spec.embeddings
    embeddings.weight = _array(embedding.weight)
    spec.scale_embeddings = model.embed_scale
    spec.position_encodings.encodings = _array(model.positions.table)  # (max_positions, d_model)


def transformer_spec(model: Transformer, pieces: list[str], specials: SpecialIds) -> Any:
    """A filled CTranslate2 TransformerSpec holding `model`'s weights (float32, unquantised); `pieces` (the target
    vocabulary in id order) and `specials` name its special tokens."""
    ct2 = import_ctranslate2()
    cfg = model.config
    activations = {  # GELU: erf, like nn.GELU(); SWISH: x * sigmoid(x), like F.silu
        "relu": ct2.specs.Activation.RELU,
        "gelu": ct2.specs.Activation.GELU,
        "swish": ct2.specs.Activation.SWISH,
    }
    if cfg.activation not in activations:
        raise ConfigError(f"activation {cfg.activation!r} has no CTranslate2 counterpart; use the PyTorch engine")
    activation = activations[cfg.activation]
    spec = ct2.specs.TransformerSpec(
        ct2.specs.TransformerEncoderSpec(cfg.enc_layers, cfg.n_heads, pre_norm=cfg.pre_norm, activation=activation),
        ct2.specs.TransformerDecoderSpec(cfg.dec_layers, cfg.n_heads, pre_norm=cfg.pre_norm, activation=activation),
    )
    enc, dec = spec.encoder, spec.decoder
    _inputs(enc, model.src_embed, model)
    _inputs(dec, model.tgt_embed, model)
    for layer_spec, enc_layer in zip(enc.layer, model.encoder_layers()):
        _linear(layer_spec.self_attention.linear[0], enc_layer.self_attn.qkv_proj)  # fused [q; k; v]
        _linear(layer_spec.self_attention.linear[1], enc_layer.self_attn.out_proj)
        _norm(layer_spec.self_attention.layer_norm, enc_layer.self_attn_norm)
        _linear(layer_spec.ffn.linear_0, enc_layer.ffn.fc1)
        _linear(layer_spec.ffn.linear_1, enc_layer.ffn.fc2)
        _norm(layer_spec.ffn.layer_norm, enc_layer.ffn_norm)
    for layer_spec, dec_layer in zip(dec.layer, model.decoder_layers()):
        _linear(layer_spec.self_attention.linear[0], dec_layer.self_attn.qkv_proj)
        _linear(layer_spec.self_attention.linear[1], dec_layer.self_attn.out_proj)
        _norm(layer_spec.self_attention.layer_norm, dec_layer.self_attn_norm)
        _linear(layer_spec.attention.linear[0], dec_layer.cross_attn.q_proj)
        _linear(layer_spec.attention.linear[1], dec_layer.cross_attn.kv_proj)  # fused [k; v]
        _linear(layer_spec.attention.linear[2], dec_layer.cross_attn.out_proj)
        _norm(layer_spec.attention.layer_norm, dec_layer.cross_attn_norm)
        _linear(layer_spec.ffn.linear_0, dec_layer.ffn.fc1)
        _linear(layer_spec.ffn.linear_1, dec_layer.ffn.fc2)
        _norm(layer_spec.ffn.layer_norm, dec_layer.ffn_norm)
    if cfg.pre_norm:
        # pre-norm stacks end with a LayerNorm (post-norm ones with nn.Identity): see Transformer.__init__
        assert isinstance(model.encoder_norm, torch.nn.LayerNorm) and isinstance(model.decoder_norm, torch.nn.LayerNorm)
        _norm(enc.layer_norm, model.encoder_norm)
        _norm(dec.layer_norm, model.decoder_norm)
    _linear(dec.projection, model.output_proj)  # no bias
    # every LayerNorm of ours has torch's default epsilon; CTranslate2 reads one value for all
    epsilons = {m.eps for m in model.modules() if isinstance(m, torch.nn.LayerNorm)}
    if len(epsilons) != 1:
        raise ConfigError(f"CTranslate2 takes one LayerNorm epsilon, the model has {sorted(epsilons)}")
    spec.config.layer_norm_epsilon = epsilons.pop()
    unk, bos, eos = pieces[specials.unk], pieces[specials.bos], pieces[specials.eos]
    spec.config.unk_token, spec.config.bos_token, spec.config.eos_token = unk, bos, eos
    spec.config.decoder_start_token = bos  # our decoder starts from BOS (Marian's: <pad>), as in training
    spec.config.add_source_eos = True  # our encoder input is the source followed by EOS
    return spec


# ---------------------------------------------------------------------------------------------
# Writing the directory

SPECS: dict[str, Callable[[Transformer, list[str], SpecialIds], Any]] = {
    "transformer": transformer_spec
}  # ModelConfig.arch -> CTranslate2 spec


def export_ctranslate2(model_dir: Path, out: Path, quantization: str = "float32", force: bool = False) -> Path:
    """Write `model_dir` (a model or run directory) as a CTranslate2 model directory `out`,
    atomically: a temporary directory renamed into place. Returns `out`."""
    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"--quantization {quantization!r} is not one of {', '.join(QUANTIZATIONS)}")
    out = Path(out)
    if out.exists() and not force:
        raise ConfigError(f"{out}: already exists; choose another --out or pass --force to replace it")
    ct2 = import_ctranslate2()
    loaded = load_model_dir(Path(model_dir), "cpu")
    arch = loaded.model.config.arch
    if arch not in SPECS:
        raise ConfigError(
            f"{loaded.path}: a {arch!r} model cannot be exported to CTranslate2 (nmt maps "
            f"{', '.join(map(repr, SPECS))}); translate it with the PyTorch engine"
        )
    target = loaded.tgt_tokenizer.pieces()
    spec = SPECS[arch](loaded.model, target, loaded.specials)
    spec.register_source_vocabulary(loaded.src_tokenizer.pieces())
    spec.register_target_vocabulary(target)
    try:
        spec.validate()
        spec.optimize(quantization=quantization)
    except ValueError as e:
        raise CheckpointError(f"{loaded.path}: cannot be exported to CTranslate2 ({e})") from e

    try:
        with staged_dir(out) as tmp:
            spec.save(str(tmp))
            tokenizer_files = {**spm_files_of(loaded.path, loaded.config), **vocab_files_of(loaded.path, loaded.config)}
            for name, data in tokenizer_files.items():
                (tmp / name).write_bytes(data)
            write_json(tmp / EXPORT_FILE, _description(loaded, quantization, ct2.__version__, tmp))
    except OSError as e:
        raise CheckpointError(
            f"{out}: could not write it: {e.strerror or e} ({e.filename}); nothing was written there"
        ) from e
    return out


def _description(loaded: LoadedModel, quantization: str, ct2_version: str, tmp: Path) -> dict[str, Any]:
    """nmt.json: what `nmt translate` needs besides CTranslate2's files, and where the export came from."""
    return {
        "format": EXPORT_FORMAT,
        "nmt_version": __version__,
        "ctranslate2_version": ct2_version,
        "quantization": quantization,
        "model": to_dict(loaded.model.config),
        "src_lang": loaded.config.get("src_lang"),  # the rules for sentence boundaries (nmt.sentences)
        "tgt_lang": loaded.config.get("tgt_lang"),
        "spm": loaded.config["spm"],
        "spm_sha256": loaded.config["spm_sha256"],
        # an imported model's vocabularies, as its config.json names them (none for nmt's own)
        **{key: loaded.config[key] for key in ("vocab", "vocab_sha256") if key in loaded.config},
        "model_bin_sha256": sha256_file(tmp / CT2_MODEL_FILE),
        "source": {
            "path": str(loaded.path),
            "model_sha256": sha256_file(loaded.path / MODEL_FILE),
            "config_sha256": sha256_file(loaded.path / CONFIG_FILE),
        },
    }
