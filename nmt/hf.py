"""Hugging Face transformers directories in and out: `nmt export --format hf` writes a model as a directory that
transformers loads with its own classes (no custom code), `nmt import` reads a MarianMT directory (as OPUS-MT
publishes them) or one of our exports back into an ordinary nmt model directory. Both directions read the same
two tables: WEIGHTS (our parameter names <-> transformers', `weight_map`) and CONFIG (our ModelConfig fields <->
transformers' config fields); what does not map is a one-line error naming the field.

    HF_DIR/{config.json, generation_config.json, model.safetensors,
            source.spm, target.spm, vocab.json (target_vocab.json), tokenizer_config.json, README.md}

Which class: post-norm models are MarianMTModel; pre-norm models are PegasusForConditionalGeneration, the
closest class without custom code (in transformers' modeling_pegasus: LayerNorm before each sublayer, one final
LayerNorm per stack, scale_embedding, final_logits_bias, decoder_start_token_id, activation_function, and the same
sinusoid table as Marian). Both compute their sinusoids when they are built, never load them, with all sines
before all cosines ("halves"); nmt's own models interleave them ("interleaved"). The network is equivariant
under one permutation of the d_model dimensions of the residual stream applied consistently: the embeddings'
columns, every LayerNorm's weight and bias, the input columns of every projection that reads the stream (q, k,
v, fc1, the output projection; the cross-attention's k, v read the encoder's stream, permuted alike) and the
output rows and biases of every projection that writes to it (out_proj, fc2). LayerNorm's mean and variance do
not depend on the order of the dimensions and attention's inner dimensions are untouched, so an interleaved
model is exported exactly by permuting it into the halves layout (`halves_order`); imports keep the halves
layout (ModelConfig.positions). Our fused projections are split: qkv_proj = [q; k; v], kv_proj = [k; v] on the
output dimension.

transformers is imported inside the functions that need it (never by `import nmt` or any translate path): it is
the optional extra nmt[hf]. Weights are read from safetensors only; a pickle (pytorch_model.bin) is refused.
The model card is nmt.hf_card's; the command line is cli/export.py's and cli/importer.py's."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nmt.config import DecodeConfig, ModelConfig
from nmt.errors import CheckpointError, ConfigError
from nmt.fileio import commit_dir, write_json, write_text
from nmt.modeldir import LoadedModel, load_model_dir
from nmt.tokenizer import SPECIAL, SpecialIds

INSTALL_HINT = "transformers is not installed; install it with: pip install 'nmt[hf]'"
HF_WEIGHTS = "model.safetensors"
PICKLED = ("pytorch_model.bin", "pytorch_model.bin.index.json")
CLASSES = {"marian": "MarianMTModel", "pegasus": "PegasusForConditionalGeneration"}  # model_type -> class
SOURCE_SPM, TARGET_SPM, VOCAB, TARGET_VOCAB = "source.spm", "target.spm", "vocab.json", "target_vocab.json"
TOKENIZER_CONFIG = "tokenizer_config.json"


def import_transformers() -> Any:
    """The transformers module, imported on first use: it is an optional dependency."""
    try:
        import transformers
    except ImportError as e:
        raise ConfigError(INSTALL_HINT) from e
    return transformers


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers without its progress bars and notices (the command line says what happened in one line);
    a missing transformers is left for the conversion to report."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")
        try:
            yield
        finally:
            hf_logging.set_verbosity(level)
            hf_logging.enable_progress_bar()


# ---------------------------------------------------------------------------------------------
# The weights: one table, read both ways

# How the residual-stream permutation applies to a tensor: "reads" permutes a weight's input columns (dim 1),
# "writes" a weight's output rows (dim 0), "stream" the last dimension (LayerNorms, embeddings, biases of
# projections that write), "plain" nothing (biases of projections that read), "logits" nothing either
# (final_logits_bias, stored (1, vocab) by transformers, (vocab,) by us).
ROLES = ("reads", "writes", "stream", "plain", "logits")


@dataclass(frozen=True)
class Weight:
    """One of our tensors and the transformers tensor(s) it is (several: concatenated on dim 0, a fused
    projection), with its role under the residual-stream permutation (ROLES)."""

    nmt: str
    hf: tuple[str, ...]
    role: str


def _linear(nmt: str, hf: tuple[str, ...], reads: bool) -> list[Weight]:
    """A Linear's weight and bias; `reads`: it reads the residual stream (else it writes to it)."""
    return [
        Weight(f"{nmt}.weight", tuple(f"{h}.weight" for h in hf), "reads" if reads else "writes"),
        Weight(f"{nmt}.bias", tuple(f"{h}.bias" for h in hf), "plain" if reads else "stream"),
    ]


def _norm(nmt: str, hf: str) -> list[Weight]:
    return [Weight(f"{nmt}.{p}", (f"{hf}.{p}",), "stream") for p in ("weight", "bias")]


def _self_attention(nmt: str, hf: str) -> list[Weight]:
    return [
        *_linear(f"{nmt}.qkv_proj", (f"{hf}.q_proj", f"{hf}.k_proj", f"{hf}.v_proj"), reads=True),
        *_linear(f"{nmt}.out_proj", (f"{hf}.out_proj",), reads=False),
    ]


def _ffn(nmt: str, hf: str) -> list[Weight]:
    return [*_linear(f"{nmt}.ffn.fc1", (f"{hf}.fc1",), reads=True), *_linear(f"{nmt}.ffn.fc2", (f"{hf}.fc2",), False)]


def weight_map(config: ModelConfig) -> list[Weight]:
    """Every tensor of our Transformer built from `config` and the transformers tensor(s) it is, for the class
    `config.pre_norm` picks (Pegasus adds the final LayerNorm of each stack)."""
    table = [
        Weight("src_embed.weight", ("model.encoder.embed_tokens.weight",), "stream"),
        Weight("tgt_embed.weight", ("model.decoder.embed_tokens.weight",), "stream"),
        Weight("output_proj.weight", ("lm_head.weight",), "reads"),
    ]
    if getattr(config, "output_bias", False):
        table.append(Weight("output_proj.bias", ("final_logits_bias",), "logits"))
    for i in range(config.enc_layers):
        nmt, hf = f"encoder.{i}", f"model.encoder.layers.{i}"
        table += _self_attention(f"{nmt}.self_attn", f"{hf}.self_attn")
        table += _norm(f"{nmt}.self_attn_norm", f"{hf}.self_attn_layer_norm")
        table += _ffn(nmt, hf) + _norm(f"{nmt}.ffn_norm", f"{hf}.final_layer_norm")
    for i in range(config.dec_layers):
        nmt, hf = f"decoder.{i}", f"model.decoder.layers.{i}"
        table += _self_attention(f"{nmt}.self_attn", f"{hf}.self_attn")
        table += _norm(f"{nmt}.self_attn_norm", f"{hf}.self_attn_layer_norm")
        table += _linear(f"{nmt}.cross_attn.q_proj", (f"{hf}.encoder_attn.q_proj",), reads=True)
        table += _linear(f"{nmt}.cross_attn.kv_proj", (f"{hf}.encoder_attn.k_proj", f"{hf}.encoder_attn.v_proj"), True)
        table += _linear(f"{nmt}.cross_attn.out_proj", (f"{hf}.encoder_attn.out_proj",), reads=False)
        table += _norm(f"{nmt}.cross_attn_norm", f"{hf}.encoder_attn_layer_norm")
        table += _ffn(nmt, hf) + _norm(f"{nmt}.ffn_norm", f"{hf}.final_layer_norm")
    if config.pre_norm:
        table += _norm("encoder_norm", "model.encoder.layer_norm") + _norm("decoder_norm", "model.decoder.layer_norm")
    return table


def halves_order(d_model: int) -> Tensor:
    """The residual-stream permutation from the interleaved sinusoid layout to the halves one: dimension c of
    the halves layout is dimension order[c] of the interleaved one (sines at 0, 2, 4, ..., cosines at 1, 3, ...)."""
    return torch.cat((torch.arange(0, d_model, 2), torch.arange(1, d_model, 2)))


def _permute(t: Tensor, role: str, order: Tensor | None) -> Tensor:
    """`t` with the residual-stream dimensions reordered as its role says (order: new position -> old one)."""
    if order is None or role in ("plain", "logits"):
        return t
    dim = {"reads": 1, "writes": 0, "stream": t.dim() - 1}[role]
    return t.index_select(dim, order)


def to_hf_state(model: torch.nn.Module, config: ModelConfig) -> dict[str, Tensor]:
    """transformers' tensors of our `model`, in the halves layout (permuted if the model interleaves)."""
    order = halves_order(config.d_model) if getattr(config, "positions", "interleaved") == "interleaved" else None
    ours = model.state_dict()
    state: dict[str, Tensor] = {}
    for w in weight_map(config):
        t = _permute(ours[w.nmt].detach().float().cpu(), w.role, order)
        if w.role == "logits":
            t = t[None, :]  # (1, vocab)
        for name, part in zip(w.hf, t.chunk(len(w.hf), dim=0)):
            state[name] = part.contiguous()
    return state


def from_hf_state(state: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """Our tensors from transformers' `state` (halves layout, which `config` keeps: no permutation)."""
    ours: dict[str, Tensor] = {}
    for w in weight_map(config):
        missing = [name for name in w.hf if name not in state]
        if missing:
            raise CheckpointError(f"tensor {missing[0]!r} is missing from the transformers model")
        t = torch.cat([state[name].float() for name in w.hf], dim=0)
        ours[w.nmt] = t.reshape(-1) if w.role == "logits" else t
    return ours


# ---------------------------------------------------------------------------------------------
# The config: one table, read both ways

# our field -> the transformers config field(s) holding it (several: each must hold the same value)
CONFIG: dict[str, tuple[str, ...]] = {
    "d_model": ("d_model",),
    "n_heads": ("encoder_attention_heads", "decoder_attention_heads"),
    "enc_layers": ("encoder_layers",),
    "dec_layers": ("decoder_layers",),
    "ffn_dim": ("encoder_ffn_dim", "decoder_ffn_dim"),
    "dropout": ("dropout",),
    "attn_dropout": ("attention_dropout",),
    "act_dropout": ("activation_dropout",),
    "activation": ("activation_function",),
    "max_positions": ("max_position_embeddings",),
    "scale_embedding": ("scale_embedding",),
    "src_vocab_size": ("vocab_size",),
    "pad_id": ("pad_token_id",),
}
# ModelConfig.activation -> transformers' ACT2FN name ("silu" is transformers' other name for swish)
ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "swish": "swish"}
ACTIVATION_ALIASES = {"silu": "swish"}
# what transformers' config holds that is not the model's function (bookkeeping, training, generation defaults)
IGNORED = frozenset(
    (
        # bookkeeping and training-only switches
        "architectures model_type transformers_version dtype torch_dtype use_cache init_std is_encoder_decoder "
        "is_decoder bos_token_id id2label label2id num_labels return_dict output_attentions output_hidden_states "
        "classifier_dropout classif_dropout gradient_checkpointing tokenizer_class prefix task_specific_params "
        "problem_type chunk_size_feed_forward tie_encoder_decoder pruned_heads torchscript add_cross_attention "
        "cross_attention_hidden_size finetuning_task tf_legacy_loss use_bfloat16 _name_or_path "
        "_attn_implementation_autoset "
        # bart's offset for learned positions (sinusoids have none)
        "extra_pos_embeddings "
        # generation defaults (generation_config.json holds them now): nmt's [decode] settings decide instead
        "num_beams max_length min_length bad_words_ids length_penalty early_stopping no_repeat_ngram_size "
        "num_return_sequences do_sample temperature top_k top_p repetition_penalty diversity_penalty "
        "num_beam_groups forced_bos_token_id forced_eos_token_id max_new_tokens output_scores "
        "return_dict_in_generate remove_invalid_values typical_p encoder_no_repeat_ngram_size "
        "exponential_decay_length_penalty suppress_tokens begin_suppress_tokens sep_token_id "
        # read where they matter: special ids (the tokenizer's), layer drop (_refusals), embeddings (nmt_config)
        "decoder_start_token_id eos_token_id encoder_layerdrop decoder_layerdrop decoder_vocab_size "
        "share_encoder_decoder_embeddings tie_word_embeddings"
    ).split()
    + [f for names in CONFIG.values() for f in names]
)
# BART-era fields some OPUS-MT config.json files still carry: the values that mean what transformers computes
# (transformers itself ignores these fields, so a different value means a model it would run wrongly too)
LEGACY = {
    "normalize_before": False,
    "normalize_embedding": False,
    "add_bias_logits": False,
    "add_final_layer_norm": False,
    "static_position_embeddings": True,
}


def hf_config(config: ModelConfig, special: SpecialIds) -> dict[str, Any]:
    """transformers' config.json fields for our `config` (CONFIG read forwards): Pegasus for pre-norm, Marian
    for post-norm."""
    if config.activation not in ACTIVATIONS:
        raise ConfigError(f"activation {config.activation!r} has no transformers equivalent")
    values = {f: getattr(config, field) for field, fs in CONFIG.items() for f in fs if hasattr(config, field)}
    values["activation_function"] = ACTIVATIONS[config.activation]
    values["scale_embedding"] = getattr(config, "scale_embedding", True)
    model_type = "pegasus" if config.pre_norm else "marian"
    values |= {
        "model_type": model_type,
        "architectures": [CLASSES[model_type]],
        "pad_token_id": special.pad,
        "eos_token_id": special.eos,
        "forced_eos_token_id": special.eos,
        "decoder_start_token_id": special.bos,
        "tie_word_embeddings": config.share_all_embeddings or config.tie_output,
    }
    if model_type == "marian":
        values["decoder_vocab_size"] = config.tgt_vocab_size
        values["share_encoder_decoder_embeddings"] = config.share_all_embeddings
    return values


def _one(hf: dict[str, Any], names: tuple[str, ...]) -> Any:
    """The value the transformers fields `names` hold together; an error naming them when they differ."""
    values = [hf[name] for name in names]
    if any(v != values[0] for v in values):
        said = ", ".join(f"{n} {v!r}" for n, v in zip(names, values))
        raise ConfigError(f"{said}: nmt has one value for both stacks")
    return values[0]


def _refusals(hf: dict[str, Any], raw: dict[str, Any]) -> None:
    """A one-line error for the first field of config.json that does not map onto nmt's model."""
    for name, value in LEGACY.items():
        if name in raw and raw[name] != value:
            raise ConfigError(f"{name} {raw[name]!r}: nmt (and transformers' {hf['model_type']} class) needs {value!r}")
    for name in ("encoder_layerdrop", "decoder_layerdrop"):
        if hf.get(name):
            raise ConfigError(f"{name} {hf[name]!r}: nmt has no layer drop; set it to 0 to import")
    unknown = sorted(set(raw) - IGNORED - set(LEGACY))
    if unknown:
        raise ConfigError(f"{unknown[0]} {raw[unknown[0]]!r}: a config field nmt does not know how to map")


def nmt_config(hf: dict[str, Any], raw: dict[str, Any], output_bias: bool) -> ModelConfig:
    """Our ModelConfig from transformers' config (`hf`: every field resolved with the class defaults; `raw`:
    config.json as written), CONFIG read backwards; the first field that does not map is a ConfigError."""
    model_type = hf.get("model_type")
    if model_type not in CLASSES:
        raise ConfigError(
            f"model_type {model_type!r}: nmt imports {' and '.join(CLASSES.values())} directories, not this one"
        )
    _refusals(hf, raw)
    values = {field: _one(hf, names) for field, names in CONFIG.items()}
    activation = ACTIVATION_ALIASES.get(values["activation"], values["activation"])
    if activation not in ACTIVATIONS.values():
        raise ConfigError(f"activation_function {values['activation']!r}: nmt has {', '.join(ACTIVATIONS)}")
    shared = model_type == "pegasus" or bool(hf.get("share_encoder_decoder_embeddings", True))
    tgt_vocab = values["src_vocab_size"] if shared else hf.get("decoder_vocab_size") or values["src_vocab_size"]
    if shared and hf.get("decoder_vocab_size") not in (None, values["src_vocab_size"]):
        raise ConfigError(
            f"decoder_vocab_size {hf['decoder_vocab_size']}: with shared embeddings it must be vocab_size "
            f"({values['src_vocab_size']})"
        )
    tied = bool(hf.get("tie_word_embeddings", True))
    chosen: dict[str, Any] = {
        **values,
        "activation": activation,
        "tgt_vocab_size": tgt_vocab,
        "pre_norm": model_type == "pegasus",
        # one matrix for source, target and output; shared embeddings with an untied output are two copies
        "share_all_embeddings": shared and tied,
        "tie_output": tied,
        "positions": "halves",
        "output_bias": output_bias,
    }
    return ModelConfig(**chosen)


# ---------------------------------------------------------------------------------------------
# Export


def special_ids(loaded: LoadedModel) -> SpecialIds:
    """The special ids of a loaded model's target vocabulary (nmt's fixed ones unless its tokenizer says)."""
    return getattr(loaded.tgt_tokenizer, "specials", SPECIAL)


def _tokenizer_files(loaded: LoadedModel, special: SpecialIds) -> tuple[dict[str, bytes], dict[str, Any]]:
    """MarianTokenizer's files (source.spm, target.spm, vocab.json and, for two vocabularies,
    target_vocab.json) and its tokenizer_config.json, so that AutoTokenizer loads the directory."""
    src, tgt = loaded.src_tokenizer, loaded.tgt_tokenizer
    pieces, src_pieces = tgt.pieces(), src.pieces()  # in id order
    separate = src_pieces != pieces  # two vocabularies (two SentencePiece models over one are still one)

    def vocab_of(pieces: list[str]) -> bytes:
        return json.dumps({p: i for i, p in enumerate(pieces)}, ensure_ascii=False, indent=1).encode()

    files = {SOURCE_SPM: src.proto, TARGET_SPM: tgt.proto, VOCAB: vocab_of(src_pieces)}
    if separate:
        files[TARGET_VOCAB] = vocab_of(pieces)
    config = {
        "tokenizer_class": "MarianTokenizer",
        "source_lang": loaded.config.get("src_lang"),
        "target_lang": loaded.config.get("tgt_lang"),
        "unk_token": pieces[special.unk],
        "eos_token": pieces[special.eos],
        "pad_token": pieces[special.pad],
        # the decoder's start token (our <s>) is special too, so that decoding with skip_special_tokens drops it
        **({"bos_token": pieces[special.bos]} if special.bos != special.pad else {}),
        "separate_vocabs": separate,
        "model_max_length": loaded.model.config.max_positions,
        "clean_up_tokenization_spaces": False,  # French spaces before ? and ! are text, not tokenisation
    }
    return files, config


def generation_config(model: ModelConfig, special: SpecialIds, decode: DecodeConfig) -> dict[str, Any]:
    """generation_config.json: nmt's [decode] settings where transformers can say them. early_stopping=True is
    nmt's rule (a sentence ends once beam_size hypotheses have). The length limit is one number (max_length,
    decoder start included), not nmt's a * source length + b, so it is the model's positions. transformers
    divides a hypothesis' log-prob by length ** beta: nmt's normalize "length" is beta 1 exactly, but its GNMT
    ((5 + length) / 6) ** alpha is no beta (the same only at 0), so beta is the one whose log-derivative,
    beta / length, equals GNMT's, alpha / (5 + length), at 10 tokens: 2/3 alpha (on the sample model's test set,
    beam 5: 191 of 200 translations as nmt's, against 165 with beta = alpha = 1)."""
    return {
        "decoder_start_token_id": special.bos,
        "eos_token_id": special.eos,
        "pad_token_id": special.pad,
        "forced_eos_token_id": special.eos,  # nmt ends a hypothesis at the length limit with EOS
        "num_beams": decode.beam_size,
        "length_penalty": round(decode.length_penalty * 2 / 3, 4) if decode.normalize == "gnmt" else 1.0,
        "early_stopping": True,
        "max_length": model.max_positions,
        **({"no_repeat_ngram_size": decode.no_repeat_ngram} if decode.no_repeat_ngram else {}),
        **({"min_new_tokens": decode.min_len} if decode.min_len else {}),
    }


def _check_exportable(loaded: LoadedModel) -> None:
    """A one-line error for a model that no transformers class without custom code holds."""
    model, config = loaded.model, loaded.model.config
    if config.pre_norm and not config.share_all_embeddings:
        same = torch.equal(model.src_embed.weight, model.tgt_embed.weight) and torch.equal(
            model.tgt_embed.weight, model.output_proj.weight
        )
        if not same:
            raise ConfigError(
                f"{loaded.path}: a pre-norm model with separate embeddings; transformers' pre-norm class "
                "(Pegasus) has one matrix for source, target and output (train with --joint and "
                "share_all_embeddings, or a post-norm model, which exports to MarianMTModel)"
            )


def export_hf(model_dir: Path, out: Path, force: bool = False, decode: DecodeConfig | None = None) -> Path:
    """Write `model_dir` (a model or run directory) as a transformers directory `out`, atomically (a temporary
    directory renamed into place). Returns `out`."""
    transformers = import_transformers()
    out = Path(out)
    if out.exists() and not force:
        raise ConfigError(f"{out}: already exists; choose another --out or pass --force to replace it")
    from nmt.hf_card import model_card

    loaded = load_model_dir(Path(model_dir), "cpu")
    _check_exportable(loaded)
    config, special = loaded.model.config, special_ids(loaded)
    hf = hf_config(config, special)
    cls = getattr(transformers, CLASSES[hf["model_type"]])
    config_cls = transformers.AutoConfig.for_model(hf["model_type"]).__class__
    hf_model = cls(config_cls(**{k: v for k, v in hf.items() if k != "model_type"})).eval()
    state = to_hf_state(loaded.model, config)
    _load_hf(hf_model, state)
    gen = generation_config(config, special, decode or DecodeConfig())
    hf_model.generation_config = transformers.GenerationConfig(**gen)
    files, tok_config = _tokenizer_files(loaded, special)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        hf_model.save_pretrained(str(tmp))
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        write_json(tmp / TOKENIZER_CONFIG, tok_config)
        write_text(tmp / "README.md", model_card(loaded, hf, gen, transformers.__version__))
        commit_dir(tmp, out)
    except OSError as e:
        raise CheckpointError(
            f"{out}: could not write it: {e.strerror or e} ({e.filename}); nothing was written"
        ) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _load_hf(hf_model: torch.nn.Module, state: dict[str, Tensor]) -> None:
    """Put `state` into a transformers model and check that every mapped tensor holds what was meant (tied
    names share one tensor: a conflict between two of them shows here)."""
    with torch.no_grad():
        own = hf_model.state_dict()
        for name, t in state.items():
            if own[name].shape != t.shape:
                raise ConfigError(f"{name}: shape {list(t.shape)} does not fit transformers' {list(own[name].shape)}")
            own[name].copy_(t)
        own = hf_model.state_dict()
        for name, t in state.items():
            if not torch.equal(own[name], t):
                raise ConfigError(f"{name}: tied to another tensor in transformers' model, which holds other values")
