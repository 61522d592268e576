"""The names of every file and directory nmt writes, and reading `prepare.json`: the one place that knows
where things are on disk.

    DATA_DIR/{prepare.json, spm.model (or spm.SRC.model + spm.TGT.model, with .vocab), SPLIT.ids.safetensors}
    RUN_DIR/{config.json, train_log.jsonl, .lock, best -> checkpoints/step_000200, last -> ...}
    RUN_DIR/checkpoints/step_000400/{model.safetensors, config.json, spm.model, trainer.safetensors, trainer.json}
    EXPORT_DIR/{model.bin, config.json, shared_vocabulary.json (CTranslate2's), spm.model, nmt.json (ours)}

Standard library and nmt.errors only, so that light commands (`nmt info`, `nmt plot`, the CTranslate2
engine) use these names instead of copying them. What the files hold is their writers' business."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from nmt.errors import DataError
from nmt.fileio import JsonFileError, read_json

# a model (or checkpoint) directory: enough to translate
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"  # a model's config and, in a run directory, the run's

# what a checkpoint adds to resume training
TRAINER_TENSORS = "trainer.safetensors"
TRAINER_JSON = "trainer.json"

# a run directory
LOG_FILE = "train_log.jsonl"
LOCK_FILE = ".lock"
CHECKPOINTS = "checkpoints"
BEST, LAST = "best", "last"  # links to a checkpoint in CHECKPOINTS
CHECKPOINT_NAME = re.compile(r"step_(\d+)")

# a prepared data directory
PREPARE_JSON = "prepare.json"
JOINT_SPM = "spm.model"  # one SentencePiece model for both languages

# an `nmt export` directory: CTranslate2's files plus ours
EXPORT_FILE = "nmt.json"  # config.json there is CTranslate2's own
EXPORT_FORMAT = "ctranslate2"  # the "format" in nmt.json
CT2_MODEL_FILE = "model.bin"
# what runs a model: PyTorch on a model directory, CTranslate2 on an export; auto: the one its files call for
ENGINES = ("auto", "pytorch", "ctranslate2")
# the weight types an export can hold (the "quantization" in nmt.json)
QUANTIZATIONS = ("float32", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16")

# the attention of a model, by kind (the tables of `nmt attention --json`)
ATTENTION_KINDS = ("cross", "encoder", "decoder")


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}"


def spm_model_names(src: str, tgt: str, joint: bool) -> dict[str, str]:
    """The SentencePiece model file of each side ("src", "tgt") of a prepared data directory."""
    return {"src": JOINT_SPM, "tgt": JOINT_SPM} if joint else {"src": f"spm.{src}.model", "tgt": f"spm.{tgt}.model"}


def vocab_name(spm_name: str) -> str:
    """The readable vocabulary written next to a SentencePiece model: spm.model -> spm.vocab; an imported model's
    source.spm -> source.vocab (never the model's own name, which a plain replace of ".model" would give it)."""
    stem, dot, _ = spm_name.rpartition(".")
    return f"{stem if dot else spm_name}.vocab"


def ids_file(split: str) -> str:
    """The encoded ids of one split (train, valid, a test set) in a prepared data directory."""
    return f"{split}.ids.safetensors"


def load_summary(data_dir: Path) -> dict[str, Any]:
    """prepare.json of a prepared data directory, or a clear error."""
    path = Path(data_dir) / PREPARE_JSON
    try:
        return read_json(path)
    except FileNotFoundError as e:
        raise DataError(
            f"{data_dir}: not a prepared data directory (no {PREPARE_JSON}); run `nmt prepare` first"
        ) from e
    except JsonFileError as e:
        what = {"size": f"{e.detail} bytes, too large", "type": "not a JSON object"}.get(e.problem, e.detail)
        raise DataError(f"{path}: invalid JSON ({what}); re-run `nmt prepare --force`") from e
