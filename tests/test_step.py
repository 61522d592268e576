"""Tests for the one decoding step (layers.decoder_step, model.Stepper): cached steps equal the teacher-forced
pass on every variant ModelConfig can name (the sweep is generated from its fields), over the modules' own
weights and over the re-laid copies the CPU engine uses; through beam reorders, under bf16 autocast, with
attention recorded; and the PyTorch engine and validation search with it."""

from __future__ import annotations

import dataclasses
import itertools
import math
import typing
from typing import Literal, cast

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_config

from nmt.config import ConfigError, DecodeConfig, ModelConfig
from nmt.layers import activation, recording_attention
from nmt.model import Transformer
from nmt.tokenizer import SPECIAL

pytestmark = pytest.mark.unit

PAD, BOS = SPECIAL.pad, SPECIAL.bos
VOCAB = 50
TINY = tiny_config(VOCAB, n_heads=4, enc_layers=2, dec_layers=3, dropout=0.1, pad_id=PAD)


def choices() -> dict[str, tuple[object, ...]]:
    """Every ModelConfig field that picks between variants (bool or Literal) and its values: a field added to
    ModelConfig joins the sweep below by itself."""
    hints = typing.get_type_hints(ModelConfig)
    found: dict[str, tuple[object, ...]] = {}
    for f in dataclasses.fields(ModelConfig):
        if hints[f.name] is bool:
            found[f.name] = (False, True)
        elif typing.get_origin(hints[f.name]) is Literal:
            found[f.name] = typing.get_args(hints[f.name])
    return found


def accepted(setting: dict[str, object]) -> ModelConfig | None:
    """TINY with `setting`, or None when ModelConfig refuses the combination."""
    try:
        return dataclasses.replace(TINY, **setting)
    except ConfigError:
        return None


def pairs(setting: dict[str, object]) -> set[tuple[tuple[str, object], tuple[str, object]]]:
    """Every pair of (choice, value) that `setting` holds."""
    return set(itertools.combinations(setting.items(), 2))


def variants() -> dict[str, ModelConfig]:
    """A covering set of `choices()` that ModelConfig accepts, by name: every value of every choice, and every pair
    of values of two choices, appears in at least one variant (all pairs, not all combinations: the full product
    grows by a factor with every choice added, the pairs only by their count). Built greedily, deterministically:
    each next variant is the accepted combination that covers the most pairs not yet covered, the defaults first."""
    names = list(choices())
    candidates = [dict(zip(names, values)) for values in itertools.product(*choices().values())]
    default = {name: getattr(TINY, name) for name in names}  # first, so that the sweep holds the default model
    candidates = [default] + [c for c in candidates if c != default and accepted(c) is not None]
    uncovered = set().union(*(pairs(c) for c in candidates))
    made: dict[str, ModelConfig] = {}
    while uncovered:
        best = max(candidates, key=lambda c: len(pairs(c) & uncovered))
        uncovered -= pairs(best)
        # named by what differs from the defaults: a Literal's value, a bool's name or no_name
        changed = ",".join(
            (k if v else f"no_{k}") if isinstance(v, bool) else str(v) for k, v in best.items() if v != default[k]
        )
        made[changed or "defaults"] = cast(ModelConfig, accepted(best))
    return made


VARIANTS = variants()


def test_the_sweep_covers_every_pair_of_values_of_two_choices():
    new_options = {"positions", "scale_embedding", "output_bias"}
    assert {"activation", "pre_norm", "share_all_embeddings", "tie_output", "arch"} | new_options <= set(choices())
    assert set(choices()["activation"]) == {"relu", "gelu", "swish"}
    for (a, values_a), (b, values_b) in itertools.combinations(choices().items(), 2):
        for value_a, value_b in itertools.product(values_a, values_b):
            covered = any(getattr(c, a) == value_a and getattr(c, b) == value_b for c in VARIANTS.values())
            # a pair left out must be one that ModelConfig refuses whatever the other choices are
            assert covered or accepted({a: value_a, b: value_b}) is None, (a, value_a, b, value_b)
    assert len(VARIANTS) < math.prod(len(values) for values in choices().values())  # a covering set, not all


def test_an_activation_the_step_does_not_know_is_an_error():
    with pytest.raises(ValueError, match="tanh"):
        activation("tanh")


def build(config: ModelConfig) -> Transformer:
    torch.manual_seed(0)
    model = Transformer(config).eval()
    with torch.no_grad():  # LayerNorms away from their (1, 0) start, so that a swapped one would show
        for name, p in model.named_parameters():
            if "norm" in name or name == "output_proj.bias":  # the output bias too, away from its zero start
                p.add_(0.2 * torch.randn_like(p))
    return model


def source() -> tuple[torch.Tensor, torch.Tensor]:
    """Three sentences of different lengths, right-padded."""
    g = torch.Generator().manual_seed(1)
    src_len = torch.tensor([7, 3, 5])
    src = torch.randint(5, VOCAB, (3, 7), generator=g)
    src[torch.arange(7) >= src_len[:, None]] = PAD
    return src, src_len


def target() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    tgt_in = torch.randint(5, VOCAB, (3, 6), generator=g)
    tgt_in[:, 0] = BOS
    return tgt_in


def step_through(stepper, tgt_in: torch.Tensor) -> torch.Tensor:
    """Feed tgt_in one column at a time through the stepper: (batch, tgt_len, vocab) log-probs."""
    memory, cache, steps = stepper.encode(*source()), None, []
    for t in range(tgt_in.size(1)):
        log_probs, cache = stepper.decode_step(tgt_in[:, t], memory, cache)
        steps.append(log_probs)
    return torch.stack(steps, dim=1)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("relaid", [False, True], ids=["own", "relaid"])
@torch.inference_mode()
def test_cached_steps_equal_the_teacher_forced_pass(variant, relaid):
    model = build(VARIANTS[variant])
    tgt_in = target()
    full = F.log_softmax(model(*source(), tgt_in), dim=-1)  # (batch, tgt_len, vocab)
    stepped = step_through(model.stepper(relaid=relaid), tgt_in)
    assert stepped.dtype == torch.float32
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=0)


def decode(stepper, steps: int = 5) -> list[torch.Tensor]:
    """Log-probs of a few steps the way beam search takes them: the first from BOS, then two hypotheses per
    sentence, then the beams followed (rows swapped), then sentence 1 finished and dropped."""
    g = torch.Generator().manual_seed(2)
    memory = stepper.encode(*source())
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
def test_relaid_steps_equal_the_models_own_through_reorders(variant):
    model = build(VARIANTS[variant])
    for ours, theirs in zip(decode(model.stepper(relaid=True)), decode(model), strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("relaid", [False, True], ids=["own", "relaid"])
@torch.inference_mode()
def test_caches_equal_the_teacher_forced_keys_and_values(relaid):
    """The self-attention cache after two steps holds the keys and values the full pass computes."""
    model = build(TINY)
    tgt_in = target()[:, :2]
    _, cache = model.stepper(relaid=relaid).decode_step(tgt_in[:, 0], model.encode(*source()), None)
    _, cache = model.stepper(relaid=relaid).decode_step(tgt_in[:, 1], model.encode(*source()), cache)
    assert cache.length == 2
    layer = next(iter(model.decoder_layers()))
    h = model.embed(tgt_in, model.tgt_embed)
    _, k, v = (layer.self_attn.split_heads(p) for p in layer.self_attn.qkv_proj(layer.self_attn_norm(h)).chunk(3, -1))
    assert cache.self_k[0].shape == (3, TINY.n_heads, 2, TINY.d_model // TINY.n_heads)
    torch.testing.assert_close(cache.self_k[0], k, atol=1e-6, rtol=0)
    torch.testing.assert_close(cache.self_v[0], v, atol=1e-6, rtol=0)


@pytest.mark.parametrize("matmul_dtype", [None, torch.bfloat16])
@torch.inference_mode()
def test_bf16_autocast_relaid_steps_equal_the_models_own(matmul_dtype):
    model = build(TINY)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference = decode(model)
        stepped = decode(model.stepper(relaid=True, dtype=matmul_dtype))
    for ours, theirs in zip(stepped, reference, strict=True):
        assert ours.dtype == torch.float32
        # autocast casts the float32 weights to the same bf16 values that matmul_dtype keeps; the products
        # differ only in the weights' layout
        torch.testing.assert_close(ours, theirs, atol=1e-3, rtol=0)


@torch.inference_mode()
def test_steps_record_the_attention_the_teacher_forced_pass_records():
    model = build(TINY)
    tgt_in = target()
    with recording_attention() as full:
        model(*source(), tgt_in)
    with recording_attention() as stepped:
        step_through(model.stepper(relaid=True), tgt_in)
    layers = TINY.dec_layers
    for i in range(layers):
        whole = [w for name, w in full if name == f"decoder.{i}.cross"]
        steps = [w for name, w in stepped if name == f"decoder.{i}.cross"]
        assert len(whole) == 1 and len(steps) == tgt_in.size(1)
        torch.testing.assert_close(torch.cat(steps, dim=2), whole[0], atol=1e-5, rtol=0)
        self_steps = [w for name, w in stepped if name == f"decoder.{i}.self"]
        last = [w for name, w in full if name == f"decoder.{i}.self"][0][:, :, -1:, :]  # the last row sees all
        torch.testing.assert_close(self_steps[-1], last, atol=1e-5, rtol=0)


def test_relaid_weights_are_a_snapshot_and_training_models_are_refused():
    model = build(TINY)
    stepper = model.stepper(relaid=True)
    assert stepper.output.weight.data_ptr() != model.output_proj.weight.data_ptr()  # its own (in, out) copy
    assert stepper.output.weight.shape == (TINY.d_model, VOCAB) and stepper.output.weight.is_contiguous()
    with pytest.raises(ValueError, match="eval mode"):
        model.train().stepper(relaid=True)


@pytest.mark.parametrize("relaid", [False, True], ids=["own", "relaid"])
def test_past_max_positions_is_the_models_error(relaid):
    model = build(dataclasses.replace(TINY, max_positions=2))
    with torch.inference_mode(), pytest.raises(ValueError, match="max_positions"):
        decode(model.stepper(relaid=relaid), steps=3)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_the_pytorch_engine_searches_with_relaid_weights_on_the_cpu(tiny_model_dir, precision):
    from nmt.model import Stepper
    from nmt.translate import Translator

    translator = Translator.load(tiny_model_dir, DecodeConfig(beam_size=3), precision=precision)
    assert isinstance(translator.stepper, Stepper)
    output = translator.stepper.output
    # int8: the quantised modules are called as they are (their packed weights have their own layout)
    assert isinstance(output, torch.nn.Module) == (precision == "int8")
    if precision == "bf16":  # cast once, not by autocast at every product
        assert output.weight.dtype == torch.bfloat16
    assert translator.with_config(beam_size=1).stepper is translator.stepper  # weights laid out once
    lines = ["a small test .", "two dogs run on the grass", "hello"]
    ours = translator.translate_batch(lines)
    translator.stepper = translator.model  # the modules' own weights, for reference
    theirs = translator.translate_batch(lines)
    assert [t.text for t in ours] == [t.text for t in theirs]
    assert [t.score for t in ours] == pytest.approx([t.score for t in theirs], abs=1e-4)  # float rounding apart
