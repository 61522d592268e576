"""`Trainer`: token-batched updates, validation (loss, perplexity, greedy sacreBLEU), early stopping,
checkpoints, and exact resumption. Reports through a callback; never prints."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from nmt import __version__
from nmt.checkpoint import CheckpointWriteError, non_finite_weight, restore_training, save_model_dir, training_tensors
from nmt.config import ModelConfig, TrainConfig, from_dict, to_dict
from nmt.data import ParallelIds, TrainingData, read_lines
from nmt.errors import ConfigError
from nmt.loss import loss_backward
from nmt.model import Transformer
from nmt.optim import build_optimizer, lr_at, set_lr
from nmt.prepare import load_summary
from nmt.rundir import RunDir, TrainingError, checkpoint_name
from nmt.runtime import autocast, keep_freed_memory, pick_device, seed_everything, set_threads
from nmt.tokenizer import SPECIAL, Tokenizer
from nmt.validation import EarlyStopping, Validator

# On --resume these may change (how long to go on, how often to report); anything else would make
# the resumed run a different run.
RESUMABLE_OVERRIDES = {"max_steps", "max_epochs", "max_minutes", "patience", "log_every", "valid_every", "keep_last",
                       "skip_nonfinite"}
# With skip_nonfinite, this many skipped batches in a row means the weights themselves have diverged.
MAX_SKIPS_IN_A_ROW = 10
__all__ = ["MAX_SKIPS_IN_A_ROW", "RunFiles", "Trainer", "TrainState", "TrainingError", "Update", "model_config_for",
           "resume", "start", "update"]


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
    values = {"src_vocab_size": summary["vocab_size"]["src"], "tgt_vocab_size": summary["vocab_size"]["tgt"],
              "pad_id": SPECIAL.pad}
    if summary["spm"]["src"] != summary["spm"]["tgt"]:
        values["share_all_embeddings"] = False
    for key in ("src_vocab_size", "tgt_vocab_size", "pad_id"):
        if key in overrides and overrides[key] != values[key]:
            raise ConfigError(f"{key} is fixed by the prepared data ({values[key]}); remove it from the config")
    return from_dict(ModelConfig, {**overrides, **values}, where="[model]")


class Trainer:
    """The training loop over one run directory, handed its parts: the model and optimizer, the data, the
    validator and early-stopping rule, and the run directory. Made by `start` (new run) or `resume`."""

    def __init__(self, cfg: TrainConfig, model: Transformer, optimizer: torch.optim.Optimizer, data: TrainingData,
                 validator: Validator, early: EarlyStopping, run: RunDir, files: "RunFiles", device: torch.device,
                 threads: int, callback: Callback | None = None) -> None:
        self.cfg, self.model, self.optimizer, self.data = cfg, model, optimizer, data
        self.validator, self.early, self.run, self.files = validator, early, run, files
        self.device, self.threads = device, threads
        self.callback = callback or (lambda event: None)
        self.stop_requested: str | None = None
        self.state = TrainState()

    def close(self) -> None:
        self.run.close()

    # -- checkpoints ---------------------------------------------------------------------------

    def _checkpoint(self, best: bool = False) -> Path:
        name = checkpoint_name(self.state.step)
        path = self.run.checkpoint(self.state.step)
        if self.state.checkpoints[-1:] == [name] and path.is_dir():
            return path  # already saved at this step (a stop request right after a validation)
        bad = non_finite_weight(self.model)
        if bad:
            raise TrainingError(f"step {self.state.step}: non-finite values in {bad}; the weights have diverged and "
                                "were not saved. Lower --lr or raise --warmup-steps, then resume from the last checkpoint")
        tensors, groups = training_tensors(self.optimizer, self.device)
        checkpoints = self.state.checkpoints + ([name] if name not in self.state.checkpoints else [])
        state = {**asdict(self.state), **self.early.state_dict(), "checkpoints": checkpoints, "optimizer": groups}
        meta = {**self.files.meta, "train": to_dict(self.cfg), "step": self.state.step, "epoch": self.state.epoch,
                "valid": self.state.last_valid}
        try:
            save_model_dir(path, self.model, meta, self.files.spm, tensors, state)
            self.run.saved(path, best)
            self.state.checkpoints = self.run.prune(checkpoints, self.cfg.keep_last)
        except OSError as e:  # CheckpointWriteError included: a full disk
            reason = e.reason if isinstance(e, CheckpointWriteError) else e.strerror or str(e)
            last = self.run.path / "last"
            kept = f"{last} is intact" if last.exists() else "no checkpoint was saved yet"
            raise TrainingError(f"step {self.state.step}: could not write the checkpoint {path} ({reason}); {kept}. "
                                "Free some disk space, then resume with --resume") from None
        self.callback({"kind": "checkpoint", "step": self.state.step, "path": str(path)})
        return path

    def restore(self, path: Path) -> None:
        """Continue from the checkpoint at `path`: weights, optimizer, RNG, data position, early stopping."""
        state = restore_training(path, self.model, self.optimizer, self.device)
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
        return self.validator(self.model)

    def _after_validation(self, result: dict[str, float]) -> bool:
        """Checkpoint, track the best, and decide on early stopping; True means stop."""
        self.state.last_valid = result
        self._checkpoint(best=self.early.update(result, self.state.step))
        return self.early.should_stop

    # -- training ------------------------------------------------------------------------------

    def _limit_reached(self) -> str | None:
        cfg, st = self.cfg, self.state
        if cfg.max_steps and st.step >= cfg.max_steps:
            return f"reached max_steps {cfg.max_steps}"
        if cfg.max_epochs and st.epoch >= cfg.max_epochs:
            return f"reached max_epochs {cfg.max_epochs}"
        if cfg.max_minutes and st.train_seconds >= cfg.max_minutes * 60:
            return f"reached max_minutes {cfg.max_minutes:g}"
        return None

    def train(self) -> str:
        """Train until a limit, early stopping or a stop request; returns why it stopped."""
        cfg, st = self.cfg, self.state
        self.model.train()
        self.callback({"kind": "start", "step": st.step, "params": sum(p.numel() for p in self.model.parameters()),
                       "train_pairs": len(self.data), "skipped_long": self.data.skipped_long,
                       "device": str(self.device), "threads": self.threads, "max_steps": cfg.max_steps})
        window_tokens, window_loss, window_nll, window_start = 0, 0.0, 0.0, time.perf_counter()
        clock = time.perf_counter()

        def tick() -> None:
            nonlocal clock
            now = time.perf_counter()
            st.train_seconds, clock = st.train_seconds + now - clock, now

        reason = self._limit_reached()
        batches = self.data.epoch(st.epoch)
        skips_in_a_row = 0
        while reason is None:
            if st.batch_in_epoch >= len(batches):
                st.epoch, st.batch_in_epoch = st.epoch + 1, 0
                reason = self._limit_reached()
                if reason:
                    break
                batches = self.data.epoch(st.epoch)
            group = [self.data.batch(idx, SPECIAL.pad, SPECIAL.bos, SPECIAL.eos)
                     for idx in batches[st.batch_in_epoch : st.batch_in_epoch + cfg.accum_steps]]
            update = self._update(group)
            st.batch_in_epoch += len(group)
            if update is None:  # a non-finite loss or gradient, skipped as asked: the data moves on, the step does not
                skips_in_a_row += 1
                if skips_in_a_row >= MAX_SKIPS_IN_A_ROW:
                    raise TrainingError(f"step {st.step + 1}: {skips_in_a_row} batches in a row gave a non-finite loss or "
                                        "gradient; the weights have diverged. Lower --lr or raise --warmup-steps")
                continue
            skips_in_a_row = 0
            loss_sum, nll_sum, n_tokens = update
            st.step += 1
            tick()
            window_tokens, window_loss, window_nll = window_tokens + n_tokens, window_loss + loss_sum, window_nll + nll_sum
            if st.step % cfg.log_every == 0:
                seconds = time.perf_counter() - window_start
                self._log({"kind": "train", "step": st.step, "epoch": st.epoch + 1, "loss": window_loss / window_tokens,
                           "ppl": math.exp(min(window_nll / window_tokens, 50.0)), "lr": lr_at(st.step, cfg),
                           "tokens_per_s": window_tokens / seconds, "train_minutes": st.train_seconds / 60})
                window_tokens, window_loss, window_nll, window_start = 0, 0.0, 0.0, time.perf_counter()
            if st.step % cfg.valid_every == 0:
                self.callback({"kind": "validating", "step": st.step})
                result = self.validate()
                tick()
                self._log({"kind": "valid", "step": st.step, "epoch": st.epoch + 1, **result, "train_minutes": st.train_seconds / 60})
                if self._after_validation(result):
                    reason = f"no improvement in {cfg.early_stop_metric} for {cfg.patience} validations"
                tick()
                window_start = time.perf_counter()
            if reason is None:
                reason = self._limit_reached()
            if reason is None and self.stop_requested:
                self._checkpoint()
                return f"stopped by {self.stop_requested}"
        if not st.checkpoints or st.checkpoints[-1] != checkpoint_name(st.step):
            self.callback({"kind": "validating", "step": st.step})
            result = self.validate()
            tick()
            self._log({"kind": "valid", "step": st.step, "epoch": st.epoch + 1, **result, "train_minutes": st.train_seconds / 60})
            self._after_validation(result)
        self.callback({"kind": "stop", "step": st.step, "reason": reason})
        return reason

    def _update(self, group: list) -> tuple[float, float, int] | None:
        """One optimizer update over `group`; a non-finite loss or gradient stops training, or with
        skip_nonfinite skips the update (returns None)."""
        result = update(self.model, self.optimizer, group, self.cfg, self.device, self.state.step + 1)
        if result.nonfinite is None:
            return result.loss, result.nll, result.tokens
        (what, value), step = result.nonfinite, self.state.step + 1
        if self.cfg.skip_nonfinite:
            self._log({"kind": "skip", "step": step, "epoch": self.state.epoch + 1, "what": what, "value": str(value),
                       "batch_in_epoch": self.state.batch_in_epoch})
            return None
        raise TrainingError(
            f"step {step}: the {what} became {value}; nothing was saved from this step. Lower --lr or raise "
            "--warmup-steps, then resume from the last checkpoint with --resume (add --skip-nonfinite to skip such batches)"
        )


# -- making a Trainer: a new run, or one resumed from its last checkpoint ---------------------------


def start(data_dir: Path, run_dir: Path, model_overrides: dict[str, Any], train_cfg: TrainConfig,
          overwrite: bool = False, device: str | None = None, threads: int | None = None,
          callback: Callback | None = None) -> Trainer:
    """A new run in `run_dir` on the prepared data in `data_dir`; --overwrite replaces a run already there."""
    run = RunDir(run_dir)
    if run.path.exists() and not run.path.is_dir():
        raise ConfigError(f"{run.path}: exists and is not a directory; choose another --out")
    if run.holds_a_run() and not overwrite:
        raise ConfigError(f"{run.path}: already holds a run; continue it with `nmt train --resume {run.path}`, "
                          "or add --overwrite to start over")
    model_cfg = model_config_for(data_dir, model_overrides)
    trainer = _assemble(run, Path(data_dir), model_cfg, train_cfg, device, threads, callback)
    run.lock()  # never wipe a directory another trainer is writing to
    run.wipe()
    run.write_config({"nmt_version": __version__, "data_dir": str(Path(data_dir).resolve()),
                      "model": to_dict(model_cfg), "train": to_dict(train_cfg)})
    return trainer


def resume(run_dir: Path, train_overrides: dict[str, Any] | None = None, device: str | None = None,
           threads: int | None = None, callback: Callback | None = None) -> Trainer:
    """The run in `run_dir`, at its last checkpoint (or from scratch if killed before the first one)."""
    run = RunDir(run_dir)
    config = run.read_config()
    run.lock()
    try:
        run.remove_leftovers()
        changed = sorted(set(train_overrides or {}) - RESUMABLE_OVERRIDES)
        if changed:
            raise ConfigError(f"--resume keeps the run's settings; only {', '.join(sorted(RESUMABLE_OVERRIDES))} "
                              f"may change, not {', '.join(changed)}")
        where = str(run.path / "config.json")
        train_cfg = from_dict(TrainConfig, {**config["train"], **(train_overrides or {})}, where=where)
        model_cfg = from_dict(ModelConfig, config["model"], where=where)
        trainer = _assemble(run, Path(config["data_dir"]), model_cfg, train_cfg, device, threads, callback)
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


def _assemble(run: RunDir, data_dir: Path, model_cfg: ModelConfig, cfg: TrainConfig, device_name: str | None,
              threads: int | None, callback: Callback | None) -> Trainer:
    """Load the data and tokenizers, build the model and optimizer (seeded), and hand them to a Trainer."""
    device = pick_device(device_name)
    threads = set_threads(threads)
    keep_freed_memory()
    summary = load_summary(data_dir)
    src_lang, tgt_lang = summary["settings"]["src"], summary["settings"]["tgt"]
    spm_names = {side: summary["spm"][side] for side in ("src", "tgt")}
    spm = {name: (data_dir / name).read_bytes() for name in set(spm_names.values())}
    tgt_tokenizer = Tokenizer(spm[spm_names["tgt"]], str(data_dir / spm_names["tgt"]))
    limit = model_cfg.max_positions - 1  # pairs beyond max_src_len/max_tgt_len or the positions are left out
    data = TrainingData(data_dir / "train.ids.safetensors", cfg.batch_tokens, cfg.seed,
                        min(cfg.max_src_len, limit), min(cfg.max_tgt_len, limit))
    validator = Validator(ParallelIds.load(data_dir / "valid.ids.safetensors"), read_lines(data_dir / f"valid.{tgt_lang}"),
                          tgt_tokenizer, cfg, device)
    seed_everything(cfg.seed)
    model = Transformer(model_cfg).to(device)
    optimizer = build_optimizer(model.parameters(), cfg)
    files = RunFiles(spm, {"spm": spm_names, "src_lang": src_lang, "tgt_lang": tgt_lang,
                           "data_dir": str(data_dir.resolve())})
    return Trainer(cfg, model, optimizer, data, validator, EarlyStopping(cfg.early_stop_metric, cfg.patience), run,
                   files, device, threads, callback)


@dataclass
class Update:
    """What one optimizer update saw: summed loss and NLL over its target tokens; `nonfinite` names what became
    NaN or infinite (the loss or the gradient norm) when the update was not applied."""

    loss: float
    nll: float
    tokens: int
    nonfinite: tuple[str, float] | None = None


def update(model: Transformer, optimizer: torch.optim.Optimizer, group: list, cfg: TrainConfig, device: torch.device,
           step: int) -> Update:
    """Update number `step` over the batches of `group` (gradient accumulation), the loss normalised by their
    target tokens, gradients clipped; the weights are left as they were if the loss or the gradient is not finite."""
    def project(x: torch.Tensor) -> torch.Tensor:
        with autocast(device, cfg.precision):
            return model.output_proj(x)

    n_tokens = sum(b.n_tokens for b in group)
    loss_total, nll_total = 0.0, 0.0
    for batch in group:
        batch = batch.to(device)
        with autocast(device, cfg.precision):
            states = model.decode_states(batch.tgt_in, model.encode(batch.src, batch.src_len))
        loss, nll = loss_backward(states, project, batch.tgt_out, cfg.label_smoothing, SPECIAL.pad, n_tokens)
        loss_total, nll_total = loss_total + loss, nll_total + nll
    what, value = "loss", loss_total
    if math.isfinite(loss_total):
        # the norm is needed anyway to clip; an infinite gradient under a finite loss would poison the weights
        max_norm = cfg.clip_norm if cfg.clip_norm > 0 else math.inf
        what, value = "gradient norm", float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm, foreach=True))
    if not math.isfinite(value):
        optimizer.zero_grad(set_to_none=True)
        return Update(loss_total, nll_total, n_tokens, (what, value))
    set_lr(optimizer, lr_at(step, cfg))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return Update(loss_total, nll_total, n_tokens)
