"""Beam, greedy and sampled search over any model that can take one decoding step.
Knows nothing about SentencePiece, files or the model class: ids in, ids and scores out.

Every function decodes a whole batch at once. Each output position is one `decode_step` over all
live hypotheses of all sentences, and finished sentences leave the batch (`model.reorder` shrinks
memory and cache), so the late steps only pay for the sentences that are still being translated.
The host waits for the device once per step, to learn which sentences have finished."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol, TypeAlias

import torch
from torch import Tensor

from nmt.config import DecodeConfig
from nmt.hypotheses import Hypothesis, max_lengths, normalise
from nmt.processors import Processor, process, processors

Memory: TypeAlias = Any  # whatever `encode` returns; search only passes it back to the model
KVCache: TypeAlias = Any  # likewise for the decoder state


class StepModel(Protocol):
    def encode(self, src: Tensor, src_len: Tensor) -> Memory: ...
    def decode_step(self, tokens: Tensor, memory: Memory, cache: KVCache | None) -> tuple[Tensor, KVCache]:
        """Log-probs (rows, vocab) of the next token, a tensor the search then owns (it writes -inf into the
        padding column: `never_pad`), and the cache one position longer."""
        ...

    def reorder(self, memory: Memory, cache: KVCache, index: Tensor) -> tuple[Memory, KVCache]:
        """index (sentences, rows_each): new row (i, j) continues old row index[i, j]; the rows of
        one new sentence all come from one old sentence (so a model may keep per-sentence state once)."""


def never_pad(log_probs: Tensor, pad_id: int) -> Tensor:
    """The step's log-probs (rows, vocab) with padding impossible, in place: no output holds pad, whatever the
    model gives it (transformers bans it in Marian's outputs too, whose decoder starts from it). The other tokens
    keep the model's own log-probs, not renormalised, so nmt's own models, which give pad next to nothing, decode as
    before. In place: one column written, where a copy would cost a pass over rows x vocab at every step."""
    log_probs[:, pad_id] = -math.inf
    return log_probs


# ---------------------------------------------------------------------------------------------
# one hypothesis per sentence: greedy and sampling


def _single_path(
    model: StepModel,
    src: Tensor,
    src_len: Tensor,
    choose: Callable[[Tensor], Tensor],
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_len_a: float,
    max_len_b: int,
    length_penalty: float,
    normalize: str,
    shape: Sequence[Processor] = (),
) -> list[Hypothesis]:
    """Extend one hypothesis per sentence with `choose(shaped log_probs) -> tokens` until EOS or the limit; the
    log-probabilities reported are the model's own."""
    batch, device = src.size(0), src.device
    if batch == 0:
        return []
    limits = max_lengths(src_len, max_len_a, max_len_b)
    out = torch.full((batch, max(limits) + 1), eos_id, dtype=torch.long, device=device)  # by input sentence
    length = torch.zeros(batch, dtype=torch.long, device=device)  # tokens decoded, EOS included
    log_prob = torch.zeros(batch, device=device)
    alive = torch.arange(batch, device=device)  # input index of each row still decoding
    limit = torch.tensor(limits, device=device)  # (n,) for the alive rows

    memory = model.encode(src, src_len)
    cache = None
    tokens = torch.full((batch,), bos_id, dtype=torch.long, device=device)
    for t in range(max(limits) + 1):
        log_probs, cache = model.decode_step(tokens, memory, cache)  # (n, vocab)
        log_probs = never_pad(log_probs.float(), pad_id)
        shaped = process(shape, out[alive, :t], log_probs) if shape else log_probs
        # a hypothesis that reaches its limit is ended, not dropped
        tokens = torch.where(limit <= t, eos_id, choose(shaped))  # (n,)
        log_prob[alive] += log_probs.gather(1, tokens[:, None]).squeeze(1)
        out[alive, t] = tokens
        length[alive] = t + 1
        keep = (tokens != eos_id).nonzero().squeeze(1)  # the one host-device sync of the step
        if len(keep) == 0:
            break
        if len(keep) < len(tokens):
            memory, cache = model.reorder(memory, cache, keep[:, None])
            alive, limit, tokens = alive[keep], limit[keep], tokens[keep]

    ids, lengths, log_probs_ = out.tolist(), length.tolist(), log_prob.tolist()
    return [
        Hypothesis(ids[i][: n - 1], normalise(lp, n, length_penalty=length_penalty, normalize=normalize), lp)
        for i, (n, lp) in enumerate(zip(lengths, log_probs_))
    ]


@torch.inference_mode()
def greedy(
    model: StepModel,
    src: Tensor,
    src_len: Tensor,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_len_a: float = 1.2,
    max_len_b: int = 10,
    length_penalty: float = 1.0,
    normalize: str = "gnmt",
    shape: Sequence[Processor] = (),
) -> list[Hypothesis]:
    """The most probable next token (after the `shape` processors) at every step; one hypothesis per sentence,
    in input order.

    Scores are normalised exactly as `beam_search` does, so a beam of one gives the same tokens and
    scores when given the same settings and no processors."""
    return _single_path(
        model,
        src,
        src_len,
        lambda log_probs: log_probs.argmax(dim=-1),
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        max_len_a=max_len_a,
        max_len_b=max_len_b,
        length_penalty=length_penalty,
        normalize=normalize,
        shape=shape,
    )


def _sampling_probs(log_probs: Tensor, temperature: float, top_k: int, top_p: float) -> Tensor:
    """Tempered, truncated next-token distribution (rows, vocab) to draw from."""
    logits = log_probs / temperature
    if 0 < top_k < logits.size(-1):
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (rows, 1)
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p < 1.0:
        # nucleus: the most probable tokens until their mass reaches top_p; the first is always kept
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs
        sorted_logits = sorted_logits.masked_fill(mass_before >= top_p, -math.inf)
        logits = torch.full_like(logits, -math.inf).scatter(1, order, sorted_logits)
    return logits.softmax(dim=-1)


@torch.inference_mode()
def sample(
    model: StepModel,
    src: Tensor,
    src_len: Tensor,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    max_len_a: float = 1.2,
    max_len_b: int = 10,
    length_penalty: float = 1.0,
    normalize: str = "gnmt",
    shape: Sequence[Processor] = (),
) -> list[Hypothesis]:
    """Draw one output per sentence: at each step a token from the model's distribution (after the `shape`
    processors) at `temperature`, cut to the `top_k` most probable (0: all) and/or to the smallest set holding
    `top_p` of the mass (1.0: all). The same `generator` state (on src's device) gives the same output.

    `log_prob` and `score` are those of the model itself (temperature 1, nothing cut away), so a
    sample can be compared with the greedy or beam output."""

    def draw(log_probs: Tensor) -> Tensor:
        probs = _sampling_probs(log_probs, temperature, top_k, top_p)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    return _single_path(
        model,
        src,
        src_len,
        draw,
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        max_len_a=max_len_a,
        max_len_b=max_len_b,
        length_penalty=length_penalty,
        normalize=normalize,
        shape=shape,
    )


# ---------------------------------------------------------------------------------------------
# beam search


class _Candidates(NamedTuple):
    """A step's 2 * beam best extensions of each live sentence, best first: each (n, k)."""

    scores: Tensor  # total log-prob of the extended hypothesis
    tokens: Tensor  # the token it ends with
    rows: Tensor  # the row (of history, over n * beams) it extends
    is_eos: Tensor  # whether that token is EOS


def _at_limit(
    shaped: Tensor, log_probs: Tensor, limit: Tensor, t: int, beams: int, eos_id: int, device: torch.device
) -> Tensor:
    """Only EOS is left at a sentence's length limit (whatever the processors said of it).

    shaped, log_probs: (n * beams, vocab), the processed and the model's own; limit: (n,).
    Returns (n * beams, vocab)."""
    vocab = log_probs.size(-1)
    ended = (limit <= t).repeat_interleave(beams)[:, None]
    only_eos = log_probs.masked_fill(torch.arange(vocab, device=device) != eos_id, -math.inf)
    return torch.where(ended, only_eos, shaped)


def _candidates(log_probs: Tensor, scores: Tensor, beam: int, eos_id: int, device: torch.device) -> _Candidates:
    """One search step: rank every extension of every live hypothesis by total log-prob.

    log_probs: (n * beams, vocab), the step's shaped log-probabilities; scores: (n, beams), the total log-prob
    of each live hypothesis. Returns the k = min(2 * beam, beams * vocab) best of each sentence, each (n, k)."""
    n, beams = scores.shape
    vocab = log_probs.size(-1)
    # the k best extensions of a sentence are among the k best of each of its beams
    k = min(2 * beam, beams * vocab)
    per_beam = min(k, vocab)
    beam_log_probs, beam_tokens = log_probs.topk(per_beam, dim=1)  # (n * beams, per_beam)
    candidates = (scores.view(-1, 1) + beam_log_probs).view(n, beams * per_beam)
    cand_scores, cand_index = candidates.topk(k, dim=1)  # (n, k), best first
    cand_tokens = beam_tokens.view(n, beams * per_beam).gather(1, cand_index)
    cand_rows = torch.arange(n, device=device)[:, None] * beams + cand_index // per_beam  # rows of history
    return _Candidates(cand_scores, cand_tokens, cand_rows, cand_tokens == eos_id)


def _go_on(cand: _Candidates, beam: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """The best `beam` candidates of each sentence that do not end: their scores, rows and tokens, each (n, beam)."""
    k = cand.scores.size(1)
    rank = torch.arange(k, device=device)
    go_on = torch.where(cand.is_eos, rank + k, rank).argsort(dim=1)[:, :beam]  # (n, beam)
    next_scores = cand.scores.gather(1, go_on)
    next_scores = next_scores.masked_fill(cand.is_eos.gather(1, go_on), -math.inf)  # tiny vocabularies only
    return next_scores, cand.rows.gather(1, go_on), cand.tokens.gather(1, go_on)


class _Finished:
    """The finished hypotheses, by input sentence; slot `beam` is a bin for those that come too late."""

    def __init__(self, batch: int, beam: int, steps: int, eos_id: int, device: torch.device) -> None:
        self.beam = beam
        self.tokens = torch.full((batch, beam + 1, steps), eos_id, dtype=torch.long, device=device)
        self.log_prob = torch.full((batch, beam + 1), -math.inf, device=device)
        self.length = torch.zeros((batch, beam + 1), dtype=torch.long, device=device)  # EOS included
        self.count = torch.zeros(batch, dtype=torch.long, device=device)

    def add(self, t: int, alive: Tensor, history: Tensor, cand: _Candidates) -> None:
        """Finish the hypotheses that end in EOS among the best `beam` candidates, in the next free slots.

        alive: (n,) input index of each live sentence; history: (n * beams, t) tokens without BOS."""
        beam = self.beam
        ends = cand.is_eos[:, :beam] & (cand.scores[:, :beam] > -math.inf)  # (n, beam)
        slot = self.count[alive][:, None] + ends.cumsum(dim=1) - 1
        slot = torch.where(ends & (slot < beam), slot, beam)
        sentence = alive[:, None].expand_as(slot)
        self.tokens[sentence, slot, :t] = history[cand.rows[:, :beam]]
        self.log_prob[sentence, slot] = cand.scores[:, :beam]
        self.length[sentence, slot] = t + 1
        self.count[alive] = (self.count[alive] + ends.sum(dim=1)).clamp(max=beam)

    def ranked(self, config: DecodeConfig) -> list[list[Hypothesis]]:
        """The `config.nbest` best of each sentence by `normalise` (length counted with EOS), best first."""
        ids, lengths, log_prob, count = (
            self.tokens.tolist(),
            self.length.tolist(),
            self.log_prob.tolist(),
            self.count.tolist(),
        )
        results = []
        for i in range(len(ids)):
            hyps = [
                Hypothesis(
                    path[: n - 1],
                    normalise(lp, n, length_penalty=config.length_penalty, normalize=config.normalize),
                    lp,
                )
                for path, n, lp in zip(ids[i][: count[i]], lengths[i], log_prob[i])
            ]
            hyps.sort(key=lambda h: h.score, reverse=True)
            results.append(hyps[: config.nbest])
        return results


class _Live(NamedTuple):
    """The hypotheses still searched: n live sentences of `beams` hypotheses each."""

    alive: Tensor  # (n,) input index of each live sentence
    limit: Tensor  # (n,) its output length limit
    scores: Tensor  # (n, beams) total log-prob; one beam until the first step
    history: Tensor  # (n * beams, t) tokens without BOS
    tokens: Tensor  # (n * beams,) the last token of each, the next step's input

    @staticmethod
    def start(limits: list[int], bos_id: int, device: torch.device) -> _Live:
        """One hypothesis (just BOS) per input sentence."""
        batch = len(limits)
        return _Live(
            alive=torch.arange(batch, device=device),
            limit=torch.tensor(limits, device=device),
            scores=torch.zeros((batch, 1), device=device),
            history=torch.zeros((batch, 0), dtype=torch.long, device=device),
            tokens=torch.full((batch,), bos_id, dtype=torch.long, device=device),
        )

    def follow(self, keep: Tensor, rows: Tensor, next_scores: Tensor, next_tokens: Tensor) -> _Live:
        """The next step's hypotheses: of the (n, beam) that go on, those of the sentences `keep` (n',), which
        continue `rows` (n', beam) of history."""
        tokens = next_tokens[keep].flatten()
        history = torch.cat([self.history[rows.flatten()], tokens[:, None]], dim=1)
        return _Live(self.alive[keep], self.limit[keep], next_scores[keep], history, tokens)


@torch.inference_mode()
def beam_search(
    model: StepModel,
    src: Tensor,
    src_len: Tensor,
    config: DecodeConfig,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    unk_id: int | None = None,
    shape: Sequence[Processor] | None = None,
) -> list[list[Hypothesis]]:
    """The `config.nbest` best outputs of each sentence, best first, in input order. The step's log-probabilities
    are shaped by `shape` (default: the processors `config` asks for; unk_penalty needs `unk_id`), and the scores
    add up the shaped ones.

    Each sentence keeps `beam_size` live hypotheses. At every step the 2 * beam_size best
    extensions are ranked by total log-prob; those ending in EOS among the first beam_size are
    finished, and the best beam_size others go on. A sentence is done once it has beam_size
    finished hypotheses, or at its length limit, where every live hypothesis is ended with EOS.
    The finished ones are then ranked by `normalise` (length counted with EOS). A list is shorter
    than nbest only if the model gives every other continuation zero probability."""
    beam = config.beam_size
    shape = processors(config, eos_id=eos_id, unk_id=unk_id) if shape is None else shape
    batch, device = src.size(0), src.device
    if batch == 0:
        return []
    limits = max_lengths(src_len.tolist(), config.max_len_a, config.max_len_b)
    steps = max(limits) + 1
    finished = _Finished(batch, beam, steps, eos_id, device)

    live = _Live.start(limits, bos_id, device)
    min_limit = min(limits)  # of the sentences still searched
    memory = model.encode(src, src_len)
    cache = None
    for t in range(steps):
        n, beams = live.scores.shape
        log_probs, cache = model.decode_step(live.tokens, memory, cache)  # (n * beams, vocab)
        log_probs = never_pad(log_probs.float(), pad_id)
        shaped = process(shape, live.history, log_probs) if shape else log_probs
        if t >= min_limit:
            shaped = _at_limit(shaped, log_probs, live.limit, t, beams, eos_id, device)
        cand = _candidates(shaped, live.scores, beam, eos_id, device)
        finished.add(t, live.alive, live.history, cand)
        next_scores, next_rows, next_tokens = _go_on(cand, beam, device)
        done = (finished.count[live.alive] >= beam) | (live.limit <= t)
        keep = (~done).nonzero().squeeze(1)  # the one host-device sync of the step
        if len(keep) == 0:
            break
        rows = next_rows[keep]  # (n', beam): expands to beams, follows the beams, drops finished sentences
        memory, cache = model.reorder(memory, cache, rows)
        live = live.follow(keep, rows, next_scores, next_tokens)
        if len(keep) < n:
            min_limit = int(live.limit.min())

    return finished.ranked(config)
