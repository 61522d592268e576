"""Where prepared data or a run came from when it starts from a model that exists (`nmt prepare --tokenizer
MODEL`, `nmt train --init MODEL`): a model's tokenizer files as the model itself loads them, the records that say
which model it was (its path and the sha256 of its files), and the check that a prepared data directory's
vocabulary is a model's. What the records look like on disk:

    prepare.json  "tokenizer": {"path": MODEL, "sha256": {"spm.model": ...}}
    config.json   "init": {"path": MODEL, "model_sha256": ..., "config_sha256": ...}   (a run's, its checkpoints')

Knows nothing about encoding, training loops or the command line; reading these records back for `nmt info` is
nmt.info's (which imports no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nmt.errors import CheckpointError, ConfigError
from nmt.fileio import sha256_bytes, sha256_file
from nmt.files import checked_tokenizers, read_json
from nmt.layout import CONFIG_FILE, MODEL_FILE
from nmt.modeldir import resolve_model_dir, spm_files_of
from nmt.tokenizer import Tokenizer

__all__ = ["ModelTokenizers", "check_languages", "check_vocabulary", "init_record", "model_tokenizers", "same_model"]


@dataclass(frozen=True)
class ModelTokenizers:
    """A model's tokenizers, as loading the model checks and builds them, and the files they are made of."""

    path: Path  # the model directory (a run directory resolved to its best checkpoint)
    src: Tokenizer
    tgt: Tokenizer
    names: dict[str, str]  # the SentencePiece file of each side ("src", "tgt")
    files: dict[str, bytes]  # every tokenizer file of the model, by name
    vocab_names: dict[str, str] | None = None  # the vocabulary file of each side, for an imported model's id map

    def record(self) -> dict[str, Any]:
        """What prepare.json says of where its vocabulary came from."""
        return {"path": str(self.path), "sha256": {name: sha256_bytes(data) for name, data in self.files.items()}}


def model_tokenizers(model: Path) -> ModelTokenizers:
    """The tokenizers of the model in `model` (a model, checkpoint or run directory), each checked against the
    sha256 its config.json records."""
    path = resolve_model_dir(Path(model)).resolve()  # a run's `best` moves on: the checkpoint it points at now
    config = read_json(path / CONFIG_FILE)
    src, tgt = checked_tokenizers(
        path,
        config,
        path / CONFIG_FILE,
        fix="not an nmt model",
        missing=f"the model in {path} is incomplete",
        mismatch="does not match the sha256 the model records; the model directory is damaged",
    )
    names = {side: str(config["spm"][side]) for side in ("src", "tgt")}
    vocab = config.get("vocab")
    vocab_names = {side: str(vocab[side]) for side in ("src", "tgt")} if isinstance(vocab, dict) else None
    return ModelTokenizers(path, src, tgt, names, _tokenizer_files(path, config), vocab_names)


def _tokenizer_files(path: Path, config: dict[str, Any]) -> dict[str, bytes]:
    """Every file config.json records a tokenizer sha256 for (the SentencePiece models, the vocabularies of an
    imported model's id map, and whatever else a tokenizer is made of), each checked against it."""
    files = spm_files_of(path, config)
    recorded = {**_object(config.get("spm_sha256")), **_object(config.get("vocab_sha256"))}
    for name, digest in recorded.items():
        if name in files:
            continue  # checked by checked_tokenizers
        if "/" in name or name.startswith(".") or not (path / name).is_file():
            raise CheckpointError(
                f"{path / CONFIG_FILE}: records a sha256 for {name!r}, which is not a file of the model"
            )
        data = (path / name).read_bytes()
        if sha256_bytes(data) != digest:
            raise CheckpointError(f"{path / name}: does not match the sha256 the model records; the model is damaged")
        files[name] = data
    return files


def init_record(path: Path) -> dict[str, Any]:
    """Which model a run starts from: its directory and the sha256 of its weights and of its config.json."""
    return {
        "path": str(path),
        "model_sha256": sha256_file(path / MODEL_FILE),
        "config_sha256": sha256_file(path / CONFIG_FILE),
    }


def same_model(record: dict[str, Any]) -> Path:
    """The model a run's `init` record names, still as it was (same sha256s); else a CheckpointError."""
    path = Path(str(record.get("path")))
    try:
        now = init_record(resolve_model_dir(path))
    except (CheckpointError, OSError) as e:
        raise CheckpointError(f"{path}: the run started from this model, which is gone ({e})") from e
    if now != record:
        raise CheckpointError(
            f"{path}: the run started from this model, which has changed since (sha256 differs); "
            "start the run again with --overwrite"
        )
    return path


def check_vocabulary(data_dir: Path, summary: dict[str, Any], model: Path, config: dict[str, Any]) -> None:
    """A prepared data directory (its prepare.json `summary`) encoded with the tokenizers of the model in `model`
    (its config.json `config`): the same files, by sha256, on each side; else a one-line ConfigError."""
    data_spm = _object(summary.get("spm"))
    data_sums, model_spm, model_sums = (
        _object(data_spm.get("sha256")),
        _object(config.get("spm")),
        _object(config.get("spm_sha256")),
    )
    for side in ("src", "tgt"):
        ours, theirs = data_sums.get(str(data_spm.get(side))), model_sums.get(str(model_spm.get(side)))
        if ours is None or ours != theirs:
            what = "source" if side == "src" else "target"
            raise ConfigError(
                f"{data_dir}: its {what} vocabulary is not that of {model} (the SentencePiece sha256 differs); "
                f"prepare the data with the model's: `nmt prepare ... --tokenizer {model}`"
            )
    data_vocab, model_vocab = _object(summary.get("vocab")), _object(config.get("vocab_sha256"))
    if sorted(_object(data_vocab.get("sha256")).values()) != sorted(model_vocab.values()):
        raise ConfigError(
            f"{data_dir}: its vocabulary (piece to id) is not that of {model} (vocab.json sha256 differs); "
            f"prepare the data with the model's: `nmt prepare ... --tokenizer {model}`"
        )
    if sorted(data_sums.values()) != sorted(model_sums.values()):
        raise ConfigError(
            f"{data_dir}: its tokenizer files are not those of {model} (sha256 differs); "
            f"prepare the data with the model's: `nmt prepare ... --tokenizer {model}`"
        )


def check_languages(data_dir: Path, summary: dict[str, Any], model: Path, config: dict[str, Any]) -> None:
    """A prepared data directory in the direction of the model in `model`, where both record their languages;
    else a one-line ConfigError (a model started on the other direction unlearns what it knew)."""
    settings = _object(summary.get("settings"))
    ours, theirs = (settings.get("src"), settings.get("tgt")), (config.get("src_lang"), config.get("tgt_lang"))
    if None not in ours and None not in theirs and ours != theirs:
        raise ConfigError(
            f"{data_dir}: prepared for {ours[0]}→{ours[1]}, but {model} translates {theirs[0]}→{theirs[1]}; "
            f"prepare the data with --src {theirs[0]} --tgt {theirs[1]}"
        )


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
