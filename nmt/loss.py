"""Label-smoothed cross-entropy that ignores padding.
Knows nothing about data or search: logits and targets in, summed losses out."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


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


def token_count(target: Tensor, pad_id: int) -> int:
    return int((target != pad_id).sum())



