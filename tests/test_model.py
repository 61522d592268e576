"""Tests for nmt/model.py and nmt/layers.py: masking, caching, reordering, tying and learning,
each checked as a relationship between two ways of computing the same thing, on tiny models."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_config
from safetensors.torch import load_model, save_model

from nmt.config import ModelConfig
from nmt.layers import attention_math, inference_attention, sinusoid_table
from nmt.model import KVCache, Memory, Transformer
from nmt.tokenizer import SPECIAL

pytestmark = pytest.mark.unit

PAD, BOS, EOS = SPECIAL.pad, SPECIAL.bos, SPECIAL.eos
FIRST_WORD = max(PAD, SPECIAL.unk, BOS, EOS) + 1  # random words never collide with a special id
VOCAB = 50
TINY = tiny_config(VOCAB, enc_layers=2, dec_layers=2, dropout=0.0, pad_id=PAD)
ATOL = 1e-5


def build(config: ModelConfig = TINY, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(config).eval()


def padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists into (batch, max_len) with their lengths (batch,)."""
    lengths = torch.tensor([len(r) for r in rows])
    out = torch.full((len(rows), int(lengths.max())), PAD)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out, lengths


def random_rows(generator: torch.Generator, lengths: list[int]) -> list[list[int]]:
    return [torch.randint(FIRST_WORD, VOCAB, (n,), generator=generator).tolist() for n in lengths]


@pytest.fixture
def model() -> Transformer:
    return build()


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three sentence pairs of different lengths: src, src_len, tgt_in (bos + target, right-padded)."""
    g = torch.Generator().manual_seed(1)
    src, src_len = padded(random_rows(g, [7, 3, 5]))
    tgt_in, _ = padded([[BOS] + row for row in random_rows(g, [4, 6, 2])])
    return src, src_len, tgt_in


@torch.no_grad()
def test_padding_never_changes_outputs(model):
    g = torch.Generator().manual_seed(2)
    (short_src, long_src), (short_tgt, long_tgt) = random_rows(g, [4, 9]), random_rows(g, [3, 8])
    alone_src, alone_len = padded([short_src])
    alone_tgt, _ = padded([[BOS] + short_tgt])
    both_src, both_len = padded([long_src, short_src])  # the short pair sits in row 1, padded
    both_tgt, _ = padded([[BOS] + long_tgt, [BOS] + short_tgt])
    assert both_src.size(1) > alone_src.size(1) and both_tgt.size(1) > alone_tgt.size(1)

    alone, both = model.encode(alone_src, alone_len), model.encode(both_src, both_len)
    torch.testing.assert_close(both.states[1, :4], alone.states[0], atol=ATOL, rtol=0)
    assert both.pad_mask[1].tolist() == [False] * 4 + [True] * 5

    alone_logits = model.decode(alone_tgt, alone)  # (1, 4, vocab)
    both_logits = model.decode(both_tgt, both)  # (2, 9, vocab)
    torch.testing.assert_close(both_logits[1, :4], alone_logits[0], atol=ATOL, rtol=0)


@torch.no_grad()
def test_decoder_never_sees_the_future(model, batch):
    src, src_len, tgt_in = batch
    memory = model.encode(src, src_len)
    changed = tgt_in.clone()
    changed[:, 3] = (changed[:, 3] + 1) % VOCAB
    before, after = model.decode(tgt_in, memory), model.decode(changed, memory)
    torch.testing.assert_close(after[:, :3], before[:, :3], atol=ATOL, rtol=0)
    assert not torch.allclose(after[:, 3:], before[:, 3:], atol=1e-3)  # the change did reach later positions


def step_by_step(
    model: Transformer, memory: Memory, tgt_in: torch.Tensor, cache: KVCache | None = None
) -> tuple[torch.Tensor, KVCache]:
    """Feed tgt_in one column at a time through decode_step; (batch, tgt_len, vocab) log-probs."""
    steps = []
    for t in range(tgt_in.size(1)):
        log_probs, cache = model.decode_step(tgt_in[:, t], memory, cache)
        steps.append(log_probs)
    return torch.stack(steps, dim=1), cache


@torch.no_grad()
def test_cached_steps_match_full_decode(model, batch):
    src, src_len, tgt_in = batch
    memory = model.encode(src, src_len)
    full = F.log_softmax(model.decode(tgt_in, memory), dim=-1)  # (batch, tgt_len, vocab)
    stepped, cache = step_by_step(model, memory, tgt_in)
    assert stepped.dtype == torch.float32
    torch.testing.assert_close(stepped, full, atol=ATOL, rtol=0)
    assert cache.length == tgt_in.size(1)
    assert cache.self_k[0].shape == (3, TINY.n_heads, tgt_in.size(1), TINY.d_model // TINY.n_heads)
    assert cache.cross_v[-1].shape == (3, TINY.n_heads, src.size(1), TINY.d_model // TINY.n_heads)
    # made contiguous once: as views of the memory's projection, every step's attention matmuls would copy them
    assert all(t.is_contiguous() for t in cache.cross_k + cache.cross_v)


@torch.no_grad()
def test_decode_step_leaves_the_given_cache_alone(model, batch):
    """Search may keep an old cache around (e.g. to compare hypotheses), so a step must not grow it in place."""
    src, src_len, tgt_in = batch
    memory = model.encode(src, src_len)
    _, cache = model.decode_step(tgt_in[:, 0], memory, None)
    first, _ = model.decode_step(tgt_in[:, 1], memory, cache)
    second, _ = model.decode_step(tgt_in[:, 1], memory, cache)
    assert cache.length == 1 and cache.self_k[0].size(2) == 1
    torch.testing.assert_close(second, first)


@torch.no_grad()
def test_reorder_equals_decoding_the_selected_rows(model, batch):
    src, src_len, tgt_in = batch
    index = torch.tensor([2, 0, 0, 2])  # drops row 1, duplicates rows 0 and 2
    memory = model.encode(src, src_len)
    _, cache = step_by_step(model, memory, tgt_in[:, :2])
    memory, cache = model.reorder(memory, cache, index[:, None])
    after, _ = step_by_step(model, memory, tgt_in[index, 2:], cache)

    direct_memory = model.encode(src[index], src_len[index])
    direct, _ = step_by_step(model, direct_memory, tgt_in[index])
    torch.testing.assert_close(after, direct[:, 2:], atol=ATOL, rtol=0)
    assert cache.length == 2 and memory.pad_mask.shape == (4, src.size(1))


def test_inference_attention_equals_sdpa(model, batch):
    """Without gradients, attention on CPU is spelled out (layers.attention_math); with them it is
    SDPA's kernel. The two agree, masks and causality included."""
    src, src_len, tgt_in = batch
    model.eval()
    with torch.enable_grad():
        sdpa = model(src, src_len, tgt_in)
    with torch.no_grad():
        math_ = model(src, src_len, tgt_in)
    torch.testing.assert_close(math_, sdpa.detach(), atol=ATOL, rtol=0)


@pytest.mark.parametrize("rows, t_q", [(1, 1), (2, 5), (10, 1), (11, 1), (4, 6)])  # either side of 10 query rows
@pytest.mark.parametrize("masked, causal", [(False, False), (True, False), (False, True), (True, True)])
def test_inference_attention_equals_the_spelled_out_math(rows, t_q, masked, causal):
    g = torch.Generator().manual_seed(rows + t_q)
    q = torch.randn(rows, 2, t_q, 8, generator=g)
    k, v = torch.randn(2, rows, 2, 9, 8, generator=g)
    mask = (torch.arange(9) < torch.randint(3, 10, (rows, 1, 1, 1), generator=g)) if masked else None
    torch.testing.assert_close(
        inference_attention(q, k, v, mask, causal), attention_math(q, k, v, mask, causal), atol=ATOL, rtol=0
    )


@torch.no_grad()
def test_hypotheses_of_a_sentence_share_its_memory(model, batch):
    """Beam search's rows: several per sentence, consecutive. The memory and cross-attention keys and
    values stay one per sentence, and decoding equals decoding each row's sentence on its own."""
    src, src_len, tgt_in = batch
    rows = torch.tensor([2, 2, 0, 0])  # two hypotheses each for sentences 2 and 0
    history = tgt_in[rows].clone()
    history[1, 1], history[3, 1] = history[1, 1] + 1, history[3, 1] + 2  # the hypotheses differ
    memory = model.encode(src, src_len)
    _, cache = step_by_step(model, memory, tgt_in[:, :1])
    memory, cache = model.reorder(memory, cache, torch.tensor([[2, 2], [0, 0]]))
    assert memory.states.size(0) == 2 and cache.cross_k[0].size(0) == 2 and cache.self_k[0].size(0) == 4
    after, cache = step_by_step(model, memory, history[:, 1:2], cache)
    shared_states = memory.states
    order = torch.tensor([1, 0, 3, 3])
    memory, cache = model.reorder(memory, cache, order.view(2, 2))  # follow the beams, same sentences
    assert memory.states is shared_states  # nothing copied
    more, _ = step_by_step(model, memory, history[order, 2:], cache)

    direct, _ = step_by_step(model, model.encode(src[rows], src_len[rows]), history)
    torch.testing.assert_close(after, direct[:, 1:2], atol=ATOL, rtol=0)
    torch.testing.assert_close(more, direct[order, 2:], atol=ATOL, rtol=0)


@pytest.mark.integration
def test_tiny_model_overfits_twenty_pairs():
    g = torch.Generator().manual_seed(3)
    lengths = torch.randint(3, 9, (2, 20), generator=g).tolist()
    src, src_len = padded(random_rows(g, lengths[0]))
    tgt, _ = padded([[BOS] + row + [EOS] for row in random_rows(g, lengths[1])])
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
    model = build(dataclasses.replace(TINY, d_model=64, ffn_dim=128)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(200):
        logits = model(src, src_len, tgt_in)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05


def vocab_matrices(model: Transformer) -> list[torch.nn.Parameter]:
    """Distinct parameters with a row per word."""
    sizes = {model.config.src_vocab_size, model.config.tgt_vocab_size}
    return [p for p in model.parameters() if p.dim() == 2 and p.size(0) in sizes]


def test_tied_embeddings_are_one_parameter():
    shared = build()
    assert shared.src_embed.weight is shared.tgt_embed.weight is shared.output_proj.weight
    assert len(vocab_matrices(shared)) == 1

    tied = build(dataclasses.replace(TINY, share_all_embeddings=False, tgt_vocab_size=VOCAB + 7))
    assert tied.tgt_embed.weight is tied.output_proj.weight
    assert tied.src_embed.weight is not tied.tgt_embed.weight
    assert len(vocab_matrices(tied)) == 2

    untied = build(dataclasses.replace(TINY, share_all_embeddings=False, tie_output=False))
    assert len(vocab_matrices(untied)) == 3


@torch.no_grad()
def test_tie_survives_safetensors_and_positions_are_not_saved(tmp_path, model, batch):
    assert not any("positions" in name for name in model.state_dict())
    save_model(model, str(tmp_path / "model.safetensors"))
    loaded = build(seed=99)
    load_model(loaded, str(tmp_path / "model.safetensors"))
    assert loaded.src_embed.weight is loaded.output_proj.weight
    torch.testing.assert_close(loaded(*batch), model(*batch))


def test_initialisation():
    model = build(dataclasses.replace(TINY, src_vocab_size=2000, tgt_vocab_size=2000))
    weight = model.src_embed.weight
    assert torch.all(weight[PAD] == 0)
    assert abs(weight[1:].std().item() - TINY.d_model**-0.5) < 0.01
    ffn_in = model.encoder[0].ffn.fc1.weight  # xavier-uniform bound: sqrt(6 / (fan_in + fan_out))
    assert ffn_in.abs().max().item() <= math.sqrt(6 / (TINY.d_model + TINY.ffn_dim))


@pytest.mark.parametrize(
    "change",
    [
        {"pre_norm": False},
        {"activation": "gelu"},
        {"activation": "swish"},
        {"positions": "halves"},
        {"scale_embedding": False},
    ],
)
@torch.no_grad()
def test_variants_run_and_differ_from_default(model, batch, change):
    variant = build(dataclasses.replace(TINY, **change))  # same seed: same weights where shapes agree
    default_logits, variant_logits = model(*batch), variant(*batch)
    assert variant_logits.shape == default_logits.shape
    assert torch.isfinite(variant_logits).all()
    assert not torch.allclose(variant_logits, default_logits, atol=1e-3)
    src, src_len, tgt_in = batch
    memory = variant.encode(src, src_len)
    stepped, _ = step_by_step(variant, memory, tgt_in)
    torch.testing.assert_close(stepped, F.log_softmax(variant.decode(tgt_in, memory), dim=-1), atol=ATOL, rtol=0)


def test_positional_encoding_matches_the_paper(model):
    d_model = TINY.d_model
    table = model.positions(20, offset=5)  # rows are positions 5..24
    for pos in (5, 6, 13, 24):
        for i in (0, 1, 7, d_model // 2 - 1):
            angle = pos / 10000 ** (2 * i / d_model)
            assert table[pos - 5, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos - 5, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    torch.testing.assert_close(sinusoid_table(64, d_model)[5:25], table)
    with pytest.raises(ValueError, match="max_positions"):
        model.positions(10, offset=TINY.max_positions - 5)


def test_halves_hold_the_papers_angles_sines_first():
    d_model = 10
    halves, interleaved = sinusoid_table(30, d_model, "halves"), sinusoid_table(30, d_model)
    torch.testing.assert_close(halves[:, : d_model // 2], interleaved[:, 0::2], atol=0, rtol=0)
    torch.testing.assert_close(halves[:, d_model // 2 :], interleaved[:, 1::2], atol=0, rtol=0)
    with pytest.raises(ValueError, match="positions 'rotary'"):
        sinusoid_table(30, d_model, "rotary")


@pytest.mark.parametrize("d_model", [16, 15])
def test_halves_equal_marians_sinusoids(d_model):
    pytest.importorskip("transformers")
    from transformers.models.marian.modeling_marian import MarianSinusoidalPositionalEmbedding

    theirs = MarianSinusoidalPositionalEmbedding(40, d_model).create_weight()
    torch.testing.assert_close(sinusoid_table(40, d_model, "halves"), theirs, atol=1e-6, rtol=0)


def test_swish_is_transformers_swish_and_layer_norms_keep_its_epsilon():
    pytest.importorskip("transformers")
    from transformers.activations import ACT2FN

    from nmt.layers import activation

    x = torch.linspace(-6, 6, 101)
    for name in ("swish", "silu"):
        torch.testing.assert_close(activation("swish")(x), ACT2FN[name](x), atol=0, rtol=0)
    torch.testing.assert_close(activation("gelu")(x), ACT2FN["gelu"](x), atol=0, rtol=0)
    model = build(dataclasses.replace(TINY, pre_norm=False))
    assert {m.eps for m in model.modules() if isinstance(m, torch.nn.LayerNorm)} == {1e-5}  # Marian's, Pegasus'


@torch.no_grad()
def test_embeddings_are_scaled_by_sqrt_d_model_unless_told_not_to(batch):
    src = batch[0][:1]
    for scale, factor in ((True, math.sqrt(TINY.d_model)), (False, 1.0)):
        model = build(dataclasses.replace(TINY, scale_embedding=scale))
        expected = model.positions(src.size(1)) + factor * model.src_embed(src)
        torch.testing.assert_close(model.embed(src, model.src_embed), expected)


@torch.no_grad()
def test_the_output_bias_is_its_own_parameter_beside_a_tied_weight(tmp_path, batch):
    model = build(dataclasses.replace(TINY, output_bias=True))
    assert model.output_proj.weight is model.tgt_embed.weight  # still tied
    assert model.output_proj.bias is not None and model.output_proj.bias.shape == (VOCAB,)
    assert "output_proj.bias" in model.state_dict() and "output_proj.bias" not in build().state_dict()
    model.output_proj.bias.copy_(torch.randn(VOCAB))
    src, src_len, tgt_in = batch
    memory = model.encode(src, src_len)
    states = model.decode_states(tgt_in, memory)
    torch.testing.assert_close(model.decode(tgt_in, memory), states @ model.tgt_embed.weight.T + model.output_proj.bias)
    stepped, _ = step_by_step(model, memory, tgt_in)
    torch.testing.assert_close(stepped, F.log_softmax(model.decode(tgt_in, memory), dim=-1), atol=ATOL, rtol=0)
    save_model(model, str(tmp_path / "model.safetensors"))
    loaded = build(dataclasses.replace(TINY, output_bias=True), seed=99)
    load_model(loaded, str(tmp_path / "model.safetensors"))
    assert loaded.output_proj.weight is loaded.tgt_embed.weight
    torch.testing.assert_close(loaded(*batch), model(*batch))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_dropout_keeps_its_fraction_scales_and_passes_gradients_through_its_mask(dtype):
    from nmt.dropout import Dropout

    drop = Dropout(0.1)
    x = torch.rand(512, 1024, dtype=dtype) + 0.5
    x.requires_grad_()
    torch.manual_seed(3)
    y = drop(x)
    kept = y != 0
    assert y.dtype == dtype and abs(kept.float().mean().item() - 0.9) < 0.003  # 524,288 draws: sd 0.0004
    assert torch.equal(y[kept], (x[kept] * (1 / 0.9)).to(dtype))
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, torch.where(kept, torch.tensor(1 / 0.9, dtype=dtype), torch.tensor(0, dtype=dtype)))
    torch.manual_seed(3)
    assert torch.equal(drop(x), y)  # the same seed, the same mask
    rows_kept = kept.float().mean(dim=1)
    assert rows_kept.min() > 0.8 and rows_kept.max() < 0.97  # no lane or stretch left out
    assert torch.equal(drop.eval()(x), x)
