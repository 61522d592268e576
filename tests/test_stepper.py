"""Tests for nmt/stepper.py: StepDecoder takes the same decoding steps as Transformer.decode_step, on every
variant of the model, through reorders, under bf16 autocast; and the PyTorch engine searches with it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nmt.config import DecodeConfig, ModelConfig
from nmt.model import Transformer
from nmt.stepper import StepDecoder
from nmt.tokenizer import SPECIAL

PAD, BOS = SPECIAL.pad, SPECIAL.bos
VOCAB = 50
TINY = ModelConfig(
    src_vocab_size=VOCAB,
    tgt_vocab_size=VOCAB,
    d_model=32,
    n_heads=4,
    enc_layers=2,
    dec_layers=3,
    ffn_dim=64,
    dropout=0.1,
    max_positions=64,
    pad_id=PAD,
)
VARIANTS = {
    "default": {},
    "post-norm, gelu": dict(pre_norm=False, activation="gelu"),
    "untied": dict(share_all_embeddings=False, tie_output=False),
}


def build(config: ModelConfig) -> Transformer:
    torch.manual_seed(0)
    model = Transformer(config).eval()
    with torch.no_grad():  # LayerNorms away from their (1, 0) start, so that a swapped one would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.2 * torch.randn_like(p))
    return model


def source() -> tuple[torch.Tensor, torch.Tensor]:
    """Three sentences of different lengths, right-padded."""
    g = torch.Generator().manual_seed(1)
    src_len = torch.tensor([7, 3, 5])
    src = torch.randint(5, VOCAB, (3, 7), generator=g)
    src[torch.arange(7) >= src_len[:, None]] = PAD
    return src, src_len


def decode(stepper, model: Transformer, steps: int = 5) -> list[torch.Tensor]:
    """Log-probs of a few steps the way beam search takes them: the first from BOS, then two hypotheses per
    sentence, then the beams followed (rows swapped), then sentence 1 finished and dropped."""
    g = torch.Generator().manual_seed(2)
    src, src_len = source()
    memory = stepper.encode(src, src_len)
    log_probs, cache = stepper.decode_step(torch.full((3,), BOS), memory, None)
    out = [log_probs]
    reorders = [
        torch.tensor([[0, 0], [1, 1], [2, 2]]),  # 2 hypotheses per sentence
        torch.tensor([[1, 0], [2, 2], [5, 4]]),
        torch.tensor([[0, 1], [4, 5]]),  # sentence 1 done
        torch.tensor([[1, 1], [3, 2]]),
    ]
    for index in reorders[: steps - 1]:
        memory, cache = stepper.reorder(memory, cache, index)
        tokens = torch.randint(5, VOCAB, (index.numel(),), generator=g)
        log_probs, cache = stepper.decode_step(tokens, memory, cache)
        out.append(log_probs)
    assert cache.length == steps
    return out


@pytest.mark.parametrize("variant", VARIANTS)
@torch.inference_mode()
def test_steps_equal_the_models_own(variant):
    model = build(dataclasses.replace(TINY, **VARIANTS[variant]))
    reference = decode(model, model)
    stepped = decode(StepDecoder(model), model)
    for ours, theirs in zip(stepped, reference, strict=True):
        assert ours.dtype == torch.float32
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@torch.inference_mode()
def test_caches_equal_the_models_own():
    model = build(TINY)
    src, src_len = source()
    tokens = torch.tensor([BOS, BOS, BOS])
    memory = model.encode(src, src_len)
    _, theirs = model.decode_step(tokens, memory, None)
    _, theirs = model.decode_step(tokens + 7, memory, theirs)
    stepper = StepDecoder(model)
    _, ours = stepper.decode_step(tokens, memory, None)
    _, ours = stepper.decode_step(tokens + 7, memory, ours)
    assert ours.length == theirs.length == 2
    for a, b in zip(ours.self_k + ours.self_v, theirs.self_k + theirs.self_v, strict=True):
        assert a.shape == b.shape == (3, TINY.n_heads, 2, TINY.d_model // TINY.n_heads)
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("matmul_dtype", [None, torch.bfloat16])
@torch.inference_mode()
def test_bf16_autocast_steps_equal_the_models_own(matmul_dtype):
    model = build(TINY)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference = decode(model, model)
        stepped = decode(StepDecoder(model, matmul_dtype), model)
    for ours, theirs in zip(stepped, reference, strict=True):
        assert ours.dtype == torch.float32
        # autocast casts the float32 weights to the same bf16 values that matmul_dtype keeps; the products
        # differ only in the weights' layout (equal to the bit on this project's CPU)
        torch.testing.assert_close(ours, theirs, atol=1e-3, rtol=0)


def test_weights_are_a_snapshot_and_training_models_are_refused():
    model = build(TINY)
    stepper = StepDecoder(model)
    assert stepper.output.weight.data_ptr() != model.output_proj.weight.data_ptr()  # its own (in, out) copy
    assert stepper.output.weight.shape == (TINY.d_model, VOCAB) and stepper.output.weight.is_contiguous()
    with pytest.raises(ValueError, match="eval mode"):
        StepDecoder(model.train())


def test_past_max_positions_is_the_models_error():
    model = build(dataclasses.replace(TINY, max_positions=2))
    stepper = StepDecoder(model)
    with torch.inference_mode(), pytest.raises(ValueError, match="max_positions"):
        decode(stepper, model, steps=3)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_the_pytorch_engine_searches_with_it_on_the_cpu(tiny_model_dir, precision):
    from nmt.translate import Translator

    translator = Translator.load(tiny_model_dir, DecodeConfig(beam_size=3), precision=precision)
    assert isinstance(translator.stepper, StepDecoder)
    output = translator.stepper.output
    # int8: the quantised modules are called as they are (their packed weights have their own layout)
    assert isinstance(output, torch.nn.Module) == (precision == "int8")
    if precision == "bf16":  # cast once, not by autocast at every product
        assert output.weight.dtype == torch.bfloat16
    assert translator.with_config(beam_size=1).stepper is translator.stepper  # weights laid out once
    lines = ["a small test .", "two dogs run on the grass", "hello"]
    ours = translator.translate_batch(lines)
    translator.stepper = translator.model  # the module path, for reference
    theirs = translator.translate_batch(lines)
    assert [t.text for t in ours] == [t.text for t in theirs]
    assert [t.score for t in ours] == pytest.approx([t.score for t in theirs], abs=1e-4)  # float rounding apart
