"""`Checkpointer`: when and how a training run saves itself. It owns the checkpoints a run keeps (the last
`keep_last` plus the best), saving one (refused for weights that have diverged), the `last` and `best`
links, which process writes (only the run directory's writer; the others wait at a barrier until it is done)
and the one-line error of a full disk. What a checkpoint holds besides the weights comes from the caller
(`Contents`); the files themselves are written by `nmt.checkpoint.save_model_dir`. Knows nothing about the
training loop, the optimizer or the data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nmt import distributed
from nmt.distributed import SINGLE, Group
from nmt.errors import TrainingError
from nmt.layout import LAST
from nmt.modeldir import CheckpointWriteError, non_finite_weight, save_model_dir
from nmt.rundir import RunDir, checkpoint_name

__all__ = ["Checkpointer", "Contents", "RunFiles"]

Callback = Callable[[dict[str, Any]], None]
Write = Callable[..., Path]  # save_model_dir's signature: (path, model, meta, spm_files, tensors, state, vocab_files=)


@dataclass
class RunFiles:
    """What every checkpoint of a run carries besides tensors: the SentencePiece models (bytes, by file name),
    the vocabularies that map their pieces to the model's ids if the data has them (an imported model's), and the
    metadata that translation needs (their names per side, the languages, the data directory)."""

    spm: dict[str, bytes]
    meta: dict[str, Any]
    vocab: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Contents:
    """What one checkpoint holds besides the weights and the run's files: tensors to resume exactly (optimizer
    moments, RNG states), the trainer's state (trainer.json, without the list of checkpoints, which the
    Checkpointer adds) and what config.json says of this step."""

    tensors: dict[str, torch.Tensor]
    state: dict[str, Any]
    meta: dict[str, Any]


class Checkpointer:
    """Saves a run's checkpoints into its run directory and keeps the last `keep_last` plus the best. Every
    process of the run calls `save` at the same step; only the run directory's writer writes."""

    def __init__(
        self,
        run: RunDir,
        files: RunFiles,
        keep_last: int,
        group: Group = SINGLE,
        callback: Callback | None = None,
        write: Write = save_model_dir,
        barrier: Callable[[], None] | None = None,
    ) -> None:
        self.run, self.files, self.keep_last, self.group = run, files, keep_last, group
        self.callback = callback or (lambda event: None)
        self.write = write
        self.barrier = barrier or (lambda: distributed.barrier(group))
        self.kept: list[str] = []  # the run's checkpoints on disk, oldest first (trainer.json's "checkpoints")

    def saved_at(self, step: int) -> bool:
        """Whether the newest checkpoint is the one of `step`."""
        return self.kept[-1:] == [checkpoint_name(step)]

    def save(self, step: int, model: torch.nn.Module, contents: Callable[[], Contents], best: bool = False) -> Path:
        """Save the checkpoint of `step` (the weights of `model` and what `contents` gives, called on every process:
        it may be a collective), point `last` (and `best` if it is) at it, and prune; returns its path."""
        name, path = checkpoint_name(step), self.run.checkpoint(step)
        if self.saved_at(step) and (self.group.distributed or path.is_dir()):
            return path  # already saved at this step (a stop request right after a validation)
        bad = non_finite_weight(model)
        if bad:
            raise TrainingError(
                f"step {step}: non-finite values in {bad}; the weights have diverged and were not "
                "saved. Lower --lr or raise --warmup-steps, then resume from the last checkpoint"
            )
        held = contents()
        names = self.kept + ([name] if name not in self.kept else [])
        try:
            if self.run.writer:
                meta, state = {**self.files.meta, **held.meta}, {**held.state, "checkpoints": names}
                self.write(path, model, meta, self.files.spm, held.tensors, state, vocab_files=self.files.vocab or None)
            self.run.saved(path, best)
            self.kept = self.run.prune(names, self.keep_last)
        except OSError as e:  # CheckpointWriteError included: a full disk
            raise self._not_written(step, path, e) from e
        self.barrier()  # no process leaves (or is stopped) while the writer is still writing
        self.callback({"kind": "checkpoint", "step": step, "path": str(path)})
        return path

    def _not_written(self, step: int, path: Path, e: OSError) -> TrainingError:
        reason = e.reason if isinstance(e, CheckpointWriteError) else e.strerror or str(e)
        last = self.run.path / LAST
        kept = f"{last} is intact" if last.exists() else "no checkpoint was saved yet"
        return TrainingError(
            f"step {step}: could not write the checkpoint {path} ({reason}); {kept}. "
            "Free some disk space, then resume with --resume"
        )

    # -- resuming --------------------------------------------------------------------------------

    def restored(self, state: dict[str, Any], path: Path) -> None:
        """A run resumes from the checkpoint at `path`, whose trainer state is `state`: the checkpoints it kept."""
        self.kept = list(state.get("checkpoints", []))
        if path.name not in self.kept:  # saved by a version that left itself out of the list
            self.kept.append(path.name)

    def forget_the_future(self, step: int, best_step: int | None) -> None:
        """Make the run directory agree with a run resumed at `step` (see `RunDir.forget_the_future`)."""
        self.kept = self.run.forget_the_future(step, best_step, self.kept, self.keep_last)
