"""A model directory: writing one atomically and reading one back, checking every file on the way. What
inference needs from disk, and all of it: no training state, no distributed training.

    MODEL_DIR/{model.safetensors, config.json, spm.model (or one per language)}
    MODEL_DIR/vocab.json (or one per language)   an imported model's: SentencePiece pieces -> the model's ids

`model.safetensors` + `config.json` + the SentencePiece model(s) (+ vocabularies) are enough to translate. A
checkpoint of a run is a model directory plus the trainer state that nmt.checkpoint reads and writes. A directory
is written whole or not at all (temporary directory, fsync, rename: nmt.fileio), so a crash at any moment leaves
the previous one intact and never a half-written one. Weights go through safetensors: nothing is pickled, and
no code from the files runs.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_file, save_model
from torch.overrides import TorchFunctionMode

from nmt.config import ModelConfig, from_dict, to_dict
from nmt.errors import CheckpointError, ConfigError, NmtError
from nmt.fileio import commit_dir, sha256_bytes, write_json
from nmt.files import checked_tokenizers, read_json
from nmt.info import kind_of
from nmt.layout import BEST, CONFIG_FILE, LAST, MODEL_FILE, TRAINER_JSON, TRAINER_TENSORS
from nmt.model import Transformer, build_model
from nmt.tokenizer import SpecialIds, Tokenizer
from nmt.version import __version__

MAX_POSITION_TABLE = 1 << 28  # max_positions * d_model: the sinusoid table is built, not loaded, so bound it


# ---------------------------------------------------------------------------------------------
# Writing


class CheckpointWriteError(CheckpointError, OSError):
    """Writing a checkpoint failed (a full disk, a file-size limit): a clear error, and still an OSError."""

    def __init__(self, path: Path, reason: str, full: bool = True):
        fix = (
            "free some disk space and try again"
            if full
            else f"check that {path.parent} is writable, or write elsewhere"
        )
        super().__init__(f"{path}: could not write the checkpoint ({reason}); {fix}")
        self.path, self.reason = path, reason


def save_model_dir(
    path: Path,
    model: Transformer,
    meta: dict[str, Any],
    spm_files: dict[str, bytes],
    trainer_tensors: dict[str, torch.Tensor] | None = None,
    trainer_state: dict[str, Any] | None = None,
    vocab_files: dict[str, bytes] | None = None,
) -> Path:
    """Write a model (or checkpoint) directory atomically; returns its path. `spm_files` and `vocab_files` are
    the tokenizer's files by name (`meta` names them per side: "spm" and, for a vocabulary that maps the pieces
    to other ids, "vocab": {"src": ..., "tgt": ...}); config.json records their sha256 (spm_sha256, vocab_sha256).

    A failed write (a full disk, a file-size limit) is a CheckpointWriteError and leaves nothing behind.
    """
    if bool(vocab_files) != ("vocab" in meta):
        raise ValueError('vocab_files and meta["vocab"] (their names per side) go together')
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        # save_model drops the duplicate names of tied weights; load_model restores them
        save_model(model, str(tmp / MODEL_FILE), metadata={"format": "pt", "nmt_version": __version__})
        config = {"nmt_version": __version__, "model": to_dict(model.config), **meta}
        config["spm_sha256"] = {name: sha256_bytes(data) for name, data in spm_files.items()}
        if vocab_files:
            config["vocab_sha256"] = {name: sha256_bytes(data) for name, data in vocab_files.items()}
        write_json(tmp / CONFIG_FILE, config)
        for name, data in {**spm_files, **(vocab_files or {})}.items():
            (tmp / name).write_bytes(data)
        if trainer_tensors is not None:
            save_file({k: v.contiguous() for k, v in trainer_tensors.items()}, str(tmp / TRAINER_TENSORS))
        if trainer_state is not None:
            write_json(tmp / TRAINER_JSON, trainer_state)
        commit_dir(tmp, path)
    except (OSError, SafetensorError) as e:
        if isinstance(e, OSError) and e.strerror:
            reason = e.strerror + (f": {Path(e.filename).name}" if e.filename else "")
            full = e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
        else:  # safetensors: "Error while serializing: I/O error: No space left on device (os error 28)"
            reason = str(e).rpartition("I/O error: ")[2]
            full = any(f"(os error {n})" in reason for n in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT))
        raise CheckpointWriteError(path, reason, full) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


# ---------------------------------------------------------------------------------------------
# Reading


def resolve_model_dir(path: Path) -> Path:
    """A checkpoint directory, or a run directory meaning its `best` (else `last`) checkpoint."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such model directory")
    if (path / CONFIG_FILE).is_file() and (path / MODEL_FILE).exists():
        return path
    for name in (BEST, LAST):
        if (path / name / CONFIG_FILE).is_file():
            return (path / name).resolve()
    if other := _what_else(path):
        raise CheckpointError(f"{path}: {other}")
    if (path / MODEL_FILE).exists() or (path / CONFIG_FILE).exists():
        missing = MODEL_FILE if not (path / MODEL_FILE).exists() else CONFIG_FILE
        raise CheckpointError(f"{path / missing}: missing; the model directory is incomplete")
    raise CheckpointError(
        f"{path}: neither a model directory ({MODEL_FILE} + {CONFIG_FILE}) nor a run directory with best/ or last/"
    )


def _what_else(path: Path) -> str | None:
    """What to do with a directory of nmt's that holds no model: prepared data, or an export (nmt.info knows
    the kinds of directory)."""
    try:
        kind = kind_of(path)
    except NmtError:
        return None
    if kind == "data":
        return f"this is prepared data; train a model on it with `nmt train {path} --out RUN_DIR`"
    if kind == "ctranslate2":
        return "a CTranslate2 export, which only the CTranslate2 engine reads; use the PyTorch model directory"
    return None


@dataclass
class LoadedModel:
    model: Transformer
    config: dict[str, Any]  # the whole config.json
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    path: Path

    @property
    def specials(self) -> SpecialIds:
        """The model's special ids: its vocabulary's (load_model_dir checked that both sides agree)."""
        return self.tgt_tokenizer.specials


def load_model_dir(path: Path, device: torch.device | str = "cpu") -> LoadedModel:
    """Load weights, config and tokenizers, checking every file; never runs code from the files."""
    path = resolve_model_dir(Path(path))
    config = read_json(path / CONFIG_FILE)
    if not isinstance(config.get("model"), dict):
        raise CheckpointError(
            f'{path / CONFIG_FILE}: no model config (a JSON object under "model"); not an nmt checkpoint'
        )
    try:
        model_config = from_dict(ModelConfig, config["model"], where=str(path / CONFIG_FILE))
    except (ConfigError, TypeError, ArithmeticError) as e:
        raise CheckpointError(f"{path / CONFIG_FILE}: invalid model config: {e}") from e
    tokenizers = checked_tokenizers(
        path,
        config,
        path / CONFIG_FILE,
        fix="not an nmt checkpoint",
        missing=f"copy the SentencePiece model used for training into {path}",
        mismatch="SentencePiece model does not match the checkpoint (sha256 differs); "
        "use the spm model this model was trained with",
    )
    weights = path / MODEL_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing; the model directory is incomplete")
    check_weights(weights, model_config)
    if model_config.pad_id != tokenizers[1].specials.pad:
        raise CheckpointError(
            f"{path / CONFIG_FILE}: the model's pad_id is {model_config.pad_id}, its vocabulary's <pad> is "
            f"{tokenizers[1].specials.pad}; the config does not belong to this vocabulary"
        )
    model = build_model(model_config)
    try:
        missing, unexpected = load_model(model, str(weights), strict=True, device=str(device))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(
            f"{weights}: unreadable safetensors file ({e}); the checkpoint is truncated or corrupted"
        ) from e
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise CheckpointError(
            f"{weights}: weights do not fit the model in {CONFIG_FILE} ({' '.join(first[:3])[:300]})"
        ) from e
    model.to(device)
    bad = non_finite_weight(model)
    if bad is not None:
        raise CheckpointError(f"{weights}: non-finite values in {bad}; the checkpoint is poisoned, use an earlier one")
    return LoadedModel(model.eval(), config, tokenizers[0], tokenizers[1], path)


def non_finite_weight(model: torch.nn.Module) -> str | None:
    """The name of the first floating-point weight holding a NaN or an infinity, if any."""
    return next(
        (n for n, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()), None
    )


class _ShapesOnly(TorchFunctionMode):
    """Skips `normal_` while a module is built on the meta device, where tensors have shapes and
    no values: torch's meta `normal_` imports torch._dynamo on first use, 0.8 s of `nmt translate`'s
    start-up."""

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Collection[type],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func in (torch.nn.init.normal_, torch.Tensor.normal_):
            return args[0] if args else kwargs["tensor"]  # the tensor, left as it is
        return func(*args, **kwargs)


def check_weights(weights: Path, model_config: ModelConfig) -> None:
    """Compare the names, shapes and dtypes in the file's header with the model the config describes,
    before anything is allocated: a hostile config or header is an error, never a huge allocation."""
    try:
        with safe_open(str(weights), framework="pt") as f:  # reads the header only
            aliases = f.metadata() or {}  # names save_model dropped as duplicates of a shared tensor
            declared = {name: (f.get_slice(name).get_dtype(), list(f.get_slice(name).get_shape())) for name in f.keys()}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(
            f"{weights}: unreadable safetensors file ({e}); the checkpoint is truncated or corrupted"
        ) from e
    where = weights.with_name(CONFIG_FILE)
    if model_config.enc_layers + model_config.dec_layers > len(declared):
        raise CheckpointError(
            f"{where}: {model_config.enc_layers}+{model_config.dec_layers} layers, but {weights.name} "
            f"holds only {len(declared)} tensors; the config does not belong to these weights"
        )
    if model_config.max_positions * model_config.d_model > MAX_POSITION_TABLE:
        raise CheckpointError(
            f"{where}: max_positions {model_config.max_positions} x d_model {model_config.d_model} "
            f"is beyond what nmt builds ({MAX_POSITION_TABLE:,} values); the config is damaged"
        )
    try:
        with torch.device("meta"), _ShapesOnly():  # shapes without memory
            expected = build_model(model_config).state_dict()
    except (RuntimeError, ValueError, TypeError, AssertionError, ArithmeticError) as e:
        raise CheckpointError(f"{where}: invalid model config: {str(e).splitlines()[0][:200]}") from e
    dtypes = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64"}
    for name, (dtype, shape) in declared.items():
        if name not in expected:
            raise CheckpointError(
                f"{weights}: unexpected tensor {name!r}; the weights do not fit the model in {CONFIG_FILE}"
            )
        want = expected[name]
        if shape != list(want.shape):
            raise CheckpointError(
                f"{weights}: {name} has shape {shape}, the model in {CONFIG_FILE} needs "
                f"{list(want.shape)}; the weights do not fit the model"
            )
        if dtype != dtypes.get(want.dtype, str(want.dtype)):
            raise CheckpointError(
                f"{weights}: {name} is {dtype}, the model needs {dtypes.get(want.dtype, want.dtype)}; "
                "the weights file is damaged or not from nmt"
            )
    missing = [n for n in expected if n not in declared and aliases.get(n) not in declared]
    if missing:
        raise CheckpointError(
            f"{weights}: tensor {missing[0]!r} is missing ({len(missing)} in all); "
            "the checkpoint is incomplete or belongs to another model"
        )


def spm_files_of(path: Path, config: dict[str, Any]) -> dict[str, bytes]:
    return {name: (Path(path) / name).read_bytes() for name in sorted(set(config["spm"].values()))}


def vocab_files_of(path: Path, config: dict[str, Any]) -> dict[str, bytes]:
    """The vocabulary files a model directory names (config.json's "vocab"), by name; none for nmt's own."""
    names = config.get("vocab") or {}
    return {name: (Path(path) / name).read_bytes() for name in sorted(set(names.values()))}
