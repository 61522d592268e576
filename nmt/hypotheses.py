"""The search's vocabulary, shared by every engine: a `Hypothesis` (ids, score, log-probability), how a
finished hypothesis is scored for its length, and how long a source and an output may be. Plain Python: the
PyTorch search (nmt/search.py) and the CTranslate2 engine (nmt/ct2.py) use the same rules without torch."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nmt.config import DecodeConfig


@dataclass(frozen=True)
class Hypothesis:
    """One translation: ids without BOS and EOS, its search score and its total log-probability."""

    tokens: list[int]
    score: float  # log_prob normalised for length as configured (see `normalise`); higher is better
    log_prob: float  # sum of the token log-probs, EOS included (and any unk penalty paid)


def normalise(log_prob: float, length: int, *, length_penalty: float = 1.0, normalize: str = "gnmt") -> float:
    """Score of a finished hypothesis. `length` counts its tokens including EOS (BOS is not counted).

    "gnmt": log_prob / ((5 + length) / 6) ** length_penalty (Wu et al., 2016); alpha 0 is the raw sum.
    "length": log_prob / length, the average log-prob per token."""
    if normalize == "length":
        return log_prob / length
    divisor: float = ((5 + length) / 6) ** length_penalty  # a positive base: never complex
    return log_prob / divisor


def max_source_tokens(max_positions: int, config: DecodeConfig) -> int:
    """Most source tokens (EOS not counted) a model with `max_positions` positions can translate.

    The encoder needs room for EOS; the decoder feeds BOS plus up to a * (n + 1) + b tokens (the
    search's limit for n source tokens and EOS), each at its own position."""
    longest = max_positions - 1
    if config.max_len_a > 0:
        longest = min(longest, int((max_positions - 1 - config.max_len_b) / config.max_len_a) - 1)
    return max(longest, 1)


def max_lengths(src_lens: Iterable[int], max_len_a: float, max_len_b: int) -> list[int]:
    """Most tokens (EOS not counted) each output may have: int(a * src_len + b), src_len without padding."""
    return [max(0, int(max_len_a * n + max_len_b)) for n in src_lens]
