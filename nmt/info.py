"""`nmt info`: what a directory holds, read from its JSON files and safetensors headers alone.

`describe(path)` recognises four kinds of directory and returns a JSON-friendly dict whose "kind" says which:

    "model"        a model or checkpoint directory: model.safetensors + config.json (+ trainer.json)
    "run"          a run directory: config.json, train_log.jsonl, checkpoints/, best and last links
    "data"         a prepared data directory: prepare.json
    "ctranslate2"  a CTranslate2 export: nmt.json next to CTranslate2's model.bin

Nothing here runs code from the files (JSON and safetensors headers only, never pickle) or loads weights:
the parameter count comes from the tensor shapes in the safetensors header, or, for an export, from the model
config. Nor does it import torch or sentencepiece, so that `nmt info` answers at once (the import-linter
contracts in pyproject.toml keep it so); their versions come from the installed packages' metadata. The file
names are nmt.layout's, the ones the writers use; the readers of each part (JSON, safetensors header,
log, listing) are nmt.info_parts'. Showing the dict is cli/info.py's."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from nmt.config import to_dict
from nmt.errors import CheckpointError, ConfigError, DataError
from nmt.fileio import sha256_file
from nmt.info_parts import (
    best_of,
    files,
    linked_checkpoint,
    minutes,
    model_config,
    object_at,
    parameters_of,
    read_json,
    read_log,
    spm_ok,
    tree_bytes,
    versions,
    vocab,
    weights_header,
)
from nmt.layout import (
    BEST,
    CHECKPOINT_NAME,
    CHECKPOINTS,
    CONFIG_FILE,
    EXPORT_FILE,
    EXPORT_FORMAT,
    LAST,
    LOG_FILE,
    MODEL_FILE,
    PREPARE_JSON,
    TRAINER_JSON,
)

KINDS = ("model", "run", "data", "ctranslate2")
LOOKED_FOR = (
    f"{MODEL_FILE} + {CONFIG_FILE} (a model directory), {CONFIG_FILE} with {CHECKPOINTS}/, best or last "
    f"(a run directory), {PREPARE_JSON} (a prepared data directory) or {EXPORT_FILE} (a CTranslate2 export)"
)


def describe(path: Path) -> dict[str, Any]:
    """What `path` is and holds, as a JSON-friendly dict with a "kind" (one of KINDS); an NmtError when it
    is none of them, naming what was looked for."""
    path = Path(path)
    kind = kind_of(path)
    if kind == "model":
        return describe_model(path)
    if kind == "run":
        return describe_run(path)
    if kind == "data":
        return describe_data(path)
    return describe_export(path)


def kind_of(path: Path) -> str:
    """Which of KINDS `path` is, from the files in it; an NmtError when it is none."""
    if not path.exists():
        raise ConfigError(f"{path}: no such file or directory")
    if not path.is_dir():
        raise ConfigError(f"{path}: a file, not a directory; nmt info looks in a directory for {LOOKED_FOR}")
    if (path / EXPORT_FILE).is_file():
        return "ctranslate2"
    if (path / PREPARE_JSON).is_file():
        return "data"
    config = path / CONFIG_FILE
    if config.is_file() and (path / MODEL_FILE).is_file():
        return "model"
    if config.is_file() and any((path / name).exists() for name in (CHECKPOINTS, BEST, LAST, LOG_FILE)):
        return "run"
    if config.is_file():
        data = read_json(config, CheckpointError)
        if isinstance(data.get("train"), dict) and "data_dir" in data and "spm" not in data:
            return "run"  # a run killed before its first checkpoint and log line
        if isinstance(data.get("model"), dict) and "spm" in data:
            raise CheckpointError(f"{path / MODEL_FILE}: missing; the model directory is incomplete")
    raise ConfigError(f"{path}: not something nmt info knows; it looked for {LOOKED_FOR}")


# ---------------------------------------------------------------------------------------------
# The four kinds


def describe_model(path: Path) -> dict[str, Any]:
    """A model or checkpoint directory: config.json, the safetensors header and trainer.json."""
    config = read_json(path / CONFIG_FILE, CheckpointError)
    model = model_config(config, path / CONFIG_FILE)
    weights = weights_header(path / MODEL_FILE)
    parameters, made_by = weights.pop("parameters"), weights.pop("nmt_version")
    train = config.get("train") if isinstance(config.get("train"), dict) else None
    trainer = None
    if (path / TRAINER_JSON).is_file():
        trainer = {k: v for k, v in read_json(path / TRAINER_JSON, CheckpointError).items() if k != "optimizer"}
    metric = train.get("early_stop_metric") if train else None
    desc: dict[str, Any] = {
        "kind": "model",
        "path": str(path.resolve()),
        "src_lang": config.get("src_lang"),
        "tgt_lang": config.get("tgt_lang"),
        "model": to_dict(model),
        "parameters": parameters,
        "weights": weights,
        "vocab": vocab(model, config.get("spm"), config.get("vocab")),
        "step": config.get("step"),
        "epoch": config.get("epoch"),
        "valid": config.get("valid"),
        "train_minutes": minutes(trainer.get("train_seconds")) if trainer else None,
        "best": best_of(trainer, metric),
        "train": train,
        "trainer": trainer,
        "data_dir": config.get("data_dir"),
        "checksums": {"spm_sha256": config.get("spm_sha256"), "spm_ok": spm_ok(path, config)},
        "versions": versions({"nmt": config.get("nmt_version", made_by)}),
        "files": files(path),
    }
    if "averaged_from" in config:
        desc.update(averaged(config))
    if isinstance(config.get("init"), dict):  # a run started from a model (nmt train --init): its checkpoints say so
        desc["init"] = config["init"]
    return desc


def averaged(config: dict[str, Any]) -> dict[str, Any]:
    """What describes an average of checkpoints (`nmt average`) in place of a checkpoint's step and scores:
    its config.json keeps those of the first checkpoint averaged, which are not the average's. The steps
    averaged are those recorded (by `nmt average` since issue 28), else null; nothing has validated an average."""
    sources = config["averaged_from"] if isinstance(config["averaged_from"], list) else []
    steps = config.get("averaged_steps")
    recorded = isinstance(steps, list) and len(steps) == len(sources) and all(isinstance(s, int) for s in steps)
    return {
        "step": None,
        "epoch": None,
        "valid": None,
        "averaged": {"checkpoints": len(sources), "steps": steps if recorded else None, "validated": False},
        "averaged_from": config["averaged_from"],
    }


def describe_run(path: Path) -> dict[str, Any]:
    """A run directory: its config, log, checkpoints and links, the state of its last checkpoint, and the
    description of its best (else last) checkpoint."""
    config = read_json(path / CONFIG_FILE, CheckpointError)
    train = object_at(config, "train")
    warnings: list[str] = []
    links = {name: linked_checkpoint(path, name, warnings) for name in (BEST, LAST)}
    state: dict[str, Any] = {}
    if links["last"] is not None:
        trainer_json = links["last"] / TRAINER_JSON
        if trainer_json.is_file():
            state = read_json(trainer_json, CheckpointError)
        else:
            warnings.append(f"{trainer_json}: missing; this checkpoint cannot be resumed")
    checkpoints = []
    if (path / CHECKPOINTS).is_dir():
        for child in sorted((path / CHECKPOINTS).iterdir()):
            match = CHECKPOINT_NAME.fullmatch(child.name)
            if match and child.is_dir():
                checkpoints.append({"name": child.name, "step": int(match.group(1)), "bytes": tree_bytes(child)})
    checkpoints.sort(key=lambda c: cast(int, c["step"]))
    described = links["best"] or links["last"]
    best = best_of(state, train.get("early_stop_metric"))
    if best is not None and links["best"] is not None:
        best["checkpoint"] = links["best"].name
    model = describe_model(described) if described is not None and (described / MODEL_FILE).is_file() else None
    started = {"init": config["init"]} if isinstance(config.get("init"), dict) else {}
    return {
        **started,
        "kind": "run",
        "path": str(path.resolve()),
        "src_lang": model["src_lang"] if model else None,
        "tgt_lang": model["tgt_lang"] if model else None,
        "data_dir": config.get("data_dir"),
        "step": state.get("step", 0),
        "epoch": state.get("epoch", 0),
        "train_minutes": minutes(state.get("train_seconds", 0.0)),
        "best": best,
        "last": {"step": state.get("step"), "checkpoint": links["last"].name} if links["last"] else None,
        "checkpoints": checkpoints,
        "last_valid": state.get("last_valid") or None,
        "log": read_log(path / LOG_FILE),
        "config": config,
        "model": model,
        "warnings": warnings,
        "versions": versions({"nmt": config.get("nmt_version")}),
        "files": files(path),
    }


def describe_data(path: Path) -> dict[str, Any]:
    """A prepared data directory: prepare.json, with the number of pairs of every split."""
    summary = read_json(path / PREPARE_JSON, DataError)
    settings = object_at(summary, "settings")
    spm = object_at(summary, "spm")
    sizes = object_at(summary, "vocab_size")
    splits = {}
    for name, split in object_at(summary, "splits").items():
        if isinstance(split, dict):
            splits[name] = {"pairs": split.get("kept", split.get("lines")), **split}
    sums = object_at(spm, "sha256")
    tokenizer = {"tokenizer": summary["tokenizer"]} if isinstance(summary.get("tokenizer"), dict) else {}
    return {
        **tokenizer,
        "kind": "data",
        "path": str(path.resolve()),
        "src_lang": settings.get("src"),
        "tgt_lang": settings.get("tgt"),
        "vocab": {
            "src": sizes.get("src"),
            "tgt": sizes.get("tgt"),
            "joint": spm.get("src") == spm.get("tgt"),
            "spm": {side: spm.get(side) for side in ("src", "tgt")},
        },
        "splits": splits,
        "settings": settings,
        "special_ids": summary.get("special_ids"),
        "checksums": {
            "fingerprint": summary.get("fingerprint"),
            "inputs": summary.get("inputs"),
            "spm_sha256": sums,
            "spm_ok": spm_ok(path, {"spm": spm, "spm_sha256": sums}),
        },
        "versions": versions({"nmt": summary.get("nmt_version")}),
        "files": files(path),
    }


def describe_export(path: Path) -> dict[str, Any]:
    """A CTranslate2 export: nmt.json (the model config, checksums, where it came from). The languages come
    from the exported model's config.json when it is still there, unchanged."""
    desc = read_json(path / EXPORT_FILE, CheckpointError)
    if desc.get("format") != EXPORT_FORMAT:
        raise CheckpointError(
            f"{path / EXPORT_FILE}: format {desc.get('format')!r}, expected {EXPORT_FORMAT!r}; re-run nmt export"
        )
    model = model_config(desc, path / EXPORT_FILE)
    source = object_at(desc, "source")
    langs: dict[str, Any] = {}
    source_config = Path(str(source.get("path", ""))) / CONFIG_FILE
    if source.get("path") and source_config.is_file() and sha256_file(source_config) == source.get("config_sha256"):
        langs = read_json(source_config, CheckpointError)
    return {
        "kind": "ctranslate2",
        "path": str(path.resolve()),
        "src_lang": langs.get("src_lang"),
        "tgt_lang": langs.get("tgt_lang"),
        "model": to_dict(model),
        "parameters": parameters_of(model),
        "quantization": desc.get("quantization"),
        "vocab": vocab(model, desc.get("spm"), desc.get("vocab")),
        "source": source,
        "checksums": {
            "model_bin_sha256": desc.get("model_bin_sha256"),
            "spm_sha256": desc.get("spm_sha256"),
            "spm_ok": spm_ok(path, desc),
        },
        "versions": versions({"nmt": desc.get("nmt_version"), "ctranslate2": desc.get("ctranslate2_version")}),
        "files": files(path),
    }
