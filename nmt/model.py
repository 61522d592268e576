"""The encoder-decoder Transformer of "Attention is all you need": embeddings (optionally tied),
the encoder and decoder stacks, teacher-forced `decode` for training, and the cached
`decode_step`/`reorder` that search drives one token at a time (`Stepper`: the one decoding step, over the
modules' own weights or over copies laid out for the CPU).
Owns parameters, their initialisation and the decoding state; one layer's arithmetic is in layers.py."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.config import ModelConfig
from nmt.dropout import Dropout
from nmt.layers import (
    DecoderLayer,
    EncoderLayer,
    Linear,
    Norm,
    SinusoidalPositions,
    StepWeights,
    decoder_step,
    relaid_linear,
    step_attention,
)


@dataclass
class Memory:
    """What the encoder hands to the decoder: one row per sentence."""

    states: Tensor  # (sentences, src_len, d_model)
    pad_mask: Tensor  # (sentences, src_len) bool, True at padding


@dataclass
class KVCache:
    """Incremental decoding state: everything the decoder needs to take one more step. Search
    may follow several hypotheses (rows) per sentence: the self-attention keys/values are per row,
    the cross-attention ones per sentence, shared by its rows (which are consecutive)."""

    self_k: list[Tensor]  # per decoder layer, (rows, n_heads, length, head_dim)
    self_v: list[Tensor]
    cross_k: list[Tensor]  # per decoder layer, (sentences, n_heads, src_len, head_dim), computed once from memory
    cross_v: list[Tensor]
    length: int  # number of target positions already decoded


def attend_mask(pad_mask: Tensor) -> Tensor:
    """(batch, src_len) True at padding -> (batch, 1, 1, src_len) True where SDPA may attend,
    broadcast over heads and query positions."""
    return ~pad_mask[:, None, None, :]


class Transformer(nn.Module):
    """Encoder-decoder Transformer; every hyper-parameter comes from `config`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d_model = config.d_model
        # section 3.4: embeddings are multiplied by sqrt(d_model) (scale_embedding; some imported models do not)
        self.embed_scale = math.sqrt(d_model) if config.scale_embedding else 1.0
        self.src_embed = nn.Embedding(config.src_vocab_size, d_model, padding_idx=config.pad_id)
        if config.share_all_embeddings:
            self.tgt_embed = self.src_embed
        else:
            self.tgt_embed = nn.Embedding(config.tgt_vocab_size, d_model, padding_idx=config.pad_id)
        # output_bias: Marian's final_logits_bias; its own parameter, also when the weight is tied below
        self.output_proj = nn.Linear(d_model, config.tgt_vocab_size, bias=config.output_bias)
        self.positions = SinusoidalPositions(config.max_positions, d_model, config.positions)
        self.dropout = Dropout(config.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(config) for _ in range(config.enc_layers))
        self.decoder = nn.ModuleList(DecoderLayer(config) for _ in range(config.dec_layers))
        # pre-norm leaves the residual stream un-normalised, so each stack ends with one LayerNorm
        self.encoder_norm = nn.LayerNorm(d_model) if config.pre_norm else nn.Identity()
        self.decoder_norm = nn.LayerNorm(d_model) if config.pre_norm else nn.Identity()
        for i, enc in enumerate(self.encoder_layers()):
            enc.self_attn.name = f"encoder.{i}.self"
        for i, dec in enumerate(self.decoder_layers()):
            dec.self_attn.name, dec.cross_attn.name = f"decoder.{i}.self", f"decoder.{i}.cross"
        self.reset_parameters()
        if config.share_all_embeddings or config.tie_output:
            # one Parameter under two names; safetensors save_model/load_model keeps it shared
            self.output_proj.weight = self.tgt_embed.weight

    def reset_parameters(self) -> None:
        """Xavier-uniform linear weights and zero biases; embeddings N(0, d_model^-0.5) with a zero pad row."""
        std = self.config.d_model**-0.5
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        # an untied output projection is a row per target word, like the embedding it could be tied to
        nn.init.normal_(self.output_proj.weight, mean=0.0, std=std)
        for embedding in dict.fromkeys((self.src_embed, self.tgt_embed)):  # once each when shared
            nn.init.normal_(embedding.weight, mean=0.0, std=std)
            with torch.no_grad():
                embedding.weight[self.config.pad_id].zero_()

    def encoder_layers(self) -> Iterable[EncoderLayer]:
        """`self.encoder`, typed: nn.ModuleList is not generic, so a type checker sees only Modules in it."""
        return cast("Iterable[EncoderLayer]", self.encoder)

    def decoder_layers(self) -> Iterable[DecoderLayer]:
        """`self.decoder`, typed (see `encoder_layers`)."""
        return cast("Iterable[DecoderLayer]", self.decoder)

    def embed(self, tokens: Tensor, table: nn.Embedding, offset: int = 0) -> Tensor:
        """Scaled token embeddings plus positions offset.., then dropout: (batch, t) -> (batch, t, d_model)."""
        positions = self.positions(tokens.size(1), offset)  # (t, d_model)
        # one fused op for positions + sqrt(d_model) * embeddings
        return cast(Tensor, self.dropout(torch.add(positions, table(tokens), alpha=self.embed_scale)))

    def encode(self, src: Tensor, src_len: Tensor) -> Memory:
        """src (batch, src_len) right-padded; src_len (batch,) >= 1. Positions >= src_len are padding."""
        pad_mask = torch.arange(src.size(1), device=src.device) >= src_len[:, None]  # (batch, src_len)
        mask = attend_mask(pad_mask)  # (batch, 1, 1, src_len)
        x = self.embed(src, self.src_embed)  # (batch, src_len, d_model)
        for layer in self.encoder_layers():
            x = layer(x, mask)
        return Memory(states=self.encoder_norm(x), pad_mask=pad_mask)

    def decode(self, tgt_in: Tensor, memory: Memory) -> Tensor:
        """Teacher forcing: tgt_in (batch, tgt_len) -> logits (batch, tgt_len, tgt_vocab_size)."""
        return cast(Tensor, self.output_proj(self.decode_states(tgt_in, memory)))

    def decode_states(self, tgt_in: Tensor, memory: Memory) -> Tensor:
        """The decoder's output states (batch, tgt_len, d_model), which `output_proj` turns into logits."""
        mask = attend_mask(memory.pad_mask)  # (batch, 1, 1, src_len)
        x = self.embed(tgt_in, self.tgt_embed)  # (batch, tgt_len, d_model)
        for layer in self.decoder_layers():
            memory_k, memory_v = layer.cross_attn.project_memory(memory.states)
            x = layer(x, memory_k, memory_v, mask)
        return cast(Tensor, self.decoder_norm(x))

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> Tensor:
        """Logits (batch, tgt_len, tgt_vocab_size) of the next target token at every position."""
        return self.decode(tgt_in, self.encode(src, src_len))

    def init_cache(self, memory: Memory) -> KVCache:
        """Cross-attention keys/values once per sentence; an empty self-attention cache."""
        cross = [layer.cross_attn.project_memory(memory.states) for layer in self.decoder_layers()]
        batch = memory.states.size(0)
        head_dim = self.config.d_model // self.config.n_heads
        empty = memory.states.new_empty(batch, self.config.n_heads, 0, head_dim)  # (sentences, n_heads, 0, head_dim)
        n_layers = len(self.decoder)
        return KVCache(
            self_k=[empty] * n_layers,
            self_v=[empty] * n_layers,
            # contiguous once here: as head-split views of one projection, every step's attention matmuls would
            # copy them again (k and v of every layer, each step)
            cross_k=[k.contiguous() for k, _ in cross],
            cross_v=[v.contiguous() for _, v in cross],
            length=0,
        )

    def decode_step(self, tokens: Tensor, memory: Memory, cache: KVCache | None) -> tuple[Tensor, KVCache]:
        """Score the next token for every hypothesis; tokens (rows,) are the last ones decoded
        (bos at first, when cache is None: one row per sentence). Only the new position runs
        through the decoder. Returns float32 log-probs (rows, tgt_vocab_size) and a new cache one
        position longer; the given cache is left as it was. The step is `Stepper`'s over the modules' own
        weights (the reference; `stepper(relaid=True)` gives the CPU engine's copies)."""
        return self.stepper(relaid=False).decode_step(tokens, memory, cache)

    def stepper(self, relaid: bool, dtype: torch.dtype | None = None) -> Stepper:
        """The decoding step over this model's own weights (relaid False), or over copies of its Linear weights
        laid out for products with few rows (relaid True; in `dtype` if given: see layers.relaid_linear). The
        copies are a snapshot: for a model in eval mode that no longer trains."""
        if relaid and self.training:
            raise ValueError("a re-laid stepper decodes without dropout: put the model in eval mode first")
        return Stepper(self, relaid, dtype)

    def search_stepper(self, device: torch.device, bf16: bool = False) -> Stepper:
        """The step that search runs (nmt translate, validation BLEU): on the CPU over re-laid copies, in bf16
        for steps under bf16 autocast (which would otherwise cast the float32 weights at every product: the same
        values, half the bytes), elsewhere over the modules' own weights (the copies are not measured on GPUs)."""
        if device.type != "cpu":
            return self.stepper(relaid=False)
        return self.stepper(relaid=True, dtype=torch.bfloat16 if bf16 else None)

    def reorder(self, memory: Memory, cache: KVCache, index: Tensor) -> tuple[Memory, KVCache]:
        """Keep, duplicate or drop rows: index (new_sentences, rows_each) picks, for each new row, an
        old one, and all rows of a new sentence come from one old sentence. Beam search uses it to
        expand sentences to beams, to follow the beams, and to drop finished sentences."""
        rows = index.flatten()
        per_sentence = cache.self_k[0].size(0) // memory.states.size(0)  # old rows per sentence
        sentences = index[:, 0] // per_sentence  # (new_sentences,)

        def pick(tensors: list[Tensor], which: Tensor) -> list[Tensor]:
            return [t.index_select(0, which) for t in tensors]

        if not torch.equal(sentences, torch.arange(memory.states.size(0), device=sentences.device)):
            memory = Memory(memory.states.index_select(0, sentences), memory.pad_mask.index_select(0, sentences))
            cache = replace(cache, cross_k=pick(cache.cross_k, sentences), cross_v=pick(cache.cross_v, sentences))
        return memory, replace(cache, self_k=pick(cache.self_k, rows), self_v=pick(cache.self_v, rows))


class Stepper:
    """A Transformer's encode / decode_step / reorder (search.StepModel), with every decoder layer's step taken
    by layers.decoder_step over `StepWeights`: the modules' own (relaid False) or re-laid copies (relaid True,
    the PyTorch engine on the CPU: translate.step_model). encode, init_cache and reorder are the model's."""

    def __init__(self, model: Transformer, relaid: bool, dtype: torch.dtype | None = None) -> None:
        self.model = model
        self.layers = [StepWeights.of(layer, relaid, dtype) for layer in model.decoder_layers()]
        # pre-norm stacks end with a LayerNorm, post-norm ones with an Identity
        norm = model.decoder_norm
        self.final_norm = Norm.of(norm) if isinstance(norm, nn.LayerNorm) else None
        # re-laid: its own copy even when tied to the embeddings
        self.output: Linear = relaid_linear(model.output_proj, dtype) if relaid else model.output_proj
        self.embedding = model.tgt_embed.weight.detach()  # a plain tensor: ops on a Parameter cost more

    def encode(self, src: Tensor, src_len: Tensor) -> Memory:
        return self.model.encode(src, src_len)

    def reorder(self, memory: Memory, cache: KVCache, index: Tensor) -> tuple[Memory, KVCache]:
        return self.model.reorder(memory, cache, index)

    def decode_step(self, tokens: Tensor, memory: Memory, cache: KVCache | None) -> tuple[Tensor, KVCache]:
        """As Transformer.decode_step: float32 log-probs (rows, tgt_vocab_size) and a new cache one longer."""
        model = self.model
        if cache is None:
            cache = model.init_cache(memory)
        positions = model.positions(1, cache.length)  # (1, d_model); raises past max_positions
        x = torch.add(positions, F.embedding(tokens, self.embedding), alpha=model.embed_scale)  # (rows, d_model)
        mask = attend_mask(memory.pad_mask)  # (sentences, 1, 1, src_len), True at real source tokens
        attend = step_attention(x.device)
        self_k, self_v = [], []
        for i, layer in enumerate(self.layers):
            past, memory_kv = (cache.self_k[i], cache.self_v[i]), (cache.cross_k[i], cache.cross_v[i])
            x, k, v = decoder_step(layer, x, past, memory_kv, mask, attend)
            self_k.append(k)  # (rows, n_heads, length + 1, head_dim)
            self_v.append(v)
        if self.final_norm is not None:
            x = self.final_norm(x)
        log_probs = F.log_softmax(self.output(x).float(), dim=-1)  # (rows, tgt_vocab_size)
        return log_probs, KVCache(self_k, self_v, cache.cross_k, cache.cross_v, cache.length + 1)


ARCHITECTURES: dict[str, type[Transformer]] = {"transformer": Transformer}  # ModelConfig.arch -> class


def build_model(config: ModelConfig) -> Transformer:
    """The model `config.arch` names, freshly initialised: the one place a model class is chosen (training,
    checkpoint loading and export all come here). A new architecture registers its class in ARCHITECTURES."""
    return ARCHITECTURES[config.arch](config)
