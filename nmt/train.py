"""Making a `Trainer` (nmt.trainer): a new run on a prepared data directory (`start`), from scratch or from the
weights of a model (`init_from`: fine-tuning), or a run resumed from its last checkpoint (`resume`): the run
directory, the data and tokenizers, the model and optimizer (seeded), and the process group, put together. The
loop itself, the update step and the checkpoints live in nmt.trainer, nmt.update and nmt.checkpointer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nmt import distributed
from nmt.checkpointer import RunFiles
from nmt.config import ModelConfig, TrainConfig, from_dict, to_dict
from nmt.data import ParallelIds, TrainingData, read_lines
from nmt.distributed import SINGLE, Group
from nmt.errors import ConfigError, TrainingError
from nmt.files import data_specials, data_tokenizer, data_vocab_files
from nmt.layout import CONFIG_FILE, ids_file, load_summary
from nmt.lineage import check_languages, check_vocabulary, init_record, same_model
from nmt.model import build_model
from nmt.modeldir import load_model_dir
from nmt.optim import build_optimizer
from nmt.rundir import RunDir
from nmt.runtime import keep_freed_memory, pick_device, seed_everything, set_threads
from nmt.setting import Spell
from nmt.trainer import Callback, Trainer
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
__all__ = [
    "RESUMABLE_OVERRIDES",
    "Init",
    "Trainer",
    "TrainingError",
    "init_from",
    "model_config_for",
    "resume",
    "resumed_configs",
    "start",
]


def model_config_for(data_dir: Path, overrides: dict[str, Any]) -> ModelConfig:
    """Vocabulary sizes come from the prepared data; separate vocabularies cannot share embeddings."""
    summary = load_summary(Path(data_dir))
    values = {
        "src_vocab_size": summary["vocab_size"]["src"],
        "tgt_vocab_size": summary["vocab_size"]["tgt"],
        "pad_id": data_specials(summary).pad,
    }
    if summary["spm"]["src"] != summary["spm"]["tgt"]:
        values["share_all_embeddings"] = False
    for key in ("src_vocab_size", "tgt_vocab_size", "pad_id"):
        if key in overrides and overrides[key] != values[key]:
            raise ConfigError(f"{key} is fixed by the prepared data ({values[key]}); remove it from the config")
    return from_dict(ModelConfig, {**overrides, **values}, where="[model]")


# -- making a Trainer: a new run, or one resumed from its last checkpoint ---------------------------


@dataclass
class Init:
    """The model a run starts from (`--init`): its shape, its weights, and the record of which model it was."""

    model_cfg: ModelConfig
    weights: dict[str, torch.Tensor]  # empty when a checkpoint brings them (a resumed run)
    record: dict[str, Any]


def init_from(model: Path, data_dir: Path, overrides: dict[str, Any], spell: Spell = str) -> Init:
    """The model in `model` (a model, checkpoint or run directory) to start a run on `data_dir` from: its [model]
    settings (a different value in `overrides` is an error, named by `spell`), its weights, and its record. The
    data must be encoded with its tokenizers (`nmt prepare --tokenizer MODEL`)."""
    loaded = load_model_dir(model)
    mine = to_dict(loaded.model.config)
    for key, value in overrides.items():
        if key in mine and value != mine[key]:
            raise ConfigError(
                f"{spell(key)} {value} conflicts with --init {model}, whose {key} is {mine[key]}; "
                "a run started from a model has the model's [model] settings: leave it out"
            )
    model_cfg = from_dict(ModelConfig, {**mine, **overrides}, where="[model]", spell=spell)
    summary = load_summary(Path(data_dir))
    check_languages(Path(data_dir), summary, model, loaded.config)
    check_vocabulary(Path(data_dir), summary, model, loaded.config)
    return Init(model_cfg, loaded.model.state_dict(), init_record(loaded.path.resolve()))


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
    init: Path | None = None,
    spell: Spell = str,
) -> Trainer:
    """A new run in `run_dir` on the prepared data in `data_dir`; --overwrite replaces a run already there.
    With several processes, each calls it; rank 0 writes the run directory once all have joined. `init`: start
    from that model's weights and shape (`init_from`; `spell` names the settings of `model_overrides`), with a
    fresh optimizer and schedule."""
    run = RunDir(run_dir, writer=group.writer)
    if run.path.exists() and not run.path.is_dir():
        raise ConfigError(f"{run.path}: exists and is not a directory; choose another --out")
    if run.holds_a_run() and not overwrite:
        raise ConfigError(
            f"{run.path}: already holds a run; continue it with `nmt train --resume {run.path}`, "
            "or add --overwrite to start over"
        )
    start_from = init_from(init, data_dir, model_overrides, spell) if init is not None else None
    model_cfg = start_from.model_cfg if start_from else model_config_for(data_dir, model_overrides)
    trainer = _assemble(run, Path(data_dir), model_cfg, train_cfg, device, threads, callback, group, start_from)
    run.lock()  # never wipe a directory another trainer is writing to
    run.wipe()
    run.write_config(
        {
            "nmt_version": __version__,
            "data_dir": str(Path(data_dir).resolve()),
            "model": to_dict(model_cfg),
            "train": to_dict(train_cfg),
            **({"init": start_from.record} if start_from else {}),
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
    spell: Spell = str,
) -> Trainer:
    """The run in `run_dir`, at its last checkpoint (or from scratch if killed before the first one). With
    several processes, each calls it and all read the same checkpoint. `spell` names a setting as the caller
    gives `train_overrides` (the command line: by its flag)."""
    run = RunDir(run_dir, writer=group.writer)
    config = run.read_config()
    run.lock()
    try:
        run.remove_leftovers()
        model_cfg, train_cfg = _resumed(config, train_overrides, str(run.path / CONFIG_FILE), spell)
        last = run.last()
        start_from = _started_from(config, model_cfg, weights=last is None)
        data_dir = Path(config["data_dir"])
        trainer = _assemble(run, data_dir, model_cfg, train_cfg, device, threads, callback, group, start_from)
        if last is not None:
            trainer.restore(last)
        else:
            run.truncate_log(0)  # killed before the first checkpoint: start over, log included
        trainer.checkpointer.forget_the_future(trainer.state.step, trainer.early.best_step)
    except BaseException:
        run.close()  # a refused resume must not keep the run locked
        raise
    return trainer


def _started_from(config: dict[str, Any], model_cfg: ModelConfig, weights: bool) -> Init | None:
    """The model a resumed run started from (`init` in its config.json), if any. Its weights are read again only
    when asked (`weights`: a run killed before its first checkpoint starts over, from the model again, which must
    still be as it was); otherwise they come from the checkpoint."""
    record = config.get("init")
    if not isinstance(record, dict):
        return None
    if not weights:
        return Init(model_cfg, {}, record)
    loaded = load_model_dir(same_model(record))
    return Init(model_cfg, loaded.model.state_dict(), record)


def resumed_configs(
    run_dir: Path, train_overrides: dict[str, Any] | None = None, spell: Spell = str
) -> tuple[ModelConfig, TrainConfig]:
    """What `resume` would go on with, read without touching the run: its model and training configs, with the
    overrides that --resume allows."""
    run = RunDir(run_dir, writer=False)
    return _resumed(run.read_config(), train_overrides, str(run.path / CONFIG_FILE), spell)


def _resumed(
    config: dict[str, Any], train_overrides: dict[str, Any] | None, where: str, spell: Spell
) -> tuple[ModelConfig, TrainConfig]:
    overrides = train_overrides or {}
    changed = sorted(set(overrides) - RESUMABLE_OVERRIDES)
    if changed:
        raise ConfigError(
            f"--resume keeps the run's settings; only {', '.join(map(spell, sorted(RESUMABLE_OVERRIDES)))} "
            f"may change, not {', '.join(map(spell, changed))}"
        )
    from_dict(TrainConfig, config["train"], where=where)  # the run's own, then what the overrides make of it
    given: Spell = lambda key: spell(key) if key in overrides else key  # noqa: E731
    train_cfg = from_dict(TrainConfig, {**config["train"], **overrides}, where="", spell=given)
    return from_dict(ModelConfig, config["model"], where=where), train_cfg


def _assemble(
    run: RunDir,
    data_dir: Path,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    device_name: str | None,
    threads: int | None,
    callback: Callback | None,
    group: Group,
    start_from: Init | None = None,
) -> Trainer:
    """Load the data and tokenizers, build the model (with the weights of `start_from`, if it has any) and
    optimizer (seeded), join the other processes of the run if any, and hand it all to a Trainer."""
    device = pick_device(distributed.device_name(group, device_name))
    threads = set_threads(threads, share=group.local_world if device.type == "cpu" else 1)
    keep_freed_memory()
    summary = load_summary(data_dir)
    src_lang, tgt_lang = summary["settings"]["src"], summary["settings"]["tgt"]
    spm_names = {side: summary["spm"][side] for side in ("src", "tgt")}
    spm = {name: (data_dir / name).read_bytes() for name in set(spm_names.values())}
    tgt_tokenizer = data_tokenizer(data_dir, summary, "tgt")  # through its vocabulary, if the data has one
    specials, vocab = data_specials(summary), data_vocab_files(data_dir, summary)
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
        specials,
    )
    seed_everything(cfg.seed)
    model = build_model(model_cfg).to(device)
    if start_from is not None and start_from.weights:  # after the seeded initialisation: the same random draws follow
        model.load_state_dict(start_from.weights)
    optimizer = build_optimizer(model.parameters(), cfg, device)
    if group.rank:
        seed_everything(cfg.seed + group.rank)  # the same weights (DDP copies rank 0's anyway), other dropout draws
    distributed.start(group, device)
    meta = {"spm": spm_names, "src_lang": src_lang, "tgt_lang": tgt_lang, "data_dir": str(data_dir.resolve())}
    if start_from is not None:  # every checkpoint (and an average of them) says where the run started
        meta["init"] = start_from.record
    if vocab:  # the checkpoints carry the vocabularies as they carry the SentencePiece models
        meta["vocab"] = {side: summary["vocab"][side] for side in ("src", "tgt")}
    files = RunFiles(spm, meta, vocab)
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
        specials,
    )
