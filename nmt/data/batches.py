"""Batching: token-budgeted batches of sentence pairs (sorted by length, shuffled by seed) and the padded
`Batch` tensors a model takes, for training (`TrainingData`, an epoch's order fixed by (seed, epoch)),
validation and translation.

Knows nothing about models, search or text files: an id store (`ParallelIds`) in, padded id tensors out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nmt.data.store import ParallelIds

if TYPE_CHECKING:  # torch is imported where batches are built, so reading ids stays light
    import torch


@dataclass
class Batch:
    """A padded batch. src ends with EOS; tgt_in starts with BOS and tgt_out ends with EOS."""

    src: torch.Tensor  # (batch, src_len) long, right-padded with pad_id
    src_len: torch.Tensor  # (batch,) long
    tgt_in: torch.Tensor  # (batch, tgt_len) long
    tgt_out: torch.Tensor  # (batch, tgt_len) long, pad_id where there is no target
    index: torch.Tensor  # (batch,) long: positions of these pairs in their split
    n_tokens: int  # real target tokens (EOS included, padding excluded)
    rows: torch.Tensor  # (n_tokens,) long: where tgt_out.flatten() is not padding (found here, not on a GPU)

    def to(self, device: torch.device) -> Batch:
        """On `device`; copies from pinned memory (see `pin`) to a GPU do not wait for each other."""
        src, src_len, tgt_in, tgt_out = (
            t.to(device, non_blocking=True) for t in (self.src, self.src_len, self.tgt_in, self.tgt_out)
        )
        return Batch(
            src,
            src_len,
            tgt_in,
            tgt_out,
            self.index,
            self.n_tokens,
            self.rows.to(device, non_blocking=True),
        )

    def pin(self) -> Batch:
        """In page-locked memory, from where a GPU copies it without the host waiting."""
        src, src_len, tgt_in, tgt_out = (t.pin_memory() for t in (self.src, self.src_len, self.tgt_in, self.tgt_out))
        return Batch(
            src,
            src_len,
            tgt_in,
            tgt_out,
            self.index,
            self.n_tokens,
            self.rows.pin_memory(),
        )


def collate(data: ParallelIds, index: np.ndarray, pad_id: int, bos_id: int, eos_id: int) -> Batch:
    """Build one padded batch from the pairs at `index`."""
    import torch

    src_lens = data.src_lens[index] + 1  # + EOS
    tgt_lens = data.tgt_lens[index] + 1  # + BOS (in) / EOS (out)
    n = len(index)
    src = np.full((n, int(src_lens.max())), pad_id, dtype=np.int64)
    tgt_in = np.full((n, int(tgt_lens.max())), pad_id, dtype=np.int64)
    tgt_out = np.full_like(tgt_in, pad_id)
    for row, i in enumerate(index):
        s, t = data.src(int(i)), data.tgt(int(i))
        src[row, : len(s)] = s
        src[row, len(s)] = eos_id
        tgt_in[row, 0] = bos_id
        tgt_in[row, 1 : len(t) + 1] = t
        tgt_out[row, : len(t)] = t
        tgt_out[row, len(t)] = eos_id
    return Batch(
        torch.from_numpy(src),
        torch.from_numpy(src_lens.astype(np.int64)),
        torch.from_numpy(tgt_in),
        torch.from_numpy(tgt_out),
        torch.from_numpy(np.asarray(index, dtype=np.int64)),
        int(tgt_lens.sum()),
        torch.from_numpy(np.flatnonzero(tgt_out != pad_id)),
    )


def token_batches(src_lens: np.ndarray, tgt_lens: np.ndarray, batch_tokens: int, seed: int | None) -> list[np.ndarray]:
    """Group sentence indices into batches of at most `batch_tokens` padded tokens.

    Sorting by length (ties broken at random when a seed is given) keeps padding minimal; the batches
    themselves come back shuffled with that seed, or in length order when seed is None. A sentence
    longer than the budget still gets a batch of its own rather than being dropped.
    """
    n = len(src_lens)
    rng = np.random.default_rng(seed) if seed is not None else None
    tiebreak = rng.permutation(n) if rng is not None else np.arange(n)
    # +1 for EOS/BOS; the padded cost of a batch is its size times its longest side
    cost = np.maximum(src_lens, tgt_lens) + 1
    order = np.lexsort((tiebreak, src_lens, tgt_lens))
    batches: list[np.ndarray] = []
    start, longest = 0, 0
    for pos, c in enumerate(cost[order].tolist()):  # plain ints: millions of sentences in about a second
        longest_if_added = max(longest, c)
        if pos > start and longest_if_added * (pos - start + 1) > batch_tokens:
            batches.append(order[start:pos])
            start, longest_if_added = pos, c
        longest = longest_if_added
    if start < n:
        batches.append(order[start:n])
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


class TrainingData:
    """A prepared training split as one run sees it: pairs longer than it allows left out (an index over
    the mapped arrays, not a copy), and each epoch's token batches, whose order depends only on
    (seed, epoch), so that resuming mid-epoch replays it."""

    def __init__(self, path: Path, batch_tokens: int, seed: int, max_src_len: int, max_tgt_len: int) -> None:
        self.pairs = ParallelIds.load(path)
        keep = np.flatnonzero((self.pairs.src_lens <= max_src_len) & (self.pairs.tgt_lens <= max_tgt_len))
        self.skipped_long = len(self.pairs) - len(keep)
        if self.skipped_long:
            self.pairs = self.pairs.select(keep)
        self.batch_tokens, self.seed = batch_tokens, seed

    def __len__(self) -> int:
        return len(self.pairs)

    def epoch(self, epoch: int) -> list[np.ndarray]:
        """The batches of one epoch, in order: arrays of positions in `pairs`."""
        seed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])
        return token_batches(self.pairs.src_lens, self.pairs.tgt_lens, self.batch_tokens, seed)

    def batch(self, index: np.ndarray, pad_id: int, bos_id: int, eos_id: int) -> Batch:
        return collate(self.pairs, index, pad_id, bos_id, eos_id)

    def target_tokens(self, index: np.ndarray) -> int:
        """`Batch.n_tokens` of the batch at `index`, without making it."""
        return int(self.pairs.tgt_lens[index].sum()) + len(index)  # + EOS


def iterate_batches(
    data: ParallelIds, batch_tokens: int, seed: int | None, pad_id: int, bos_id: int, eos_id: int, skip: int = 0
) -> Iterator[Batch]:
    """Batches of one pass over `data`, skipping the first `skip` (for exact resumption)."""
    for index in token_batches(data.src_lens, data.tgt_lens, batch_tokens, seed)[skip:]:
        yield collate(data, index, pad_id, bos_id, eos_id)
