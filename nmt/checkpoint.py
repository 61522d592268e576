"""The training state of a checkpoint: what a run needs besides the weights to resume exactly (optimizer
moments, the RNG states of every process, step and data position), and averaging the checkpoints of a run.
Inference never imports this module; it reads model directories through nmt.modeldir.

    RUN_DIR/checkpoints/step_000400/{model.safetensors, config.json, spm.model,   (nmt.modeldir)
                                      trainer.safetensors, trainer.json}           (here)

Tensors go in safetensors, everything else in JSON: nothing is pickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from nmt.distributed import Group, rng_name, rng_states
from nmt.errors import CheckpointError
from nmt.files import read_json
from nmt.layout import TRAINER_JSON, TRAINER_TENSORS
from nmt.modeldir import load_model_dir, save_model_dir, spm_files_of, vocab_files_of


def load_trainer_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer moments and RNG states (tensors) plus step, epoch, data position (JSON)."""
    tensors_file = path / TRAINER_TENSORS
    try:
        tensors = load_file(str(tensors_file))
    except FileNotFoundError as e:
        raise CheckpointError(
            f"{tensors_file}: missing; this checkpoint cannot be resumed (it has no trainer state)"
        ) from e
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{tensors_file}: unreadable ({e}); resume from an earlier checkpoint") from e
    return tensors, read_json(path / TRAINER_JSON)


def training_tensors(
    optimizer: torch.optim.Optimizer, group: Group, device: torch.device
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """What a checkpoint saves besides the weights to resume exactly: the optimizer's moments and the RNG states
    of every process of the run (tensors; a collective when there are several), and the optimizer's parameter
    groups (JSON)."""
    tensors, groups = optimizer_tensors(optimizer)
    tensors.update(rng_states(group, device))
    return tensors, groups


def restore_training(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device, rank: int = 0
) -> dict[str, Any]:
    """Put a checkpoint's weights, optimizer state and RNG states (those of process `rank`) back into `model`,
    `optimizer` and this process; returns the rest of its trainer state (JSON: step, data position, ...).
    A rank the checkpoint has no RNG state for (the run had fewer processes) keeps the RNG it has."""
    model.load_state_dict(load_model_dir(path, device).model.state_dict())
    tensors, state = load_trainer_state(path)
    restore_optimizer(optimizer, {k: v.to(device) for k, v in tensors.items()}, state.pop("optimizer"))
    if rng_name("cpu", rank) in tensors:
        torch.set_rng_state(tensors[rng_name("cpu", rank)])
    if device.type == "cuda" and rng_name("cuda", rank) in tensors:
        torch.cuda.set_rng_state(tensors[rng_name("cuda", rank)], device)
    return state


# ---------------------------------------------------------------------------------------------
# Optimizer state ⇄ flat tensors (safetensors holds only named tensors)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            tensors[f"optim.{index}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors, {"param_groups": state["param_groups"]}


def restore_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: dict[str, Any]
) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups["param_groups"]})
    except (ValueError, KeyError) as e:
        raise CheckpointError(
            f"optimizer state does not fit this model ({e}); the checkpoint belongs to another run"
        ) from e


# ---------------------------------------------------------------------------------------------
# Averaging


def average_checkpoints(paths: list[Path], out: Path) -> Path:
    """Average the weights of several checkpoints of one run into a new model directory.

    Its config.json names the checkpoints ("averaged_from") and their steps ("averaged_steps", null where a
    checkpoint does not say). It keeps the first checkpoint's other entries as older versions wrote them
    ("step", "epoch", "valid" included): readers take an average's own description from "averaged_*", and
    nothing validates the average here (that needs the data and a decoding of the validation set: `nmt score
    -m` does it when asked)."""
    if not paths:
        raise CheckpointError("no checkpoints to average")
    first = load_model_dir(paths[0])
    total = {k: v.double().clone() for k, v in first.model.state_dict().items()}
    steps = [_step(first.config)]
    for p in paths[1:]:
        other = load_model_dir(p)
        if other.config.get("model") != first.config.get("model"):
            raise CheckpointError(f"{p}: a different model shape from {paths[0]}; average checkpoints of one run")
        for k, v in other.model.state_dict().items():
            total[k] += v.double()
        steps.append(_step(other.config))
    averaged = {k: (v / len(paths)).to(first.model.state_dict()[k].dtype) for k, v in total.items()}
    first.model.load_state_dict(averaged)
    written = ("model", "nmt_version", "spm_sha256", "vocab_sha256")  # what save_model_dir writes itself
    meta = {k: v for k, v in first.config.items() if k not in written}
    meta["averaged_from"] = [str(p) for p in paths]
    meta["averaged_steps"] = steps
    return save_model_dir(
        out,
        first.model,
        meta,
        spm_files_of(first.path, first.config),
        vocab_files=vocab_files_of(first.path, first.config) or None,
    )


def _step(config: dict[str, Any]) -> int | None:
    """The training step a checkpoint's config.json records, if it records one."""
    step = config.get("step")
    return step if isinstance(step, int) and not isinstance(step, bool) else None
