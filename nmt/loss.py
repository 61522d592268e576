"""Label-smoothed cross-entropy that ignores padding.
Knows nothing about data or search: logits and targets in, summed losses out."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

LOSS_CHUNK = 1024  # target tokens whose logits a training step holds at once (see loss_backward)


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


def loss_backward(states: Tensor, project: Callable[[Tensor], Tensor], target: Tensor, smoothing: float, pad_id: int,
                  divisor: float) -> tuple[float, float]:
    """Backpropagate sum(label_smoothed_loss(project(states), target)) / divisor; its loss and NLL sums.

    The logits over the vocabulary are the largest tensors of a training step (tokens x vocabulary, three
    or four times over in the backward pass): here they are made for LOSS_CHUNK target tokens at a time,
    and never for padding. states (batch, tgt_len, d_model) are the decoder's output; the gradients are
    those of the whole batch's loss at once, summed in another order."""
    leaf = states.detach().requires_grad_(True)
    flat, flat_target = leaf.flatten(0, 1), target.flatten()  # (batch * tgt_len, d_model), (batch * tgt_len)
    loss_sum, nll_sum = states.new_zeros((), dtype=torch.float32), states.new_zeros((), dtype=torch.float32)
    for rows in (flat_target != pad_id).nonzero().squeeze(1).split(LOSS_CHUNK):
        loss, nll = label_smoothed_loss(project(flat.index_select(0, rows)), flat_target.index_select(0, rows),
                                        smoothing, pad_id)
        (loss / divisor).backward()
        loss_sum, nll_sum = loss_sum + loss.detach(), nll_sum + nll  # summed on the device: one sync, at the end
    if leaf.grad is not None:
        states.backward(leaf.grad)
    return float(loss_sum), float(nll_sum)


def token_count(target: Tensor, pad_id: int) -> int:
    return int((target != pad_id).sum())



