"""The pieces one Transformer layer is made of: sinusoidal positions, multi-head self- and
cross-attention, the position-wise feed-forward, and the encoder and decoder layers that wire
them together with residuals and LayerNorm (pre- or post-norm).
Owns the arithmetic of a single layer; embeddings, stacks and decoding caches live in model.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.config import ModelConfig
from nmt.dropout import Dropout


def sinusoid_table(max_positions: int, d_model: int, layout: str = "interleaved") -> Tensor:
    """Section 3.5: PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(same angle) (layout
    "interleaved"); "halves" puts the same sines in the first ceil(d_model/2) columns and the cosines after them
    (tensor2tensor's layout, which Marian and Pegasus use: MarianSinusoidalPositionalEmbedding.create_weight)."""
    if layout not in POSITION_LAYOUTS:
        raise ValueError(f"positions {layout!r} is not one of {', '.join(POSITION_LAYOUTS)}")
    # float64 so that far positions keep their precision before the final cast; on the CPU even
    # when a model is built on the meta device (checkpoint.check_weights), where float64 arange
    # would import torch._dynamo (0.9 s of start-up)
    pos = torch.arange(max_positions, dtype=torch.float64, device="cpu")[:, None]  # (max_positions, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64, device="cpu")  # (ceil(d_model/2),)
    angles = pos / 10000.0 ** (two_i / d_model)  # (max_positions, ceil(d_model/2))
    sines, cosines = angles.sin(), angles[:, : d_model // 2].cos()
    if layout == "halves":
        return torch.cat((sines, cosines), dim=1).float()  # (max_positions, d_model)
    table = torch.empty(max_positions, d_model, dtype=torch.float64, device="cpu")
    table[:, 0::2] = sines
    table[:, 1::2] = cosines
    return table.float()  # (max_positions, d_model)


POSITION_LAYOUTS = ("interleaved", "halves")  # ModelConfig.positions


class SinusoidalPositions(nn.Module):
    """The fixed positional encoding, precomputed once as a buffer."""

    table: Tensor  # the buffer registered in __init__ (declared so that a type checker knows it)

    def __init__(self, max_positions: int, d_model: int, layout: str = "interleaved") -> None:
        super().__init__()
        # non-persistent: a function of the config, so it stays out of the saved weights
        self.register_buffer("table", sinusoid_table(max_positions, d_model, layout), persistent=False)

    def forward(self, length: int, offset: int = 0) -> Tensor:
        """Encodings of positions offset .. offset+length-1."""
        if offset + length > self.table.size(0):
            raise ValueError(
                f"position {offset + length - 1} is past max_positions={self.table.size(0)}; "
                "shorten the input or raise max_positions"
            )
        return self.table[offset : offset + length]  # (length, d_model)


# (name, weights) of every attention computed inside `recording_attention`; None (the default): nothing is kept
_RECORDS: ContextVar[list[tuple[str, Tensor]] | None] = ContextVar("nmt_attention_records", default=None)


@contextmanager
def recording_attention() -> Iterator[list[tuple[str, Tensor]]]:
    """Opt-in: within this block every attention appends (its name, e.g. "decoder.1.cross", and its softmax
    weights (batch, n_heads, t_q, t_k)) to the list it yields, computed by `attention_weights`; outside it,
    attention keeps its fast path and nothing is recorded. No hooks are registered, so nothing is left behind."""
    records: list[tuple[str, Tensor]] = []
    token = _RECORDS.set(records)
    try:
        yield records
    finally:
        _RECORDS.reset(token)


def attention_weights(q: Tensor, k: Tensor, mask: Tensor | None = None, causal: bool = False) -> Tensor:
    """softmax(q k^T / sqrt(head_dim)) (batch, n_heads, t_q, t_k): every row sums to 1 over the keys."""
    scores: Tensor = (q * q.size(-1) ** -0.5) @ k.transpose(-2, -1)  # (batch, n_heads, t_q, t_k)
    if causal:
        scores = scores.masked_fill(
            torch.ones(q.size(2), k.size(2), dtype=torch.bool, device=q.device).triu(1), float("-inf")
        )
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1)


def attention_math(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, causal: bool = False) -> Tensor:
    """softmax(q k^T / sqrt(head_dim)) v, spelled out: what `Attention` computes with on CPU in eval
    mode when no gradient is needed (translation, validation), unless there are only a few query rows (see
    `inference_attention`). For batched decoding's shapes (one query position per hypothesis, a few dozen keys)
    this is 1.5-3x faster than SDPA's fused CPU kernel (0.5 vs 1.5 ms for 1,350
    hypotheses, 4 heads, 20 keys; 1.1 vs 2.1 ms for 160 sentences of 28 tokens), and about as fast up to ~100 tokens.
    q (batch, n_heads, t_q, head_dim), k and v (batch, n_heads, t_k, head_dim); mask as in `attend`."""
    return attention_weights(q, k, mask, causal) @ v  # (batch, n_heads, t_q, head_dim)


def inference_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, causal: bool = False) -> Tensor:
    """Attention on the CPU without gradients, by whichever is faster for the shape: SDPA's fused kernel
    when there are at most 10 query rows in all (batch x t_q: one sentence's beam, a few sentences greedy),
    `attention_math` above that. Measured, 4 heads of 32, 16 keys: one query 5.8 vs 14.0 µs, one sentence's
    5 hypotheses against its memory 14.9 vs 19.5 µs, 10 rows 11.6 vs 16.8; 40 rows 33 vs 28, 320 rows 246 vs 129."""
    if q.size(0) * q.size(2) <= 10 and not (causal and mask is not None):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    return attention_math(q, k, v, mask, causal)


class Attention(nn.Module):
    """What self- and cross-attention share: head split, SDPA and the output projection."""

    def __init__(self, d_model: int, n_heads: int, attn_dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.attn_dropout = attn_dropout
        self.out_proj = nn.Linear(d_model, d_model)
        self.name = "attention"  # where it sits ("encoder.0.self", ...), set by the model; names recorded weights

    def split_heads(self, x: Tensor) -> Tensor:
        """(batch, t, d_model) -> (batch, n_heads, t, head_dim), a view: SDPA takes strided inputs."""
        batch, t, _ = x.shape
        return x.view(batch, t, self.n_heads, self.head_dim).transpose(1, 2)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, causal: bool = False) -> Tensor:
        """softmax(q k^T / sqrt(head_dim)) v over all heads, merged and projected back to d_model.
        q (batch, n_heads, t_q, head_dim), k and v (batch, n_heads, t_k, head_dim),
        mask (batch, 1, 1, t_k) bool with True where a key may be attended to."""
        records = _RECORDS.get()
        if records is not None:  # asked for the weights (recording_attention): spelled out, and kept
            weights = attention_weights(q, k, mask, causal)
            records.append((self.name, weights.detach()))
            out = weights @ v
        elif q.device.type == "cpu" and not self.training and not torch.is_grad_enabled():
            out = inference_attention(q, k, v, mask, causal)
        else:
            dropout_p = self.attn_dropout if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal)
        batch, _, t_q, _ = out.shape  # (batch, n_heads, t_q, head_dim)
        # SDPA's fused kernels store the output as (batch, t_q, n_heads, head_dim), so this reshape
        # copies nothing there (it does copy attention_math's output)
        out = out.transpose(1, 2).reshape(batch, t_q, self.n_heads * self.head_dim)
        return cast(Tensor, self.out_proj(out))  # (batch, t_q, d_model)


class SelfAttention(Attention):
    """Queries, keys and values from the same sequence, projected by one fused matmul."""

    def __init__(self, d_model: int, n_heads: int, attn_dropout: float) -> None:
        super().__init__(d_model, n_heads, attn_dropout)
        self.qkv_proj = nn.Linear(d_model, 3 * d_model)

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False) -> Tensor:
        """x (batch, t, d_model) -> (batch, t, d_model). One position at a time is `decoder_step`'s."""
        q, k, v = (self.split_heads(p) for p in self.qkv_proj(x).chunk(3, dim=-1))
        return self.attend(q, k, v, mask, causal)


class CrossAttention(Attention):
    """Queries from the decoder, keys and values from the encoder memory (projected by one fused matmul)."""

    def __init__(self, d_model: int, n_heads: int, attn_dropout: float) -> None:
        super().__init__(d_model, n_heads, attn_dropout)
        self.q_proj = nn.Linear(d_model, d_model)
        self.kv_proj = nn.Linear(d_model, 2 * d_model)

    def project_memory(self, states: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of the encoder states (batch, src_len, d_model); a decoding cache keeps them."""
        k, v = self.kv_proj(states).chunk(2, dim=-1)
        return self.split_heads(k), self.split_heads(v)  # (batch, n_heads, src_len, head_dim) each

    def forward(self, x: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        """x (rows, tgt_len, d_model) attends to the memory's k, v (sentences, n_heads, src_len, head_dim);
        mask (sentences, 1, 1, src_len) hides source padding. In beam search there are more rows than
        sentences: each sentence's hypotheses are consecutive rows, and since queries never see each
        other here, they attend to their one memory together, as that sentence's rows * tgt_len
        queries (the memory is never copied per hypothesis)."""
        rows, t, d_model = x.shape
        q = self.q_proj(x).reshape(k.size(0), rows // k.size(0) * t, d_model)  # (sentences, hyps * tgt_len, d_model)
        return self.attend(self.split_heads(q), k, v, mask).reshape(rows, t, d_model)


# ModelConfig.activation -> the function: the one table both the modules and the decoding step read
# (swish is x * sigmoid(x), which torch calls SiLU and transformers' ACT2FN both "swish" and "silu")
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"relu": F.relu, "gelu": F.gelu, "swish": F.silu}


def activation(name: str) -> Callable[[Tensor], Tensor]:
    """The activation `name` denotes; a name missing from ACTIVATIONS is an error, never a fallback."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation {name!r} is not one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class FeedForward(nn.Module):
    """FFN(x) = W2 act(W1 x + b1) + b2, applied to every position alike."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, config.ffn_dim)
        self.act = activation(config.activation)
        self.dropout = Dropout(config.act_dropout)
        self.fc2 = nn.Linear(config.ffn_dim, config.d_model)

    def forward(self, x: Tensor) -> Tensor:
        return cast(Tensor, self.fc2(self.dropout(self.act(self.fc1(x)))))  # (batch, t, d_model)


class Sublayers(nn.Module):
    """The residual wiring around each sublayer, in either of the two usual orders:
    pre-norm  x + dropout(f(norm(x)))  (the stack then ends with one more LayerNorm),
    post-norm norm(x + dropout(f(x)))  (as in the paper)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.pre_norm = config.pre_norm
        self.dropout = Dropout(config.dropout)

    def sublayer_input(self, x: Tensor, norm: nn.LayerNorm) -> Tensor:
        return norm(x) if self.pre_norm else x

    def residual(self, x: Tensor, out: Tensor, norm: nn.LayerNorm) -> Tensor:
        x = x + self.dropout(out)
        return x if self.pre_norm else norm(x)


class EncoderLayer(Sublayers):
    """Self-attention over the source, then the feed-forward."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.self_attn = SelfAttention(config.d_model, config.n_heads, config.attn_dropout)
        self.self_attn_norm = nn.LayerNorm(config.d_model)
        self.ffn = FeedForward(config)
        self.ffn_norm = nn.LayerNorm(config.d_model)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (batch, src_len, d_model); mask (batch, 1, 1, src_len), True at real tokens."""
        out = self.self_attn(self.sublayer_input(x, self.self_attn_norm), mask=mask)
        x = self.residual(x, out, self.self_attn_norm)
        out = self.ffn(self.sublayer_input(x, self.ffn_norm))
        return self.residual(x, out, self.ffn_norm)  # (batch, src_len, d_model)


class DecoderLayer(Sublayers):
    """Causal self-attention over the target, cross-attention to the source, then the feed-forward."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.self_attn = SelfAttention(config.d_model, config.n_heads, config.attn_dropout)
        self.self_attn_norm = nn.LayerNorm(config.d_model)
        self.cross_attn = CrossAttention(config.d_model, config.n_heads, config.attn_dropout)
        self.cross_attn_norm = nn.LayerNorm(config.d_model)
        self.ffn = FeedForward(config)
        self.ffn_norm = nn.LayerNorm(config.d_model)

    def forward(self, x: Tensor, memory_k: Tensor, memory_v: Tensor, memory_mask: Tensor) -> Tensor:
        """Teacher forcing: x (batch, tgt_len, d_model), each position sees itself and earlier ones.
        memory_k/v (batch, n_heads, src_len, head_dim) from project_memory; memory_mask (batch, 1, 1, src_len),
        True at real source tokens. Decoding one position at a time is `decoder_step`'s (below)."""
        # target padding needs no key mask: pads sit at the end, and the causal mask hides them
        # from every real position before them
        out = self.self_attn(self.sublayer_input(x, self.self_attn_norm), causal=True)
        x = self.residual(x, out, self.self_attn_norm)
        out = self.cross_attn(self.sublayer_input(x, self.cross_attn_norm), memory_k, memory_v, memory_mask)
        x = self.residual(x, out, self.cross_attn_norm)
        out = self.ffn(self.sublayer_input(x, self.ffn_norm))
        return self.residual(x, out, self.ffn_norm)  # (batch, tgt_len, d_model)


# The decoder's one-position step: the only incremental path (Transformer.decode_step and every search run it).
# It reads a layer's weights through `StepWeights`, either the modules' own (the reference; GPUs) or copies
# re-laid for products with few rows (the CPU engine; see `relaid_linear`), and is written as plain ops on 2-D
# rows: measured on this project's 2-core CPU, the module path's ~20 module calls and ~40 ops per layer-step
# cost more than the arithmetic when a handful of rows is decoded (one sentence at a time: 2.0x greedy,
# 1.44x beam 5 for the Multi30k model, fp32).
Linear = Callable[[Tensor], Tensor]  # (rows, in) -> (rows, out)


@dataclass(frozen=True)
class RelaidLinear:
    """y = x W + b with W stored (in, out), contiguous. MKL's product of a few rows with an nn.Linear weight,
    stored (out, in), reads it at about a quarter of memory speed (the Multi30k model's 8,000 x 128 output
    projection, caches cold: 700-800 µs; stored (in, out) 215-280 µs; reading it alone 180-245 µs)."""

    weight: Tensor  # (in, out)
    bias: Tensor | None  # (out,)

    def __call__(self, x: Tensor) -> Tensor:
        """x (rows, in) -> (rows, out); the same sum as nn.Linear's (bias first, as addmm adds it)."""
        return x @ self.weight if self.bias is None else torch.addmm(self.bias, x, self.weight)


def relaid_linear(module: nn.Module, dtype: torch.dtype | None = None) -> Linear:
    """An nn.Linear copied as a `RelaidLinear` (in `dtype`, if given: bf16 copies for steps under bf16 autocast,
    which would otherwise cast the float32 weights at every product); any other linear module (the int8
    engine's dynamically quantised ones, whose packed weights are laid out for their kernel) as it is."""
    if not isinstance(module, nn.Linear):
        return cast(Linear, module)
    weight = module.weight.detach().t().contiguous()
    bias = None if module.bias is None else module.bias.detach()
    if dtype is not None:
        weight, bias = weight.to(dtype), None if bias is None else bias.to(dtype)
    return RelaidLinear(weight, bias)


@dataclass(frozen=True)
class Norm:
    """A LayerNorm's weights, applied as F.layer_norm (nn.LayerNorm's own arithmetic)."""

    weight: Tensor
    bias: Tensor
    eps: float

    @classmethod
    def of(cls, norm: nn.LayerNorm) -> Norm:
        assert norm.weight is not None and norm.bias is not None  # elementwise_affine, as layers.py builds them
        return cls(norm.weight.detach(), norm.bias.detach(), norm.eps)

    def __call__(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)


@dataclass(frozen=True)
class StepWeights:
    """What `decoder_step` reads of one DecoderLayer: its norms, the Linears it runs for one position (the
    memory's keys and values are projected once, by `CrossAttention.project_memory`, into the cache), the
    activation, the residual order, and the names its attention is recorded under."""

    self_norm: Norm
    qkv: Linear
    self_out: Linear
    cross_norm: Norm
    q: Linear
    cross_out: Linear
    ffn_norm: Norm
    fc1: Linear
    fc2: Linear
    act: Callable[[Tensor], Tensor]
    pre_norm: bool
    n_heads: int
    names: tuple[str, str]  # (self-attention, cross-attention), as `recording_attention` names them

    @classmethod
    def of(cls, layer: DecoderLayer, relaid: bool, dtype: torch.dtype | None = None) -> StepWeights:
        """The layer's own weights (relaid False: the modules are called, whatever their device and kind), or
        copies re-laid by `relaid_linear` (relaid True). The norms are read as they are either way."""
        linear: Callable[[nn.Module], Linear] = (
            (lambda m: relaid_linear(m, dtype)) if relaid else (lambda m: cast(Linear, m))
        )
        return cls(
            Norm.of(layer.self_attn_norm),
            linear(layer.self_attn.qkv_proj),
            linear(layer.self_attn.out_proj),
            Norm.of(layer.cross_attn_norm),
            linear(layer.cross_attn.q_proj),
            linear(layer.cross_attn.out_proj),
            Norm.of(layer.ffn_norm),
            linear(layer.ffn.fc1),
            linear(layer.ffn.fc2),
            layer.ffn.act,
            layer.pre_norm,
            layer.self_attn.n_heads,
            (layer.self_attn.name, layer.cross_attn.name),
        )


StepAttention = Callable[[Tensor, Tensor, Tensor, "Tensor | None", str], Tensor]  # (q, k, v, mask, name) -> out


def _cpu_step_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, name: str) -> Tensor:
    return inference_attention(q, k, v, mask)


def _sdpa_step_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, name: str) -> Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def step_attention(device: torch.device) -> StepAttention:
    """How a decoding step computes attention, as `Attention.attend` does in eval mode: recorded inside
    `recording_attention`, by `inference_attention` on the CPU without gradients, else SDPA. Chosen once per
    step rather than at each of its 2 x layers attentions (one sentence at a time, those checks cost ~1 % of a
    step)."""
    records = _RECORDS.get()
    if records is not None:

        def recorded(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, name: str) -> Tensor:
            weights = attention_weights(q, k, mask)
            records.append((name, weights.detach()))
            return weights @ v

        return recorded
    if device.type == "cpu" and not torch.is_grad_enabled():
        return _cpu_step_attention
    return _sdpa_step_attention


def decoder_step(
    w: StepWeights,
    x: Tensor,
    past: tuple[Tensor, Tensor],
    memory_kv: tuple[Tensor, Tensor],
    mask: Tensor,
    attend: StepAttention,
) -> tuple[Tensor, Tensor, Tensor]:
    """DecoderLayer.forward for one new position, without dropout: x (rows, d_model); past: the self-attention
    keys and values so far (rows, n_heads, length, head_dim) each; memory_kv: the cross-attention ones
    (sentences, n_heads, src_len, head_dim), shared by each sentence's consecutive rows; mask (sentences, 1, 1,
    src_len), True at real source tokens; attend: `step_attention(device)`, chosen by the caller once per step.
    Returns x and the self-attention keys and values one position longer."""
    rows, d_model = x.shape
    sentences, n_heads = memory_kv[0].size(0), w.n_heads
    head_dim = d_model // n_heads
    pre = w.pre_norm

    # self-attention over the cache and the new position, which may see everything before it (no mask)
    h = w.self_norm(x) if pre else x
    q, k, v = w.qkv(h).view(rows, 3, n_heads, 1, head_dim).unbind(1)  # (rows, n_heads, 1, head_dim) each
    k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)
    # one query per row, so (rows, n_heads, 1, head_dim) is already laid out as (rows, d_model)
    x = x + w.self_out(attend(q, k, v, None, w.names[0]).reshape(rows, d_model))
    if not pre:
        x = w.self_norm(x)

    # cross-attention: a sentence's rows query its memory together (as CrossAttention.forward)
    h = w.cross_norm(x) if pre else x
    q = w.q(h).view(sentences, rows // sentences, n_heads, head_dim).transpose(1, 2)
    out = attend(q, *memory_kv, mask, w.names[1])  # (sentences, n_heads, rows_each, head_dim)
    x = x + w.cross_out(out.transpose(1, 2).reshape(rows, d_model))
    if not pre:
        x = w.cross_norm(x)

    h = w.ffn_norm(x) if pre else x
    x = x + w.fc2(w.act(w.fc1(h)))
    if not pre:
        x = w.ffn_norm(x)
    return x, k, v  # (rows, d_model), (rows, n_heads, length + 1, head_dim) x2
