"""Where and how tensors are computed: seeding, device choice, threads, autocast, the allocator.
Knows nothing about the rest of nmt. torch is imported by the functions that use it, so that the CTranslate2
engine (which calls `keep_freed_memory`) starts without it."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import random
from typing import TYPE_CHECKING

from nmt.errors import ConfigError

if TYPE_CHECKING:
    import torch


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def pick_device(name: str | None = None) -> torch.device:
    """CUDA when available unless a device is named; a named CUDA device must exist."""
    import torch

    if not name or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"--device {name!r} is not a device name; use cpu, cuda or cuda:N") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def all_cores() -> int:
    """The cores this process may run on (torch's own default thread count can be lower inside containers)."""
    return len(os.sched_getaffinity(0))


def set_threads(threads: int | None, share: int = 1) -> int:
    """All cores by default, or a `share`-th of them each for several processes on one machine."""
    import torch

    n = threads or max(1, all_cores() // share)
    torch.set_num_threads(n)
    return n


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of handing it back to the OS.

    glibc serves each allocation over 32 MB with a fresh mmap and unmaps it when it is freed, so
    the large tensors that training and decoding allocate at every step (activations, logits over
    the vocabulary) are page-faulted in anew every time. Keeping them measured, on this project's
    2-core machine: beam search 17% faster, a bf16 training step 22%, an fp32 one 8%. The cost:
    the process holds on to freed memory until it exits or calls release_freed_memory (training
    does, every so often: see there), and memalign's fragmentation leaves some of
    it unused (beam search on Multi30k: peak RSS 733 MB instead of 603). Process-wide, like
    set_threads, so the commands call it (nmt translate, serve, train), never the library's loaders;
    returns False (and does nothing) where the C library is not glibc."""
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)  # the C library the process already uses
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    limit = 1 << 30  # allocations above 1 GiB still get their own mapping
    return bool(libc.mallopt(m_mmap_threshold, limit)) and bool(libc.mallopt(m_trim_threshold, limit))


RELEASE_EVERY = 100  # updates between two release_freed_memory calls in training (and one after each validation)


def release_freed_memory() -> bool:
    """Hand the freed memory that `keep_freed_memory` keeps back to the OS, once: glibc's malloc_trim(0),
    which gives back every whole free page of every malloc arena, not only the top of the heap.

    Kept memory is reused while the shapes repeat, but never given back, so a process's RSS is the
    highest its heap ever grew, plus fragmentation: the Tatoeba recipe's `nmt train` held 6.5 GB
    after 55 minutes. Most of it comes in jumps: the first validation's unchunked loss over the
    full vocabulary (a 4,096-token batch's logits are 131 MB) grew the heap by 420 MB, kept to the
    end (fp32, 100 validation sentences: RSS 1,104 MiB before it, 1,526 after). The trainer calls
    this after each validation (with its checkpoint) and every RELEASE_EVERY updates: RSS fell to 796
    MiB after the validation and training's own buffers came back in its next update (1,119). That
    update page-faults its buffers in again, as every update would without keep_freed_memory (22%
    slower in bf16), so the cost is about a fifth of one update per RELEASE_EVERY: a few tenths of a
    percent of training time. Measured on the shared 2-core machine (benchmarks/train_memory.py, 25
    updates, a validation every 8): the updates right after a release ran 0.47-1.35x their four
    predecessors' speed, those right after a validation without it 0.77-0.91x: load noise, no cost
    that shows; the trim itself takes milliseconds.
    Returns True where glibc gave memory back, False where there was none to give or the C library
    is not glibc (then it does nothing)."""
    if platform.libc_ver()[0] != "glibc":
        return False
    return bool(ctypes.CDLL(None).malloc_trim(0))


def slow_bf16(device: torch.device) -> str | None:
    """Why bf16 would be slow on `device`, or None where its matrix products run in hardware.

    A CPU without AVX512-BF16 or AMX (oneDNN's own test) emulates them: on an AVX2 EPYC a bf16 matmul
    ran 0.8 GFLOPS against 95 in fp32, and a bf16 training step 13x slower than an fp32 one."""
    import torch

    if device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return (
            "this CPU has no bf16 instructions (AVX512-BF16 or AMX), so bf16 is emulated: many times slower than fp32"
        )
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return f"{torch.cuda.get_device_name(device)} has no native bf16, so bf16 is emulated: slower than fp32"
    return None


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for 'bf16', nothing otherwise ('fp32'; the configs check the names).

    On CPU, bf16 attention also takes SDPA's math path (matmul, softmax, matmul, each in bf16):
    the fused CPU attention kernel runs slower in bf16 than in fp32 on sentence-length inputs
    (measured: a bf16 training step at d_model 256, 3+3 layers, ran 5,100 target tokens/s with
    it, 6,100 without)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if precision != "bf16":
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.autocast(device_type=device.type, dtype=torch.bfloat16))
    if device.type == "cpu":
        stack.enter_context(sdpa_kernel(SDPBackend.MATH))
    return stack
