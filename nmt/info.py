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
names are nmt.layout's, the ones the writers use."""

from __future__ import annotations

import json
import math
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any, cast

from safetensors import SafetensorError, safe_open

from nmt import fileio
from nmt.config import ModelConfig, from_dict, to_dict
from nmt.errors import CheckpointError, ConfigError, DataError, NmtError
from nmt.fileio import JsonFileError, sha256_file
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
from nmt.version import __version__

KINDS = ("model", "run", "data", "ctranslate2")
DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}
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
        "vocab": vocab(model, config.get("spm")),
        "step": config.get("step"),
        "epoch": config.get("epoch"),
        "valid": config.get("valid"),
        "train_minutes": _minutes(trainer.get("train_seconds")) if trainer else None,
        "best": best_of(trainer, metric),
        "train": train,
        "trainer": trainer,
        "data_dir": config.get("data_dir"),
        "checksums": {"spm_sha256": config.get("spm_sha256"), "spm_ok": spm_ok(path, config)},
        "versions": versions({"nmt": config.get("nmt_version", made_by)}),
        "files": files(path),
    }
    if "averaged_from" in config:
        desc["averaged_from"] = config["averaged_from"]
    return desc


def describe_run(path: Path) -> dict[str, Any]:
    """A run directory: its config, log, checkpoints and links, the state of its last checkpoint, and the
    description of its best (else last) checkpoint."""
    config = read_json(path / CONFIG_FILE, CheckpointError)
    train = _object(config, "train")
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
    return {
        "kind": "run",
        "path": str(path.resolve()),
        "src_lang": model["src_lang"] if model else None,
        "tgt_lang": model["tgt_lang"] if model else None,
        "data_dir": config.get("data_dir"),
        "step": state.get("step", 0),
        "epoch": state.get("epoch", 0),
        "train_minutes": _minutes(state.get("train_seconds", 0.0)),
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
    settings = _object(summary, "settings")
    spm = _object(summary, "spm")
    sizes = _object(summary, "vocab_size")
    splits = {}
    for name, split in _object(summary, "splits").items():
        if isinstance(split, dict):
            splits[name] = {"pairs": split.get("kept", split.get("lines")), **split}
    sums = _object(spm, "sha256")
    return {
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
    source = _object(desc, "source")
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
        "vocab": vocab(model, desc.get("spm")),
        "source": source,
        "checksums": {
            "model_bin_sha256": desc.get("model_bin_sha256"),
            "spm_sha256": desc.get("spm_sha256"),
            "spm_ok": spm_ok(path, desc),
        },
        "versions": versions({"nmt": desc.get("nmt_version"), "ctranslate2": desc.get("ctranslate2_version")}),
        "files": files(path),
    }


# ---------------------------------------------------------------------------------------------
# Parts


def read_json(path: Path, error: type[NmtError]) -> dict[str, Any]:
    """A JSON object from `path`, or `error` naming the file and what is wrong with it."""
    try:
        return fileio.read_json(path)
    except FileNotFoundError:
        raise error(f"{path}: missing") from None
    except OSError as e:
        raise error(f"{path}: cannot read it ({e.strerror})") from None
    except JsonFileError as e:
        if e.problem == "size":
            raise error(
                f"{path}: {e.detail} bytes, too large to be nmt's; the directory is not nmt's or is damaged"
            ) from None
        if e.problem == "type":
            raise error(f"{path}: expected a JSON object; the file is damaged") from None
        raise error(f"{path}: not valid JSON ({e.detail[:200]}); the file is damaged") from None


def model_config(config: dict[str, Any], where: Path) -> ModelConfig:
    """The "model" of a config.json or nmt.json, checked as loading it would check it."""
    if not isinstance(config.get("model"), dict):
        raise CheckpointError(f'{where}: no model config (a JSON object under "model"); not an nmt model')
    try:
        return from_dict(ModelConfig, config["model"], where=str(where))
    except (ConfigError, TypeError, ArithmeticError) as e:
        raise CheckpointError(f"{where}: invalid model config: {e}") from None


def weights_header(weights: Path) -> dict[str, Any]:
    """Parameter count, dtypes, tensor count and size from the safetensors header alone (no weight is read).
    Tied weights are stored once (safetensors' save_model names their other names in the metadata), so
    the count is that of the model's distinct parameters."""
    try:
        with safe_open(str(weights), framework="numpy") as f:
            meta = f.metadata() or {}
            shapes = {name: (f.get_slice(name).get_dtype(), f.get_slice(name).get_shape()) for name in f.keys()}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(
            f"{weights}: unreadable safetensors file ({e}); the checkpoint is truncated or corrupted"
        ) from None
    dtypes = sorted({DTYPES.get(str(dtype), str(dtype)) for dtype, _ in shapes.values()})
    return {
        "parameters": sum(math.prod(shape) for _, shape in shapes.values()),
        "tensors": len(shapes),
        "dtype": dtypes[0] if len(dtypes) == 1 else dtypes,
        "shared": {name: kept for name, kept in sorted(meta.items()) if kept in shapes},
        "bytes": weights.stat().st_size,
        "nmt_version": meta.get("nmt_version"),
    }


def parameters_of(model: ModelConfig) -> int:
    """The number of distinct parameters of nmt.model.Transformer built from `model` (for an export, whose
    weights are in CTranslate2's format): embeddings (shared or tied ones once), each layer's attention
    projections with biases, feed-forward and LayerNorms, and the final LayerNorms of a pre-norm model."""
    d, ffn = model.d_model, model.ffn_dim
    attention = 4 * d * d + 4 * d  # fused qkv (or q + fused kv) and the output projection, with biases
    feed_forward = 2 * d * ffn + ffn + d
    norm = 2 * d
    encoder = model.enc_layers * (attention + feed_forward + 2 * norm)
    decoder = model.dec_layers * (2 * attention + feed_forward + 3 * norm)
    embeddings = model.src_vocab_size * d
    if not model.share_all_embeddings:
        embeddings += model.tgt_vocab_size * d
    if not (model.share_all_embeddings or model.tie_output):
        embeddings += model.tgt_vocab_size * d  # the output projection, without bias
    return embeddings + encoder + decoder + (2 * norm if model.pre_norm else 0)


def vocab(model: ModelConfig, spm: Any) -> dict[str, Any]:
    names = {side: spm.get(side) for side in ("src", "tgt")} if isinstance(spm, dict) else {"src": None, "tgt": None}
    return {
        "src": model.src_vocab_size,
        "tgt": model.tgt_vocab_size,
        "joint": names["src"] == names["tgt"],
        "shared_embeddings": model.share_all_embeddings,
        "tied_output": model.share_all_embeddings or model.tie_output,
        "spm": names,
    }


def spm_ok(path: Path, desc: dict[str, Any]) -> bool | None:
    """Whether the SentencePiece model(s) named in `desc` are in `path` with the recorded sha256; None when
    nothing is recorded."""
    spm, sums = desc.get("spm"), desc.get("spm_sha256")
    if not isinstance(spm, dict) or not isinstance(sums, dict) or not sums:
        return None
    for name in {spm.get("src"), spm.get("tgt")}:
        if not isinstance(name, str) or "/" in name or not (path / name).is_file():
            return False
        if sha256_file(path / name) != sums.get(name):
            return False
    return True


def best_of(state: dict[str, Any] | None, metric: Any) -> dict[str, Any] | None:
    """The best validation so far as a trainer.json records it, with the name of its metric."""
    if not state or state.get("best_step") is None:
        return None
    return {"step": state["best_step"], "metric": metric, "value": state.get("best_metric")}


def linked_checkpoint(run: Path, name: str, warnings: list[str]) -> Path | None:
    """The checkpoint a run's `best` or `last` link points at; a dangling link is a warning."""
    link = run / name
    if link.is_symlink() and not link.exists():
        warnings.append(f"{link}: points at {os.readlink(link)}, which is missing")
        return None
    if not (link / CONFIG_FILE).is_file():
        return None
    return link.resolve()


def read_log(log: Path) -> dict[str, Any] | None:
    """The run log's extent: its records, and the last step and training minutes logged (ahead of the last
    checkpoint when the run was stopped between two)."""
    if not log.is_file():
        return None
    lines, last = 0, cast(dict[str, Any], {})
    with open(log, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line torn by a crash
            if not isinstance(record, dict):
                continue
            lines, last = lines + 1, record
    return {"records": lines, "last_step": last.get("step"), "train_minutes": last.get("train_minutes")}


def versions(recorded: dict[str, Any]) -> dict[str, dict[str, str | None]]:
    """The versions that made the files (where they are recorded) and those installed here."""
    here: dict[str, str | None] = {"nmt": __version__, "python": platform.python_version()}
    for package in ("torch", "sentencepiece", "safetensors", "ctranslate2"):
        try:
            here[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            here[package] = None
    made: dict[str, str | None] = {k: str(v) for k, v in recorded.items() if v is not None}
    return {"recorded": made, "environment": here}


def files(path: Path) -> list[dict[str, Any]]:
    """The directory's entries (hidden ones left out), sorted by name: files with their size in bytes,
    folders with the size of everything in them, links with their target."""
    entries: list[dict[str, Any]] = []
    for child in sorted(path.iterdir(), key=lambda p: p.name):
        if child.name.startswith("."):
            continue
        if child.is_symlink():
            entries.append({"name": child.name, "type": "link", "target": os.readlink(child)})
        elif child.is_dir():
            entries.append({"name": child.name, "type": "dir", "bytes": tree_bytes(child)})
        else:
            entries.append({"name": child.name, "type": "file", "bytes": child.stat().st_size})
    return entries


def tree_bytes(path: Path) -> int:
    """Bytes of the files under `path`, links not followed."""
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass  # removed meanwhile (a run pruning its checkpoints)
    return total


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    """data[key] when it is a JSON object, else an empty one."""
    value = data.get(key)
    return cast(dict[str, Any], value) if isinstance(value, dict) else {}


def _minutes(seconds: Any) -> float | None:
    return float(seconds) / 60 if isinstance(seconds, int | float) else None
