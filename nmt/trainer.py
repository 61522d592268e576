"""`Trainer`: the training loop over one run directory: token-batched updates (`nmt.update`), validation (loss,
perplexity, greedy sacreBLEU) and early stopping, checkpoints (`nmt.checkpointer`), and exact resumption.
Reports through a callback; never prints. How a Trainer is made (a new run, or a resumed one) is `nmt.train`."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

import nmt.runtime
from nmt import distributed
from nmt.checkpoint import restore_training, training_tensors
from nmt.checkpointer import Checkpointer, Contents, RunFiles
from nmt.config import TrainConfig, to_dict
from nmt.data import Batch, TrainingData
from nmt.distributed import SINGLE, Group
from nmt.errors import TrainingError
from nmt.model import Transformer
from nmt.optim import lr_at
from nmt.rundir import RunDir
from nmt.tokenizer import SPECIAL, SpecialIds
from nmt.update import Update, Updater
from nmt.validation import EarlyStopping, Validator

__all__ = ["Callback", "TrainState", "Trainer", "limit_reached"]

Callback = Callable[[dict[str, Any]], None]
Collated = tuple[list[Batch], int, int]  # an update's batches for this process, target tokens of all, batches taken


@dataclass
class TrainState:
    """Everything besides tensors that resuming needs (with the states of `EarlyStopping` and the `Checkpointer`);
    saved as trainer.json."""

    step: int = 0
    epoch: int = 0  # current epoch, 0-based
    batch_in_epoch: int = 0  # batches of the current epoch already consumed
    train_seconds: float = 0.0  # wall-clock inside train(), validation and checkpoints included, over all resumes
    last_valid: dict[str, float] = field(default_factory=dict)


@dataclass
class Window:
    """The updates since the last `train` record of the log: what its loss, perplexity and speed are over."""

    tokens: int = 0
    loss: float = 0.0
    nll: float = 0.0
    start: float = field(default_factory=time.perf_counter)

    def add(self, update: Update) -> None:
        self.tokens, self.loss, self.nll = self.tokens + update.tokens, self.loss + update.loss, self.nll + update.nll

    def record(self, st: TrainState, cfg: TrainConfig) -> dict[str, Any]:
        seconds = time.perf_counter() - self.start
        return {
            "kind": "train",
            "step": st.step,
            "epoch": st.epoch + 1,
            "loss": self.loss / self.tokens,
            "ppl": math.exp(min(self.nll / self.tokens, 50.0)),
            "lr": lr_at(st.step, cfg),
            "tokens_per_s": self.tokens / seconds,
            "train_minutes": st.train_seconds / 60,
        }


def limit_reached(cfg: TrainConfig, st: TrainState) -> str | None:
    """Why training has to stop at this state, if it has to: max_steps, max_epochs or max_minutes."""
    if cfg.max_steps and st.step >= cfg.max_steps:
        return f"reached max_steps {cfg.max_steps}"
    if cfg.max_epochs and st.epoch >= cfg.max_epochs:
        return f"reached max_epochs {cfg.max_epochs}"
    if cfg.max_minutes and st.train_seconds >= cfg.max_minutes * 60:
        return f"reached max_minutes {cfg.max_minutes:g}"
    return None


class Trainer:
    """The training loop over one run directory, handed its parts: the model and optimizer, the data, the
    validator and early-stopping rule, the run directory, and its place among the processes of the run.
    Made by `nmt.train.start` (new run) or `nmt.train.resume`."""

    def __init__(
        self,
        cfg: TrainConfig,
        model: Transformer,
        optimizer: torch.optim.Optimizer,
        data: TrainingData,
        validator: Validator,
        early: EarlyStopping,
        run: RunDir,
        files: RunFiles,
        device: torch.device,
        threads: int,
        callback: Callback | None = None,
        group: Group = SINGLE,
        specials: SpecialIds = SPECIAL,
    ) -> None:
        self.cfg, self.model, self.optimizer, self.data = cfg, model, optimizer, data
        self.specials = specials  # the prepared data's (prepare.json's special_ids), for collating batches
        self.validator, self.early, self.run = validator, early, run
        self.device, self.threads, self.group = device, threads, group
        self.callback = callback or (lambda event: None)
        self.stop_requested: str | None = None  # set by a signal handler, at any moment
        self.state = TrainState()
        self.updater = Updater(model, optimizer, cfg, device, group, self._skipped)
        self.checkpointer = Checkpointer(run, files, cfg.keep_last, group, self.callback)
        # on a GPU the next update's batches are collated (into pinned memory) while this one runs
        self.ahead = ThreadPoolExecutor(1, "collate") if device.type == "cuda" else None
        self._pending: tuple[tuple[int, int], Future[Collated]] | None = None  # collated ahead, at its position
        self._clock = time.perf_counter()

    def close(self) -> None:
        if self.ahead:
            self.ahead.shutdown(cancel_futures=True)
        self.run.close()
        distributed.stop()

    # -- checkpoints ---------------------------------------------------------------------------

    def _checkpoint(self, best: bool = False) -> Path:
        """Save the training state at this step; every process of the run calls it at the same step."""
        return self.checkpointer.save(self.state.step, self.model, self._contents, best)

    def _contents(self) -> Contents:
        """What a checkpoint of this step holds besides the weights (the RNG states: a collective on several
        processes)."""
        st = self.state
        tensors, groups = training_tensors(self.optimizer, self.group, self.device)
        state = {**asdict(st), **self.early.state_dict(), "optimizer": groups}
        meta = {"train": to_dict(self.cfg), "step": st.step, "epoch": st.epoch, "valid": st.last_valid}
        return Contents(tensors, state, meta)

    def restore(self, path: Path) -> None:
        """Continue from the checkpoint at `path`: weights, optimizer, RNG, data position, early stopping."""
        state = restore_training(path, self.model, self.optimizer, self.device, self.group.rank)
        self.early.load_state_dict(state)
        self.checkpointer.restored(state, path)
        theirs = {*self.early.state_dict(), "checkpoints"}
        self.state = TrainState(**{k: v for k, v in state.items() if k not in theirs})
        self.run.truncate_log(self.state.step)
        self.callback({"kind": "resumed", "step": self.state.step, "epoch": self.state.epoch, "path": str(path)})

    def _log(self, record: dict[str, Any]) -> None:
        self.run.log(record)
        self.callback(record)

    # -- validation ----------------------------------------------------------------------------

    def validate(self) -> dict[str, float]:
        """Rank 0 validates; every process gets its result, so that all decide alike on the best and on stopping."""
        result = self.validator(self.model) if self.group.writer else None
        return cast(dict[str, float], distributed.broadcast_json(result, self.group, self.device))  # JSON: untyped

    def _validate_and_save(self) -> bool:
        """Validate, log, checkpoint, track the best, and decide on early stopping; True means stop."""
        st = self.state
        self.callback({"kind": "validating", "step": st.step})
        st.last_valid = self.validate()
        self._tick()
        self._log(
            {
                "kind": "valid",
                "step": st.step,
                "epoch": st.epoch + 1,
                **st.last_valid,
                "train_minutes": st.train_seconds / 60,
            }
        )
        self._checkpoint(best=self.early.update(st.last_valid, st.step))
        nmt.runtime.release_freed_memory()  # what validation and the checkpoint freed (nmt.runtime: the memory bound)
        self._tick()
        return self.early.should_stop

    # -- training ------------------------------------------------------------------------------

    def _updated(self) -> None:
        """One update more: the step, the memory bound (freed memory handed back every RELEASE_EVERY updates,
        see nmt.runtime.release_freed_memory), the clock."""
        self.state.step += 1
        if self.state.step % nmt.runtime.RELEASE_EVERY == 0:
            nmt.runtime.release_freed_memory()
        self._tick()

    def _tick(self) -> None:
        """Count the time since the last tick as training time."""
        now = time.perf_counter()
        self.state.train_seconds, self._clock = self.state.train_seconds + now - self._clock, now

    def _batches(self, batches: list[np.ndarray], start: int) -> Collated:
        """The update that begins at batch `start` of the epoch: this process's batches (every world-th of
        them), the target tokens of all of them, and how many batches it takes from the epoch."""
        chosen = batches[start : start + self.cfg.accum_steps * self.group.world]
        mine = [
            self.data.batch(index, self.specials.pad, self.specials.bos, self.specials.eos)
            for index in chosen[self.group.rank :: self.group.world]
        ]
        pinned = [b.pin() for b in mine] if self.device.type == "cuda" else mine
        return pinned, sum(map(self.data.target_tokens, chosen)), len(chosen)

    def _next_batches(self, batches: list[np.ndarray]) -> Collated:
        """The update at the current place in the epoch (collated ahead if it was), and the following one sent
        ahead to be collated when there is a thread for it."""
        st, pending = self.state, self._pending
        position = (st.epoch, st.batch_in_epoch)
        mine, tokens, taken = (
            pending[1].result() if pending and pending[0] == position else self._batches(batches, position[1])
        )
        following = st.batch_in_epoch + taken
        self._pending = (
            ((st.epoch, following), self.ahead.submit(self._batches, batches, following)) if self.ahead else None
        )
        return mine, tokens, taken

    def _skipped(self, step: int, what: str, value: float) -> None:
        """A batch skipped (skip_nonfinite): logged, with its place in the data."""
        st = self.state
        self._log(
            {
                "kind": "skip",
                "step": step,
                "epoch": st.epoch + 1,
                "what": what,
                "value": str(value),
                "batch_in_epoch": st.batch_in_epoch,
            }
        )

    def _start_record(self) -> dict[str, Any]:
        return {
            "kind": "start",
            "step": self.state.step,
            "params": sum(p.numel() for p in self.model.parameters()),
            "train_pairs": len(self.data),
            "skipped_long": self.data.skipped_long,
            "device": str(self.device),
            "threads": self.threads,
            "max_steps": self.cfg.max_steps,
            "max_minutes": self.cfg.max_minutes,
            "train_seconds": self.state.train_seconds,  # before this start: a resumed run's time so far
            "processes": self.group.world,
        }

    def train(self) -> str:
        """Train until a limit, early stopping or a stop request; returns why it stopped."""
        try:
            return self._train()
        except RuntimeError as e:  # a collective failed (a peer died, or hung past the timeout); in a backward pass
            # DDP's may come as a plain RuntimeError
            if self.group.distributed and (
                isinstance(e, torch.distributed.DistError) or re.search("gloo|NCCL", str(e))
            ):
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                first = re.sub(r"^\[[^\]]*\]\s*", "", first).split(". ")[0]  # gloo: "[file:line] what. advice"
                raise TrainingError(
                    f"step {self.state.step + 1}: lost touch with the other processes of the run "
                    f"({first}); one of them has probably died. Resume with --resume"
                ) from e
            raise

    def _train(self) -> str:
        cfg, st = self.cfg, self.state
        self.model.train()
        self.callback(self._start_record())
        window, self._clock, self._pending = Window(), time.perf_counter(), None
        reason = limit_reached(cfg, st)
        batches = self.data.epoch(st.epoch)
        while reason is None:
            if st.batch_in_epoch + self.group.world > len(batches):  # fewer batches left than processes: epoch over
                st.epoch, st.batch_in_epoch = st.epoch + 1, 0
                reason = limit_reached(cfg, st)
                if reason:
                    break
                batches = self.data.epoch(st.epoch)
            mine, tokens, taken = self._next_batches(batches)
            update = self.updater(mine, tokens, st.step + 1, self.stop_requested)
            st.batch_in_epoch += taken
            if update is None:  # a non-finite loss or gradient, skipped as asked: the data moves on, the step does not
                continue
            self._updated()
            window.add(update)
            if st.step % cfg.log_every == 0:
                self._log(window.record(st, cfg))
                window = Window()
            if st.step % cfg.valid_every == 0:
                if self._validate_and_save():
                    reason = f"no improvement in {cfg.early_stop_metric} for {cfg.patience} validations"
                window.start = time.perf_counter()
            reason = reason or limit_reached(cfg, st)
            # one process decides alone; several stop at the step whose update carried the request
            stop = update.stop if self.group.distributed else self.stop_requested
            if reason is None and stop:
                self.stop_requested = stop
                self._checkpoint()
                return f"stopped by {stop}"
        if not self.checkpointer.saved_at(st.step):
            self._validate_and_save()
        self.callback({"kind": "stop", "step": st.step, "reason": reason})
        return reason
