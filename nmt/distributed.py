"""Training on several processes with PyTorch's own engine: torchrun starts them and sets RANK, WORLD_SIZE
and LOCAL_RANK; each process holds a full copy of the model, reads its own batches, and
DistributedDataParallel averages the gradients. NCCL between GPUs, gloo between CPU processes.

Only what nmt needs on top of torch.distributed: which process this is, the process group, and the few
collectives the trainer makes itself (a sum, a JSON broadcast, the RNG states of every rank)."""

from __future__ import annotations

import ctypes
import json
import os
import signal
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

# How long a collective waits for the other processes; rank 0 validating or writing a checkpoint makes the
# others wait this long at most. A process that dies closes its connections and is noticed at once.
TIMEOUT_ENV = "NMT_DIST_TIMEOUT"  # seconds
DEFAULT_TIMEOUT_S = 30 * 60


@dataclass(frozen=True)
class Group:
    """This process's place in the run; the default is the one process of an ordinary run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1  # processes on this machine

    @property
    def writer(self) -> bool:
        """Rank 0 writes the run directory (log, checkpoints); the others write nothing."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


SINGLE = Group()


def from_environment() -> Group:
    """The group torchrun describes in the environment; SINGLE when not started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return Group(
        int(os.environ["RANK"]),
        world,
        int(os.environ.get("LOCAL_RANK", "0")),
        int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
    )


def device_name(group: Group, name: str | None) -> str | None:
    """With several processes on CUDA, each takes the GPU of its local rank."""
    if group.distributed and (name in (None, "auto", "cuda")) and torch.cuda.is_available():
        return f"cuda:{group.local_rank}"
    return name


def stop_with_launcher() -> None:
    """Linux: SIGTERM this process when its parent (torchrun's agent) dies, however it dies. torchrun starts each
    process in a session of its own, so killing the launcher alone would leave them training; with this, they
    all stop at the next step with a checkpoint, as for any SIGTERM."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        return
    if os.getppid() == 1:  # the launcher died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


def start(group: Group, device: torch.device) -> None:
    """Join the process group: NCCL on CUDA, gloo on CPU. Returns once every process has joined."""
    if not group.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
    dist.init_process_group(backend, timeout=timeout)


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(group: Group) -> None:
    if group.distributed:
        dist.barrier()


def all_sum(tensor: torch.Tensor, group: Group) -> torch.Tensor:
    """Summed over all processes, in place (every process gets the same result)."""
    if group.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_json(value: Any, group: Group, device: torch.device) -> Any:
    """Rank 0's `value` on every process (JSON through a byte tensor: nothing is unpickled)."""
    if not group.distributed:
        return value
    data = json.dumps(value).encode() if group.rank == 0 else b""
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    dist.broadcast(size, src=0)
    buffer = (
        torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device)
        if group.rank == 0
        else torch.empty(int(size), dtype=torch.uint8, device=device)
    )
    dist.broadcast(buffer, src=0)
    return json.loads(buffer.cpu().numpy().tobytes().decode()) if group.rank else value


def rng_name(kind: str, rank: int) -> str:
    """Checkpoint tensor names of one process's RNG state: rank 0's keep the names of a one-process run."""
    return f"rng.{kind}" if rank == 0 else f"rng.{kind}.rank{rank}"


def rng_states(group: Group, device: torch.device) -> dict[str, torch.Tensor]:
    """Every process's RNG states (dropout draws differ by rank), gathered on all; one process: its own."""
    mine = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        mine["cuda"] = torch.cuda.get_rng_state(device)
    states: dict[str, torch.Tensor] = {}
    for kind, state in mine.items():
        if not group.distributed:
            states[rng_name(kind, 0)] = state
            continue
        gathered = [torch.empty_like(state, device=device) for _ in range(group.world)]
        dist.all_gather(gathered, state.to(device))
        states.update({rng_name(kind, rank): s.cpu() for rank, s in enumerate(gathered)})
    return states
