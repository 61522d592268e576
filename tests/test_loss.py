"""Tests for nmt/loss.py: label_smoothed_loss against PyTorch's own cross_entropy, which implements the
same smoothed target (1 - s on the reference, s spread uniformly over the vocabulary) independently."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nmt.loss import label_smoothed_loss
from nmt.tokenizer import SPECIAL

pytestmark = pytest.mark.unit

BATCH, LENGTH, VOCAB = 4, 7, 23


def random_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits (batch, length, vocab) and right-padded targets of different lengths whose words
    include the other special ids (unk, bos, eos), as real targets do."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(BATCH, LENGTH, VOCAB, generator=g) * 3.0
    target = torch.randint(0, VOCAB, (BATCH, LENGTH), generator=g)
    target[target == SPECIAL.pad] = SPECIAL.unk  # padding only where the lengths put it
    target[:, 0] = torch.tensor([SPECIAL.unk, SPECIAL.bos, SPECIAL.eos, SPECIAL.eos])
    lengths = [LENGTH, 5, 3, 1]
    for row, n in enumerate(lengths):
        target[row, n - 1] = SPECIAL.eos
        target[row, n:] = SPECIAL.pad
    return logits, target


def torch_reference(logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
    return F.cross_entropy(
        logits.reshape(-1, VOCAB),
        target.reshape(-1),
        label_smoothing=smoothing,
        ignore_index=SPECIAL.pad,
        reduction="sum",
    )


def test_the_batch_has_padding_and_every_special_id():
    _, target = random_batch()
    present = set(target.flatten().tolist())
    assert {SPECIAL.pad, SPECIAL.unk, SPECIAL.bos, SPECIAL.eos} <= present
    assert 0 < int((target != SPECIAL.pad).sum()) < target.numel()


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_loss_and_nll_equal_torch_cross_entropy(smoothing):
    logits, target = random_batch()
    loss, nll = label_smoothed_loss(logits, target, smoothing, SPECIAL.pad)
    torch.testing.assert_close(loss, torch_reference(logits, target, smoothing), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(nll, torch_reference(logits, target, 0.0), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_padding_contributes_nothing(smoothing):
    """Whatever the logits at padded positions are, the sums stay the same, and so do their gradients
    elsewhere; the logits at padded positions get no gradient."""
    logits, target = random_batch()
    noisy = logits.clone()
    noisy[target == SPECIAL.pad] = torch.randn(int((target == SPECIAL.pad).sum()), VOCAB) * 100.0
    a = logits.clone().requires_grad_(True)
    b = noisy.clone().requires_grad_(True)
    loss_a, nll_a = label_smoothed_loss(a, target, smoothing, SPECIAL.pad)
    loss_b, nll_b = label_smoothed_loss(b, target, smoothing, SPECIAL.pad)
    torch.testing.assert_close(loss_a, loss_b)
    torch.testing.assert_close(nll_a, nll_b)
    loss_a.backward()
    loss_b.backward()
    torch.testing.assert_close(a.grad, b.grad)
    assert a.grad[target == SPECIAL.pad].abs().max() == 0
    assert a.grad[target != SPECIAL.pad].abs().max() > 0


def test_gradient_equals_torch_cross_entropy():
    logits, target = random_batch(seed=3)
    ours = logits.clone().requires_grad_(True)
    theirs = logits.clone().requires_grad_(True)
    label_smoothed_loss(ours, target, 0.1, SPECIAL.pad)[0].backward()
    torch_reference(theirs, target, 0.1).backward()
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-5, atol=1e-6)


def test_nll_is_detached_and_smoothing_penalises_confidence():
    """The NLL part is for reporting (perplexity), never backpropagated. Logits confident in the
    reference have a small NLL, and a smoothed loss well above it (the uniform part penalises the
    improbable words), which grows with the smoothing."""
    _, target = random_batch()
    confident = F.one_hot(target, VOCAB).float() * 10.0
    confident.requires_grad_(True)
    loss, nll = label_smoothed_loss(confident, target, 0.1, SPECIAL.pad)
    assert loss.requires_grad and not nll.requires_grad
    tokens = int((target != SPECIAL.pad).sum())
    assert nll / tokens < 0.01
    assert loss > nll + 0.5 * tokens
    assert label_smoothed_loss(confident, target, 0.3, SPECIAL.pad)[0] > loss


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_chunked_loss_gradients_equal_autograd_of_the_loss(smoothing, precision, monkeypatch):
    """chunked_loss writes the loss's gradient out instead of asking autograd: the states' and the output
    weight's gradients equal autograd's through F.linear and label_smoothed_loss, in float32 and under bf16
    autocast (where both compute the logits and the two gradient matmuls in bf16)."""
    import nmt.loss
    from nmt.loss import chunked_loss
    from nmt.runtime import autocast

    monkeypatch.setattr(nmt.loss, "LOSS_CHUNK", 5)  # several chunks, the last one short
    g = torch.Generator().manual_seed(7)
    states = torch.randn(BATCH, LENGTH, 16, generator=g)
    weight = torch.randn(VOCAB, 16, generator=g) * 0.5
    _, target = random_batch(seed=7)
    rows = (target.flatten() != SPECIAL.pad).nonzero().squeeze(1)
    divisor = float(len(rows))

    ours_s, ours_w = states.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    with autocast(torch.device("cpu"), precision):
        scaled, loss_sum, nll_sum = chunked_loss(ours_s, ours_w, target, rows, smoothing, divisor)
    scaled.backward()
    theirs_s, theirs_w = states.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    with autocast(torch.device("cpu"), precision):
        loss, nll = label_smoothed_loss(F.linear(theirs_s, theirs_w), target, smoothing, SPECIAL.pad)
    (loss / divisor).backward()

    tol = {"rtol": 1e-5, "atol": 1e-6} if precision == "fp32" else {"rtol": 2e-2, "atol": 2e-3}
    assert (float(loss_sum), float(nll_sum)) == pytest.approx((float(loss.detach()), float(nll)), rel=1e-5)
    torch.testing.assert_close(ours_s.grad, theirs_s.grad, **tol)
    torch.testing.assert_close(ours_w.grad, theirs_w.grad, **tol)
    assert ours_s.grad.reshape(-1, 16)[target.flatten() == SPECIAL.pad].abs().max() == 0
