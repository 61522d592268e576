"""One optimizer update: forward and loss over this process's batches (gradient accumulation), backward,
the sums shared with the other processes of the run, clipping, the learning-rate schedule and the optimizer
step; a loss or gradient that is not finite leaves the weights as they were, and `Updater` decides what
happens then (stop, or skip the batch). Knows nothing about checkpoints, validation or the run directory."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from inspect import signature
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from nmt import distributed
from nmt.config import TrainConfig
from nmt.data import Batch
from nmt.distributed import SINGLE, Group
from nmt.errors import TrainingError
from nmt.loss import chunked_loss
from nmt.model import Transformer
from nmt.optim import lr_at, set_lr
from nmt.runtime import autocast

STOP_SIGNALS = ("SIGINT", "SIGTERM")
# With skip_nonfinite, this many skipped batches in a row means the weights themselves have diverged.
MAX_SKIPS_IN_A_ROW = 10

__all__ = ["MAX_SKIPS_IN_A_ROW", "STOP_SIGNALS", "TrainingLoss", "Update", "Updater", "engine", "update"]


@dataclass
class Update:
    """What one optimizer update saw, over all processes: summed loss and NLL over its target tokens; `nonfinite`
    names what became NaN or infinite (the loss or the gradient norm) when the update was not applied; `stop`, the
    signal that asked some process to stop, if any."""

    loss: float
    nll: float
    tokens: int
    nonfinite: tuple[str, float] | None = None
    stop: str | None = None


class TrainingLoss(torch.nn.Module):
    """A model's training loss as one module: what DistributedDataParallel wraps. Returns the loss to backpropagate
    (label-smoothed, summed over the batch's target tokens, divided by `divisor`) and its loss and NLL sums."""

    def __init__(self, model: Transformer, cfg: TrainConfig, device: torch.device) -> None:
        super().__init__()
        self.model, self.smoothing, self.precision, self.device = model, cfg.label_smoothing, cfg.precision, device

    def forward(self, batch: Batch, divisor: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with autocast(self.device, self.precision):
            states = self.model.decode_states(batch.tgt_in, self.model.encode(batch.src, batch.src_len))
            return chunked_loss(
                states, self.model.output_proj.weight, batch.tgt_out, batch.rows, self.smoothing, divisor
            )


def engine(
    model: Transformer, cfg: TrainConfig, device: torch.device, group: Group = SINGLE
) -> TrainingLoss | DistributedDataParallel:
    """What `update` runs: the training loss of `model`, wrapped in DistributedDataParallel on several processes
    (which makes every process start from rank 0's weights)."""
    loss = TrainingLoss(model, cfg, device)
    if not group.distributed:
        return loss
    # the only buffer is the constant table of positions: no need to send it with every forward
    no_buffer_sync: dict[str, Any] = (
        {"forward_sync_buffers": False}
        if "forward_sync_buffers" in signature(DistributedDataParallel).parameters
        else {"broadcast_buffers": False}
    )  # older torch
    return DistributedDataParallel(
        loss,
        device_ids=[device.index] if device.type == "cuda" else None,
        gradient_as_bucket_view=True,
        **no_buffer_sync,
    )


def update(
    engine: TrainingLoss | DistributedDataParallel,
    optimizer: torch.optim.Optimizer,
    batches: list[Batch],
    tokens: int,
    cfg: TrainConfig,
    device: torch.device,
    step: int,
    group: Group = SINGLE,
    stop: str | None = None,
) -> Update:
    """Update number `step`: this process's `batches` (gradient accumulation), the loss normalised by the target
    `tokens` of the batches of all processes, gradients averaged over the processes and clipped; the weights are
    left as they were if the loss or the gradient is not finite. `stop` (a signal name) is shared with the other
    processes; one sync with the device, for the sums and the clipping norm."""
    model: Transformer = engine.module.model if isinstance(engine, DistributedDataParallel) else engine.model
    divisor = tokens / group.world  # DDP averages gradients over the processes: N x (sum / (tokens / N)) / N
    sums = torch.zeros(2 + len(STOP_SIGNALS), dtype=torch.float64, device=device)
    for i, batch in enumerate(batches):
        accumulate = group.distributed and i < len(batches) - 1  # gradients are averaged once, after the last batch
        sync: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        if accumulate:
            assert isinstance(engine, DistributedDataParallel)  # what `engine` builds for a distributed group
            sync = engine.no_sync()
        with sync:
            loss, loss_sum, nll_sum = engine(batch.to(device), divisor)
            loss.backward()
        sums[0] += loss_sum
        sums[1] += nll_sum
    if stop in STOP_SIGNALS:
        sums[2 + STOP_SIGNALS.index(stop)] = 1
    loss_total, nll_total, *stops = distributed.all_sum(sums, group).tolist()
    agreed = next((name for name, n in zip(STOP_SIGNALS, stops) if n), None)
    what, value = "loss", loss_total
    if math.isfinite(loss_total):
        # the norm is needed anyway to clip; an infinite gradient under a finite loss would poison the weights
        max_norm = cfg.clip_norm if cfg.clip_norm > 0 else math.inf
        what, value = "gradient norm", float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm, foreach=True))
    if not math.isfinite(value):
        optimizer.zero_grad(set_to_none=True)
        return Update(loss_total, nll_total, tokens, (what, value), agreed)
    set_lr(optimizer, lr_at(step, cfg))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return Update(loss_total, nll_total, tokens, None, agreed)


# What a skipped update is reported with: its step, what became non-finite, and the value.
Skipped = Callable[[int, str, float], None]


class Updater:
    """The update step as a run takes it: `update` over this process's engine and optimizer, with the rule for a
    loss or gradient that is not finite: training stops (nothing is saved from that step), or with skip_nonfinite
    the batch is skipped and reported through `skipped`, unless MAX_SKIPS_IN_A_ROW were skipped in a row."""

    def __init__(
        self,
        model: Transformer,
        optimizer: torch.optim.Optimizer,
        cfg: TrainConfig,
        device: torch.device,
        group: Group = SINGLE,
        skipped: Skipped | None = None,
    ) -> None:
        self.engine = engine(model, cfg, device, group)
        self.optimizer, self.cfg, self.device, self.group = optimizer, cfg, device, group
        self.skipped = skipped or (lambda step, what, value: None)
        self.skips_in_a_row = 0

    def __call__(self, batches: list[Batch], tokens: int, step: int, stop: str | None = None) -> Update | None:
        """Update number `step` over this process's `batches` (of `tokens` target tokens over all processes); None
        when its batch was skipped."""
        result = update(self.engine, self.optimizer, batches, tokens, self.cfg, self.device, step, self.group, stop)
        if result.nonfinite is None:
            self.skips_in_a_row = 0
            return result
        what, value = result.nonfinite
        if not self.cfg.skip_nonfinite:
            raise TrainingError(
                f"step {step}: the {what} became {value}; nothing was saved from this step. Lower --lr or raise "
                "--warmup-steps, then resume from the last checkpoint with --resume (add --skip-nonfinite to skip "
                "such batches)"
            )
        self.skipped(step, what, value)
        self.skips_in_a_row += 1
        if self.skips_in_a_row >= MAX_SKIPS_IN_A_ROW:
            raise TrainingError(
                f"step {step}: {self.skips_in_a_row} batches in a row gave a non-finite loss or "
                "gradient; the weights have diverged. Lower --lr or raise --warmup-steps"
            )
        return None
