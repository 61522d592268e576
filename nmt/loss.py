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
        # the weight in the dtype F.linear computes in (bf16 under autocast), and its column sums (d_model,)
        weight_as: Tensor | None = None
        weight_sum = weight.new_zeros(())
        uniform = smoothing / weight.size(0)  # the gradient's constant part, - uniform on every logit
        for chunk in rows.split(LOSS_CHUNK):
            x = states.index_select(0, chunk)  # (chunk, d_model)
            logits = F.linear(x, weight)  # (chunk, vocab), in the autocast dtype if any
            loss, nll, grad_logits = _smoothed_loss_and_gradient(logits, target.index_select(0, chunk), smoothing)
            if weight_as is None:
                weight_as = weight.to(logits.dtype)
                weight_sum = weight_as.sum(dim=0, dtype=torch.float32)  # (d_model,)
            # F.linear's backward: two matmuls in the forward's dtype, each result cast to its input's dtype; the
            # constant part added to their results as the rank-one term it is (vocab / d_model times less work)
            x_as, grad_logits = x.to(logits.dtype), grad_logits.to(logits.dtype)
            grad_x = (grad_logits @ weight_as).to(states.dtype)
            grad_w = (grad_logits.t() @ x_as).to(weight.dtype)
            if uniform:
                grad_x.sub_(weight_sum, alpha=uniform)
                grad_w.sub_(x_as.sum(dim=0, dtype=torch.float32), alpha=uniform)
            grad_states.index_copy_(0, chunk, grad_x)
            grad_weight += grad_w
            loss_sum, nll_sum = loss_sum + loss, nll_sum + nll  # summed on the device: no sync here
        grad_states.mul_(1.0 / divisor)
        grad_weight.mul_(1.0 / divisor)
        ctx.save_for_backward(grad_states, grad_weight)
        ctx.mark_non_differentiable(loss_sum, nll_sum)
        return loss_sum / divisor, loss_sum, nll_sum

    @staticmethod
    def backward(ctx: Any, grad: Tensor, *unused: Any) -> tuple[Tensor | None, ...]:
        grad_states, grad_weight = ctx.saved_tensors
        return grad_states * grad, grad_weight * grad, None, None, None, None


def _smoothed_loss_and_gradient(logits: Tensor, target: Tensor, smoothing: float) -> tuple[Tensor, Tensor, Tensor]:
    """`label_smoothed_loss` of logits (rows, vocab) without padding, and the float32 gradient (rows, vocab) of its
    sum with respect to the logits, but for a constant: written out instead of taken by autograd (which keeps
    log_softmax's output and runs the gather, mean and log_softmax backwards as further passes over rows x vocab
    floats). Per row, with p = softmax(z),
        loss = - (1 - s) log p_y - s mean(log p),    d loss / d z = p - (1 - s) onehot(y) - s / vocab;
    the gradient returned leaves out the constant - s / vocab (`_ChunkedLoss` adds its share to the matmuls'
    results, which are vocab / d_model times smaller). It is made in place of the log-probabilities."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    nll = -log_probs.gather(1, target[:, None]).sum()
    loss = nll if smoothing == 0.0 else (1.0 - smoothing) * nll - smoothing * log_probs.mean(dim=-1).sum()
    grad = log_probs.exp_()  # p, in place
    grad.scatter_add_(1, target[:, None], grad.new_full((len(target), 1), -(1.0 - smoothing)))
    return loss, nll, grad
