"""Label-smoothed cross-entropy that ignores padding.
Knows nothing about data or search: logits and targets in, summed losses out."""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor

LOSS_CHUNK = 1024  # target tokens whose logits a training step holds at once (see chunked_loss)


def label_smoothed_loss(logits: Tensor, target: Tensor, smoothing: float, pad_id: int) -> tuple[Tensor, Tensor]:
    """Sum over non-pad positions of the smoothed loss and of the plain NLL (for perplexity).

    logits (batch, tgt_len, vocab), target (batch, tgt_len). The smoothed target puts 1 - smoothing on
    the reference token and spreads `smoothing` uniformly over the vocabulary (as torch's
    cross_entropy(label_smoothing=...) does); one log_softmax serves both sums.
    """
    log_probs = F.log_softmax(logits.float(), dim=-1)  # (batch, tgt_len, vocab)
    keep = target != pad_id  # (batch, tgt_len)
    nll = -log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (batch, tgt_len)
    nll = nll.masked_fill(~keep, 0.0).sum()
    if smoothing == 0.0:
        return nll, nll.detach()
    uniform = -log_probs.mean(dim=-1).masked_fill(~keep, 0.0).sum()
    return (1.0 - smoothing) * nll + smoothing * uniform, nll.detach()


def chunked_loss(
    states: Tensor, weight: Tensor, target: Tensor, rows: Tensor, smoothing: float, divisor: float
) -> tuple[Tensor, Tensor, Tensor]:
    """sum(label_smoothed_loss(states @ weight.T, target)) / divisor, to backpropagate, and its loss and NLL sums.

    The logits over the vocabulary are the largest tensors of a training step (tokens x vocabulary, three or
    four times over in the backward pass): here they are made for LOSS_CHUNK target tokens at a time, and never
    for padding. states (batch, tgt_len, d_model) are the decoder's output, weight (vocab, d_model) the output
    projection, rows the positions in target.flatten() that are not padding (`Batch.rows`). Each chunk's
    gradients are computed as soon as its loss is, so the result is one node of the autograd graph and one
    backward pass covers the whole step, as DistributedDataParallel requires; the gradients are those of the
    whole batch's loss at once, summed in another order."""
    return cast(  # autograd.Function.apply is untyped: it returns what `forward` does
        tuple[Tensor, Tensor, Tensor],
        _ChunkedLoss.apply(states.flatten(0, 1), weight, target.flatten(), rows, smoothing, divisor),
    )


class _ChunkedLoss(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, states: Tensor, weight: Tensor, target: Tensor, rows: Tensor, smoothing: float, divisor: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        grad_states, grad_weight = torch.zeros_like(states), torch.zeros_like(weight)
        loss_sum, nll_sum = states.new_zeros((), dtype=torch.float32), states.new_zeros((), dtype=torch.float32)
        for chunk in rows.split(LOSS_CHUNK):
            with torch.enable_grad():
                x, w = states.index_select(0, chunk).detach().requires_grad_(True), weight.detach().requires_grad_(True)
                loss, nll = label_smoothed_loss(F.linear(x, w), target.index_select(0, chunk), smoothing, -1)
                grad_x, grad_w = torch.autograd.grad(loss / divisor, (x, w))
            grad_states.index_copy_(0, chunk, grad_x)
            grad_weight += grad_w
            loss_sum, nll_sum = loss_sum + loss.detach(), nll_sum + nll  # summed on the device: no sync here
        ctx.save_for_backward(grad_states, grad_weight)
        ctx.mark_non_differentiable(loss_sum, nll_sum)
        return loss_sum / divisor, loss_sum, nll_sum

    @staticmethod
    def backward(ctx: Any, grad: Tensor, *unused: Any) -> tuple[Tensor | None, ...]:
        grad_states, grad_weight = ctx.saved_tensors
        return grad_states * grad, grad_weight * grad, None, None, None, None


def token_count(target: Tensor, pad_id: int) -> int:
    return int((target != pad_id).sum())
