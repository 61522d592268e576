"""`StepDecoder`: the decoder's one-position step for search on the CPU, written as plain tensor ops over
weights laid out once for products with few rows.

`Transformer.decode_step` runs the decoder's modules (layers.py): the reference, and what validation uses.
Translating one sentence at a time multiplies a handful of rows by every weight at every step, and there
the arithmetic is the smallest cost (measured on this project's 2-core AMD EPYC, d_model 128, 4 layers):
- MKL's product of one row with an nn.Linear weight, stored (out, in), reads the weight at about a quarter
  of the memory's speed: 700-800 µs for the 8,000 x 128 output projection once the caches are cold (they
  are, after a step's other weights), 215-280 µs with the weight stored (in, out); reading it alone takes
  180-245 µs. Small weights gain less (128 -> 384: 85-150 µs vs 70-120).
- each op costs 1-10 µs however small its tensors, and the module path spends ~20 module calls and ~40 ops
  per layer and step (3-D views, dropout that does nothing in eval mode, copies of head-split views).
Here every decoder Linear and the output projection get an (in, out)-contiguous copy (in bf16 for --bf16,
which autocast would otherwise cast at every product), and a layer's step is ~30 calls on 2-D rows, no
modules. Multi30k en->fr model, test_2016_flickr, against the code before it (with the modules' attention
as it was), medians of 3 alternating rounds on a busy machine, ms a sentence:
  one sentence at a time (100)    fp32 greedy 26.3 -> 13.0 (2.0x), beam 5 40.1 -> 27.9 (1.44x);
                                  bf16 1.78x and 1.74x; int8 1.39x and 1.25x
  batched (1,000)                 fp32 and int8 unchanged (0.97-1.02x: the matmuls over many rows dominate);
                                  bf16 greedy 1.21x, beam 5 1.10x
The same translations in every mode.

Same inputs and outputs as the model's own step (encode, init_cache and reorder are the model's; the cache is
its KVCache), and equal log-probabilities up to float rounding (tests/test_stepper.py). The weights are a
snapshot taken at construction: for a model in eval mode that no longer trains."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.layers import DecoderLayer, inference_attention
from nmt.model import KVCache, Memory, Transformer, attend_mask


@dataclass(frozen=True)
class _Linear:
    """y = x W + b with W stored (in, out), contiguous: what a product with few rows reads fastest."""

    weight: Tensor  # (in, out)
    bias: Tensor | None  # (out,)

    def __call__(self, x: Tensor) -> Tensor:
        """x (rows, in) -> (rows, out); the same sum as nn.Linear's (bias first, as addmm adds it)."""
        return x @ self.weight if self.bias is None else torch.addmm(self.bias, x, self.weight)


def _linear(module: nn.Module, dtype: torch.dtype | None) -> Callable[[Tensor], Tensor]:
    """An nn.Linear re-laid as a `_Linear` (in `dtype`, if given); any other linear module (the int8 engine's
    dynamically quantised ones, whose packed weights are already laid out for their kernel) is called as it is."""
    if not isinstance(module, nn.Linear):
        return module
    weight = module.weight.detach().t().contiguous()
    bias = None if module.bias is None else module.bias.detach()
    if dtype is not None:
        weight, bias = weight.to(dtype), None if bias is None else bias.to(dtype)
    return _Linear(weight, bias)


@dataclass(frozen=True)
class _Norm:
    weight: Tensor
    bias: Tensor
    eps: float

    @classmethod
    def of(cls, norm: nn.LayerNorm) -> _Norm:
        assert norm.weight is not None and norm.bias is not None  # elementwise_affine, as layers.py builds them
        return cls(norm.weight.detach(), norm.bias.detach(), norm.eps)

    def __call__(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)


@dataclass(frozen=True)
class _Layer:
    self_norm: _Norm
    qkv: Callable[[Tensor], Tensor]
    self_out: Callable[[Tensor], Tensor]
    cross_norm: _Norm
    q: Callable[[Tensor], Tensor]
    cross_out: Callable[[Tensor], Tensor]
    ffn_norm: _Norm
    fc1: Callable[[Tensor], Tensor]
    fc2: Callable[[Tensor], Tensor]

    @classmethod
    def of(cls, layer: DecoderLayer, dtype: torch.dtype | None) -> _Layer:
        return cls(
            _Norm.of(layer.self_attn_norm),
            _linear(layer.self_attn.qkv_proj, dtype),
            _linear(layer.self_attn.out_proj, dtype),
            _Norm.of(layer.cross_attn_norm),
            _linear(layer.cross_attn.q_proj, dtype),
            _linear(layer.cross_attn.out_proj, dtype),
            _Norm.of(layer.ffn_norm),
            _linear(layer.ffn.fc1, dtype),
            _linear(layer.ffn.fc2, dtype),
        )


class StepDecoder:
    """A Transformer's encode / decode_step / reorder (search.StepModel) with the step taken by `step_layer`
    below instead of the modules: for searching, in eval mode, at float32, under bf16 autocast, or on the
    int8 engine's quantised copy (translate.prepare_model)."""

    def __init__(self, model: Transformer, matmul_dtype: torch.dtype | None = None) -> None:
        """matmul_dtype: torch.bfloat16 to keep the Linear weights in bf16, for steps that run under bf16
        autocast, which would otherwise cast them from float32 at every product (the same values; half the
        bytes to read). Steps outside autocast then fail on the mixed dtypes."""
        if model.training:
            raise ValueError("StepDecoder decodes without dropout: put the model in eval mode first")
        config = model.config
        self.model = model
        self.pre_norm = config.pre_norm
        self.n_heads, self.head_dim = config.n_heads, config.d_model // config.n_heads
        self.act = F.relu if config.activation == "relu" else F.gelu  # FeedForward's nn.ReLU / nn.GELU()
        self.layers = [_Layer.of(layer, matmul_dtype) for layer in model.decoder_layers()]
        # pre-norm stacks end with a LayerNorm, post-norm ones with an Identity
        norm = model.decoder_norm
        self.final_norm = _Norm.of(norm) if isinstance(norm, nn.LayerNorm) else None
        self.output = _linear(model.output_proj, matmul_dtype)  # its own copy even when tied to the embeddings
        self.embedding = model.tgt_embed.weight.detach()

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
        self_k, self_v = [], []
        for i, layer in enumerate(self.layers):
            past, memory_kv = (cache.self_k[i], cache.self_v[i]), (cache.cross_k[i], cache.cross_v[i])
            x, k, v = self.step_layer(layer, x, past, memory_kv, mask)
            self_k.append(k)
            self_v.append(v)
        if self.final_norm is not None:
            x = self.final_norm(x)
        log_probs = F.log_softmax(self.output(x).float(), dim=-1)  # (rows, tgt_vocab_size)
        return log_probs, KVCache(self_k, self_v, cache.cross_k, cache.cross_v, cache.length + 1)

    def step_layer(
        self,
        layer: _Layer,
        x: Tensor,
        past: tuple[Tensor, Tensor],
        memory_kv: tuple[Tensor, Tensor],
        mask: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """DecoderLayer.forward for one new position: x (rows, d_model); past: the self-attention keys and
        values so far (rows, n_heads, length, head_dim) each; memory_kv: the cross-attention ones (sentences,
        n_heads, src_len, head_dim), shared by each sentence's consecutive rows; mask (sentences, 1, 1, src_len).
        Returns x and the self-attention keys and values one position longer. Attention is computed as the
        modules compute it on the CPU without gradients (layers.inference_attention)."""
        rows, d_model = x.shape
        sentences = memory_kv[0].size(0)
        pre = self.pre_norm

        # self-attention over the cache and the new position (which may see everything before it)
        h = layer.self_norm(x) if pre else x
        q, k, v = layer.qkv(h).view(rows, 3, self.n_heads, 1, self.head_dim).unbind(1)  # (rows, n_heads, 1, head_dim)
        k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)
        # one query per row, so (rows, n_heads, 1, head_dim) is already laid out as (rows, d_model)
        x = x + layer.self_out(inference_attention(q, k, v).view(rows, d_model))
        if not pre:
            x = layer.self_norm(x)

        # cross-attention: a sentence's rows query its memory together (as CrossAttention.forward)
        h = layer.cross_norm(x) if pre else x
        q = layer.q(h).view(sentences, rows // sentences, self.n_heads, self.head_dim).transpose(1, 2)
        out = inference_attention(q, *memory_kv, mask)  # (sentences, n_heads, rows_each, head_dim)
        x = x + layer.cross_out(out.transpose(1, 2).reshape(rows, d_model))
        if not pre:
            x = layer.cross_norm(x)

        h = layer.ffn_norm(x) if pre else x
        x = x + layer.fc2(self.act(layer.fc1(h)))
        if not pre:
            x = layer.ffn_norm(x)
        return x, k, v
