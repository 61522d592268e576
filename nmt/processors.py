"""Score processors: how a decoding step's log-probabilities are shaped before any search chooses from them
(an <unk> penalty, n-gram repeat blocking, a minimum length), small functions applied in order and shared by
every search strategy in nmt/search.py. Knows nothing about models, tokenizers or the search itself."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeAlias

import torch
from torch import Tensor

from nmt.config import DecodeConfig

Processor: TypeAlias = Callable[[Tensor, Tensor], Tensor]
"""(history (rows, t): the tokens chosen so far, without BOS; log_probs (rows, vocab)) -> log_probs."""


def penalise_unk(unk_id: int, penalty: float) -> Processor:
    """Subtract `penalty` from the log-probability of <unk>."""

    def apply(history: Tensor, log_probs: Tensor) -> Tensor:
        log_probs = log_probs.clone()
        log_probs[:, unk_id] -= penalty
        return log_probs

    return apply


def block_repeats(n: int) -> Processor:
    """-inf for every token that would complete an n-gram already in the hypothesis."""

    def apply(history: Tensor, log_probs: Tensor) -> Tensor:
        t = history.size(1)
        if t < n:
            return log_probs
        grams = history.unfold(1, n, 1)  # (rows, t - n + 1, n): every n-gram so far
        tail = history[:, t - n + 1 :]  # (rows, n - 1): what the next token would follow
        repeats = (grams[:, :, :-1] == tail[:, None, :]).all(dim=-1)  # (rows, t - n + 1)
        banned = torch.zeros_like(log_probs).scatter_add_(1, grams[:, :, -1], repeats.to(log_probs.dtype))
        return log_probs.masked_fill(banned > 0, -math.inf)

    return apply


def forbid_eos_before(min_len: int, eos_id: int) -> Processor:
    """No end of sentence before `min_len` tokens (an output's length limit still ends it)."""

    def apply(history: Tensor, log_probs: Tensor) -> Tensor:
        if history.size(1) >= min_len:
            return log_probs
        log_probs = log_probs.clone()
        log_probs[:, eos_id] = -math.inf
        return log_probs

    return apply


def processors(config: DecodeConfig, *, eos_id: int, unk_id: int | None = None) -> list[Processor]:
    """The processors a decoding config asks for, in the order they apply."""
    chosen: list[Processor] = []
    if config.unk_penalty:
        if unk_id is None:
            raise ValueError("unk_penalty needs the unk id (unk_id=...)")
        chosen.append(penalise_unk(unk_id, config.unk_penalty))
    if config.no_repeat_ngram:
        chosen.append(block_repeats(config.no_repeat_ngram))
    if config.min_len:
        chosen.append(forbid_eos_before(config.min_len, eos_id))
    return chosen


def process(steps: Sequence[Processor], history: Tensor, log_probs: Tensor) -> Tensor:
    """Apply `steps` in order."""
    for step in steps:
        log_probs = step(history, log_probs)
    return log_probs
