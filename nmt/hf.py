"""The one map between nmt's Transformer and transformers' MarianMT / Pegasus models, read both ways by
`nmt export --format hf` and `nmt import` (nmt.hf_dir): WEIGHTS, our parameter names and theirs (`weight_map`),
and CONFIG, our ModelConfig fields and their config fields (`hf_config` forwards, `nmt_config` backwards, where
every field that does not map is a one-line error naming it). Plain tensors and dicts: transformers itself is
never imported here (nmt.hf_dir does, inside its functions).

Which class: post-norm models are MarianMTModel; pre-norm models are PegasusForConditionalGeneration, the
closest class without custom code (modeling_pegasus: LayerNorm before each sublayer, one final LayerNorm per
stack, scale_embedding, final_logits_bias, decoder_start_token_id, activation_function, and the same sinusoid
table as Marian); Pegasus has one embedding matrix for both sides. Both compute their sinusoids when they are
built, never load them, with all sines before all cosines ("halves"); nmt's own models interleave them
("interleaved"). The network is equivariant under one permutation of the d_model dimensions of the residual
stream applied consistently: the embeddings' columns, every LayerNorm's weight and bias, the input columns of
every projection that reads the stream (q, k, v, fc1, the output projection; the cross-attention's k, v read the
encoder's stream, permuted alike) and the output rows and biases of every projection that writes to it
(out_proj, fc2). LayerNorm's mean and variance do not depend on the order of the dimensions and attention's inner
dimensions are untouched, so an interleaved model is exported exactly by permuting it into the halves layout
(`halves_order`); an import keeps the halves layout (ModelConfig.positions). Our fused projections are split:
qkv_proj = [q; k; v], kv_proj = [k; v] on the output dimension; Marian's final_logits_bias is our output bias."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from nmt.config import ModelConfig
from nmt.errors import CheckpointError, ConfigError
from nmt.tokenizer import SpecialIds

CLASSES = {"marian": "MarianMTModel", "pegasus": "PegasusForConditionalGeneration"}  # model_type -> class


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
    if config.output_bias:
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
    order = halves_order(config.d_model) if config.positions == "interleaved" else None
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
        "_attn_implementation_autoset _num_labels unk_token_id num_hidden_layers "
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
    values = {f: getattr(config, field) for field, fs in CONFIG.items() for f in fs}
    values["activation_function"] = ACTIVATIONS[config.activation]
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
    if raw.get("num_hidden_layers", hf["encoder_layers"]) != hf["encoder_layers"]:  # transformers' alias
        raise ConfigError(f"num_hidden_layers {raw['num_hidden_layers']!r}: encoder_layers is {hf['encoder_layers']}")
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
