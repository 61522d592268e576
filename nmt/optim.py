"""Adam/AdamW (β2 = 0.98) and the learning-rate schedule: linear warm-up, then inverse square root,
linear or cosine decay. The schedule is a pure function of the step, so resuming needs only the step."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, cast

import torch

from nmt.config import TrainConfig

if TYPE_CHECKING:
    from torch.optim.optimizer import ParamsT


def build_optimizer(params: ParamsT, cfg: TrainConfig, device: torch.device | None = None) -> torch.optim.Optimizer:
    kinds: dict[str, type[torch.optim.Adam] | type[torch.optim.AdamW]] = {
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
    }
    kind = kinds[cfg.optimizer]  # TrainConfig checked the name
    # on CUDA and CPU one fused kernel does the whole update (on CPU: 7.6 ms a step instead of foreach's 21.8 at
    # d_model 256, 3+3 layers, one thread); elsewhere foreach: one kernel launch per group, not per tensor
    fused = device is None or device.type in ("cuda", "cpu")
    return kind(
        params,
        lr=cfg.lr,
        betas=cast("tuple[float, float]", tuple(cfg.betas)),  # tuple(): a hand-made config may hold a list
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        **({"fused": True} if fused else {"foreach": True}),
    )


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for update number `step` (1-based); peaks at cfg.lr after warm-up."""
    step = max(step, 1)
    warmup = max(cfg.warmup_steps, 0)
    if warmup and step <= warmup:
        return cfg.lr * step / warmup
    if cfg.schedule == "inverse_sqrt":
        return cfg.lr * math.sqrt(max(warmup, 1) / step)
    total = max(cfg.max_steps - warmup, 1)  # linear or cosine
    progress = min((step - warmup) / total, 1.0)
    factor = 1.0 - progress if cfg.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * factor


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
