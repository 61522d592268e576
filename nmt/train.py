"""`Trainer`: token-batched updates, validation (loss, perplexity, greedy sacreBLEU), early stopping,
checkpoints, and exact resumption. Reports through a callback; never prints."""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from inspect import signature
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from nmt import distributed
from nmt.checkpoint import restore_training, training_tensors
from nmt.config import ModelConfig, TrainConfig, from_dict, to_dict
from nmt.data import Batch, ParallelIds, TrainingData, read_lines
from nmt.distributed import SINGLE, Group
from nmt.errors import ConfigError
from nmt.layout import CONFIG_FILE, LAST, ids_file, load_summary
from nmt.loss import chunked_loss
from nmt.model import Transformer, build_model
from nmt.modeldir import CheckpointWriteError, non_finite_weight, save_model_dir
from nmt.optim import build_optimizer, lr_at, set_lr
from nmt.rundir import RunDir, TrainingError, checkpoint_name
from nmt.runtime import autocast, keep_freed_memory, pick_device, seed_everything, set_threads
from nmt.tokenizer import SPECIAL, Tokenizer
from nmt.validation import EarlyStopping, Validator
from nmt.version import __version__

# On --resume these may change (how long to go on, how often to report); anything else would make
# the resumed run a different run.
RESUMABLE_OVERRIDES = {
    "max_steps",
    "max_epochs",
    "max_minutes",
    "patience",
    "log_every",
    "valid_every",
    "keep_last",
    "skip_nonfinite",
}
# With skip_nonfinite, this many skipped batches in a row means the weights themselves have diverged.
MAX_SKIPS_IN_A_ROW = 10
__all__ = [
    "MAX_SKIPS_IN_A_ROW",
    "RunFiles",
    "Trainer",
    "TrainState",
    "TrainingError",
    "TrainingLoss",
    "Update",
    "engine",
    "model_config_for",
    "resume",
    "start",
    "update",
]


@dataclass
class TrainState:
    """Everything besides tensors that resuming needs (with `EarlyStopping`'s state); saved as trainer.json."""

    step: int = 0
    epoch: int = 0  # current epoch, 0-based
    batch_in_epoch: int = 0  # batches of the current epoch already consumed
    train_seconds: float = 0.0  # wall-clock inside train(), validation and checkpoints included, over all resumes
    last_valid: dict[str, float] = field(default_factory=dict)
    checkpoints: list[str] = field(default_factory=list)


Callback = Callable[[dict[str, Any]], None]


@dataclass
class RunFiles:
    """What every checkpoint of a run carries besides tensors: the SentencePiece models (bytes, by file name)
    and the metadata that translation needs (their names per side, the languages, the data directory)."""

    spm: dict[str, bytes]
    meta: dict[str, Any]


def model_config_for(data_dir: Path, overrides: dict[str, Any]) -> ModelConfig:
    """Vocabulary sizes come from the prepared data; separate vocabularies cannot share embeddings."""
    summary = load_summary(Path(data_dir))
    values = {
        "src_vocab_size": summary["vocab_size"]["src"],
        "tgt_vocab_size": summary["vocab_size"]["tgt"],
        "pad_id": SPECIAL.pad,
    }
    if summary["spm"]["src"] != summary["spm"]["tgt"]:
        values["share_all_embeddings"] = False
    for key in ("src_vocab_size", "tgt_vocab_size", "pad_id"):
        if key in overrides and overrides[key] != values[key]:
            raise ConfigError(f"{key} is fixed by the prepared data ({values[key]}); remove it from the config")
    return from_dict(ModelConfig, {**overrides, **values}, where="[model]")


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
    Made by `start` (new run) or `resume`."""

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
    ) -> None:
        self.cfg, self.model, self.optimizer, self.data = cfg, model, optimizer, data
        self.validator, self.early, self.run, self.files = validator, early, run, files
        self.device, self.threads, self.group = device, threads, group
        self.callback = callback or (lambda event: None)
        self.stop_requested: str | None = None  # set by a signal handler, at any moment
        self.state = TrainState()
        self.engine = engine(model, cfg, device, group)
        # on a GPU the next update's batches are collated (into pinned memory) while this one runs
        self.ahead = ThreadPoolExecutor(1, "collate") if device.type == "cuda" else None

    def close(self) -> None:
        if self.ahead:
            self.ahead.shutdown(cancel_futures=True)
        self.run.close()
        distributed.stop()

    # -- checkpoints ---------------------------------------------------------------------------

    def _checkpoint(self, best: bool = False) -> Path:
        """Save (rank 0) the training state at this step; every process of the run calls it at the same step."""
        name, step = checkpoint_name(self.state.step), self.state.step
        path = self.run.checkpoint(step)
        if self.state.checkpoints[-1:] == [name] and (self.group.distributed or path.is_dir()):
            return path  # already saved at this step (a stop request right after a validation)
        bad = non_finite_weight(self.model)
        if bad:
            raise TrainingError(
                f"step {step}: non-finite values in {bad}; the weights have diverged and were not "
                "saved. Lower --lr or raise --warmup-steps, then resume from the last checkpoint"
            )
        tensors, groups = training_tensors(self.optimizer, self.group, self.device)
        checkpoints = self.state.checkpoints + ([name] if name not in self.state.checkpoints else [])
        state = {**asdict(self.state), **self.early.state_dict(), "checkpoints": checkpoints, "optimizer": groups}
        meta = {
            **self.files.meta,
            "train": to_dict(self.cfg),
            "step": step,
            "epoch": self.state.epoch,
            "valid": self.state.last_valid,
        }
        try:
            if self.run.writer:
                save_model_dir(path, self.model, meta, self.files.spm, tensors, state)
            self.run.saved(path, best)
            self.state.checkpoints = self.run.prune(checkpoints, self.cfg.keep_last)
        except OSError as e:  # CheckpointWriteError included: a full disk
            reason = e.reason if isinstance(e, CheckpointWriteError) else e.strerror or str(e)
            last = self.run.path / LAST
            kept = f"{last} is intact" if last.exists() else "no checkpoint was saved yet"
            raise TrainingError(
                f"step {step}: could not write the checkpoint {path} ({reason}); {kept}. "
                "Free some disk space, then resume with --resume"
            ) from None
        distributed.barrier(self.group)  # no process leaves (or is stopped) while rank 0 is still writing
        self.callback({"kind": "checkpoint", "step": step, "path": str(path)})
        return path

    def restore(self, path: Path) -> None:
        """Continue from the checkpoint at `path`: weights, optimizer, RNG, data position, early stopping."""
        state = restore_training(path, self.model, self.optimizer, self.device, self.group.rank)
        self.early.load_state_dict(state)
        self.state = TrainState(**{k: v for k, v in state.items() if k not in self.early.state_dict()})
        if path.name not in self.state.checkpoints:  # saved by a version that left itself out of the list
            self.state.checkpoints.append(path.name)
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

    def _validate_and_save(self, tick: Callable[[], None]) -> bool:
        """Validate, log, checkpoint, track the best, and decide on early stopping; True means stop."""
        st = self.state
        self.callback({"kind": "validating", "step": st.step})
        st.last_valid = self.validate()
        tick()
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
        tick()
        return self.early.should_stop

    # -- training ------------------------------------------------------------------------------

    def _batches(self, batches: list[np.ndarray], start: int) -> tuple[list[Batch], int, int]:
        """The update that begins at batch `start` of the epoch: this process's batches (every world-th of
        them), the target tokens of all of them, and how many batches it takes from the epoch."""
        chosen = batches[start : start + self.cfg.accum_steps * self.group.world]
        mine = [
            self.data.batch(index, SPECIAL.pad, SPECIAL.bos, SPECIAL.eos)
            for index in chosen[self.group.rank :: self.group.world]
        ]
        pinned = [b.pin() for b in mine] if self.device.type == "cuda" else mine
        return pinned, sum(map(self.data.target_tokens, chosen)), len(chosen)

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
                ) from None
            raise

    def _train(self) -> str:
        cfg, st, world = self.cfg, self.state, self.group.world
        self.model.train()
        self.callback(
            {
                "kind": "start",
                "step": st.step,
                "params": sum(p.numel() for p in self.model.parameters()),
                "train_pairs": len(self.data),
                "skipped_long": self.data.skipped_long,
                "device": str(self.device),
                "threads": self.threads,
                "max_steps": cfg.max_steps,
                "processes": world,
            }
        )
        window_tokens, window_loss, window_nll, window_start = 0, 0.0, 0.0, time.perf_counter()
        clock = time.perf_counter()

        def tick() -> None:
            nonlocal clock
            now = time.perf_counter()
            st.train_seconds, clock = st.train_seconds + now - clock, now

        reason = limit_reached(self.cfg, st)
        batches = self.data.epoch(st.epoch)
        skips_in_a_row, ahead = 0, None
        while reason is None:
            if st.batch_in_epoch + world > len(batches):  # fewer batches left than processes: the epoch is over
                st.epoch, st.batch_in_epoch = st.epoch + 1, 0
                reason = limit_reached(self.cfg, st)
                if reason:
                    break
                batches = self.data.epoch(st.epoch)
            position = (st.epoch, st.batch_in_epoch)
            mine, tokens, taken = (
                ahead[1].result() if ahead and ahead[0] == position else self._batches(batches, position[1])
            )
            following = st.batch_in_epoch + taken
            ahead = (
                ((st.epoch, following), self.ahead.submit(self._batches, batches, following)) if self.ahead else None
            )
            update = self._update(mine, tokens)
            st.batch_in_epoch += taken
            if update is None:  # a non-finite loss or gradient, skipped as asked: the data moves on, the step does not
                skips_in_a_row += 1
                if skips_in_a_row >= MAX_SKIPS_IN_A_ROW:
                    raise TrainingError(
                        f"step {st.step + 1}: {skips_in_a_row} batches in a row gave a non-finite loss or "
                        "gradient; the weights have diverged. Lower --lr or raise --warmup-steps"
                    )
                continue
            skips_in_a_row = 0
            st.step += 1
            tick()
            window_tokens, window_loss, window_nll = (
                window_tokens + tokens,
                window_loss + update.loss,
                window_nll + update.nll,
            )
            if st.step % cfg.log_every == 0:
                seconds = time.perf_counter() - window_start
                self._log(
                    {
                        "kind": "train",
                        "step": st.step,
                        "epoch": st.epoch + 1,
                        "loss": window_loss / window_tokens,
                        "ppl": math.exp(min(window_nll / window_tokens, 50.0)),
                        "lr": lr_at(st.step, cfg),
                        "tokens_per_s": window_tokens / seconds,
                        "train_minutes": st.train_seconds / 60,
                    }
                )
                window_tokens, window_loss, window_nll, window_start = 0, 0.0, 0.0, time.perf_counter()
            if st.step % cfg.valid_every == 0:
                if self._validate_and_save(tick):
                    reason = f"no improvement in {cfg.early_stop_metric} for {cfg.patience} validations"
                window_start = time.perf_counter()
            if reason is None:
                reason = limit_reached(self.cfg, st)
            # one process decides alone; several stop at the step whose update carried the request
            stop = update.stop if self.group.distributed else self.stop_requested
            if reason is None and stop:
                self.stop_requested = stop
                self._checkpoint()
                return f"stopped by {stop}"
        if not st.checkpoints or st.checkpoints[-1] != checkpoint_name(st.step):
            self._validate_and_save(tick)
        self.callback({"kind": "stop", "step": st.step, "reason": reason})
        return reason

    def _update(self, batches: list[Batch], tokens: int) -> Update | None:
        """One optimizer update; a non-finite loss or gradient stops training, or with skip_nonfinite skips the
        update (returns None)."""
        step = self.state.step + 1
        result = update(
            self.engine, self.optimizer, batches, tokens, self.cfg, self.device, step, self.group, self.stop_requested
        )
        if result.nonfinite is None:
            return result
        what, value = result.nonfinite
        if self.cfg.skip_nonfinite:
            self._log(
                {
                    "kind": "skip",
                    "step": step,
                    "epoch": self.state.epoch + 1,
                    "what": what,
                    "value": str(value),
                    "batch_in_epoch": self.state.batch_in_epoch,
                }
            )
            return None
        raise TrainingError(
            f"step {step}: the {what} became {value}; nothing was saved from this step. Lower --lr or raise "
            "--warmup-steps, then resume from the last checkpoint with --resume (add --skip-nonfinite to skip such "
            "batches)"
        )


# -- making a Trainer: a new run, or one resumed from its last checkpoint ---------------------------


def start(
    data_dir: Path,
    run_dir: Path,
    model_overrides: dict[str, Any],
    train_cfg: TrainConfig,
    overwrite: bool = False,
    device: str | None = None,
    threads: int | None = None,
    callback: Callback | None = None,
    group: Group = SINGLE,
) -> Trainer:
    """A new run in `run_dir` on the prepared data in `data_dir`; --overwrite replaces a run already there.
    With several processes, each calls it; rank 0 writes the run directory once all have joined."""
    run = RunDir(run_dir, writer=group.writer)
    if run.path.exists() and not run.path.is_dir():
        raise ConfigError(f"{run.path}: exists and is not a directory; choose another --out")
    if run.holds_a_run() and not overwrite:
        raise ConfigError(
            f"{run.path}: already holds a run; continue it with `nmt train --resume {run.path}`, "
            "or add --overwrite to start over"
        )
    model_cfg = model_config_for(data_dir, model_overrides)
    trainer = _assemble(run, Path(data_dir), model_cfg, train_cfg, device, threads, callback, group)
    run.lock()  # never wipe a directory another trainer is writing to
    run.wipe()
    run.write_config(
        {
            "nmt_version": __version__,
            "data_dir": str(Path(data_dir).resolve()),
            "model": to_dict(model_cfg),
            "train": to_dict(train_cfg),
        }
    )
    return trainer


def resume(
    run_dir: Path,
    train_overrides: dict[str, Any] | None = None,
    device: str | None = None,
    threads: int | None = None,
    callback: Callback | None = None,
    group: Group = SINGLE,
) -> Trainer:
    """The run in `run_dir`, at its last checkpoint (or from scratch if killed before the first one). With
    several processes, each calls it and all read the same checkpoint."""
    run = RunDir(run_dir, writer=group.writer)
    config = run.read_config()
    run.lock()
    try:
        run.remove_leftovers()
        changed = sorted(set(train_overrides or {}) - RESUMABLE_OVERRIDES)
        if changed:
            raise ConfigError(
                f"--resume keeps the run's settings; only {', '.join(sorted(RESUMABLE_OVERRIDES))} "
                f"may change, not {', '.join(changed)}"
            )
        where = str(run.path / CONFIG_FILE)
        train_cfg = from_dict(TrainConfig, {**config["train"], **(train_overrides or {})}, where=where)
        model_cfg = from_dict(ModelConfig, config["model"], where=where)
        trainer = _assemble(run, Path(config["data_dir"]), model_cfg, train_cfg, device, threads, callback, group)
        last = run.last()
        if last is not None:
            trainer.restore(last)
        else:
            run.truncate_log(0)  # killed before the first checkpoint: start over, log included
        st = trainer.state
        st.checkpoints = run.forget_the_future(st.step, trainer.early.best_step, st.checkpoints, train_cfg.keep_last)
    except BaseException:
        run.close()  # a refused resume must not keep the run locked
        raise
    return trainer


def _assemble(
    run: RunDir,
    data_dir: Path,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    device_name: str | None,
    threads: int | None,
    callback: Callback | None,
    group: Group,
) -> Trainer:
    """Load the data and tokenizers, build the model and optimizer (seeded), join the other processes of the run
    if any, and hand it all to a Trainer."""
    device = pick_device(distributed.device_name(group, device_name))
    threads = set_threads(threads, share=group.local_world if device.type == "cpu" else 1)
    keep_freed_memory()
    summary = load_summary(data_dir)
    src_lang, tgt_lang = summary["settings"]["src"], summary["settings"]["tgt"]
    spm_names = {side: summary["spm"][side] for side in ("src", "tgt")}
    spm = {name: (data_dir / name).read_bytes() for name in set(spm_names.values())}
    tgt_tokenizer = Tokenizer(spm[spm_names["tgt"]], str(data_dir / spm_names["tgt"]))
    limit = model_cfg.max_positions - 1  # pairs beyond max_src_len/max_tgt_len or the positions are left out
    data = TrainingData(
        data_dir / ids_file("train"),
        cfg.batch_tokens,
        cfg.seed,
        min(cfg.max_src_len, limit),
        min(cfg.max_tgt_len, limit),
    )
    validator = Validator(
        ParallelIds.load(data_dir / ids_file("valid")),
        read_lines(data_dir / f"valid.{tgt_lang}"),
        tgt_tokenizer,
        cfg,
        device,
    )
    seed_everything(cfg.seed)
    model = build_model(model_cfg).to(device)
    optimizer = build_optimizer(model.parameters(), cfg, device)
    if group.rank:
        seed_everything(cfg.seed + group.rank)  # the same weights (DDP copies rank 0's anyway), other dropout draws
    distributed.start(group, device)
    files = RunFiles(
        spm, {"spm": spm_names, "src_lang": src_lang, "tgt_lang": tgt_lang, "data_dir": str(data_dir.resolve())}
    )
    return Trainer(
        cfg,
        model,
        optimizer,
        data,
        validator,
        EarlyStopping(cfg.early_stop_metric, cfg.patience),
        run,
        files,
        device,
        threads,
        callback,
        group,
    )


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


STOP_SIGNALS = ("SIGINT", "SIGTERM")


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
