"""The parts `nmt info` reads a directory by: size-capped JSON files, a model config checked as loading checks it,
a safetensors header (no weight is read), the parameter count a config implies, SentencePiece sums, a run's
links and log, versions, and the listing of files. Each names the file and what is wrong with it (an NmtError).

Knows nothing of the kinds of directory (nmt.info puts these together for each) nor of how they are shown
(cli/info.py); imports neither torch nor sentencepiece."""

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
from nmt.config import ModelConfig, from_dict
from nmt.errors import CheckpointError, ConfigError, NmtError
from nmt.fileio import JsonFileError, sha256_file
from nmt.layout import CONFIG_FILE
from nmt.version import __version__

DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}


def read_json(path: Path, error: type[NmtError]) -> dict[str, Any]:
    """A JSON object from `path`, or `error` naming the file and what is wrong with it."""
    try:
        return fileio.read_json(path)
    except FileNotFoundError as e:
        raise error(f"{path}: missing") from e
    except OSError as e:
        raise error(f"{path}: cannot read it ({e.strerror})") from e
    except JsonFileError as e:
        if e.problem == "size":
            raise error(
                f"{path}: {e.detail} bytes, too large to be nmt's; the directory is not nmt's or is damaged"
            ) from e
        if e.problem == "type":
            raise error(f"{path}: expected a JSON object; the file is damaged") from e
        raise error(f"{path}: not valid JSON ({e.detail[:200]}); the file is damaged") from e


def model_config(config: dict[str, Any], where: Path) -> ModelConfig:
    """The "model" of a config.json or nmt.json, checked as loading it would check it."""
    if not isinstance(config.get("model"), dict):
        raise CheckpointError(f'{where}: no model config (a JSON object under "model"); not an nmt model')
    try:
        return from_dict(ModelConfig, config["model"], where=str(where))
    except (ConfigError, TypeError, ArithmeticError) as e:
        raise CheckpointError(f"{where}: invalid model config: {e}") from e


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
        ) from e
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
        embeddings += model.tgt_vocab_size * d  # the output projection's weight
    if model.output_bias:
        embeddings += model.tgt_vocab_size  # and its bias, its own even when the weight is tied
    return embeddings + encoder + decoder + (2 * norm if model.pre_norm else 0)


def vocab(model: ModelConfig, spm: Any, maps: Any = None) -> dict[str, Any]:
    """The vocabularies' sizes and files; `maps`, an imported model's vocabulary files (config.json's "vocab"),
    appear as "maps" (left out for nmt's own, whose ids are SentencePiece's)."""
    names = {side: spm.get(side) for side in ("src", "tgt")} if isinstance(spm, dict) else {"src": None, "tgt": None}
    found = {
        "src": model.src_vocab_size,
        "tgt": model.tgt_vocab_size,
        "joint": names["src"] == names["tgt"],
        "shared_embeddings": model.share_all_embeddings,
        "tied_output": model.share_all_embeddings or model.tie_output,
        "spm": names,
    }
    if isinstance(maps, dict):
        found["maps"] = {side: maps.get(side) for side in ("src", "tgt")}
    return found


def spm_ok(path: Path, desc: dict[str, Any]) -> bool | None:
    """Whether the SentencePiece model(s) named in `desc`, and the vocabularies that map their pieces where it
    names some ("vocab" + "vocab_sha256"), are in `path` with the recorded sha256; None when nothing is
    recorded."""
    checked = [(desc.get("spm"), desc.get("spm_sha256"))]
    if "vocab" in desc:
        checked.append((desc.get("vocab"), desc.get("vocab_sha256")))
    for names, sums in checked:
        if not isinstance(names, dict) or not isinstance(sums, dict) or not sums:
            return None
        for name in {names.get("src"), names.get("tgt")}:
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


def object_at(data: dict[str, Any], key: str) -> dict[str, Any]:
    """data[key] when it is a JSON object, else an empty one."""
    value = data.get(key)
    return cast(dict[str, Any], value) if isinstance(value, dict) else {}


def minutes(seconds: Any) -> float | None:
    """Seconds as minutes, when they are a number."""
    return float(seconds) / 60 if isinstance(seconds, int | float) else None
