"""Where and how tensors are computed: seeding, device choice, threads, autocast.
Knows nothing about the rest of nmt."""

from __future__ import annotations

import contextlib
import os
import random

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from nmt.errors import ConfigError


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def pick_device(name: str | None = None) -> torch.device:
    """CUDA when available unless a device is named; a named CUDA device must exist."""
    if not name or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r} is not a device name; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def set_threads(threads: int | None) -> int:
    """Use all cores by default (torch's own default can be lower inside containers)."""
    n = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(n)
    return n


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for 'bf16', nothing for 'fp32'.

    On CPU, bf16 attention also takes SDPA's math path (matmul, softmax, matmul, each in bf16):
    the fused CPU attention kernel runs slower in bf16 than in fp32 on sentence-length inputs
    (a training step at d_model 256 ran 5,100 target tokens/s with it, 6,100 without; see
    benchmarks/train_speed.py)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        stack = contextlib.ExitStack()
        stack.enter_context(torch.autocast(device_type=device.type, dtype=torch.bfloat16))
        if device.type == "cpu":
            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
        return stack
    raise ConfigError(f"precision must be 'fp32' or 'bf16', not {precision!r}")
