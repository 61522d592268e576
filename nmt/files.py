"""The names of the files nmt writes in a model or export directory, and reading the small ones: what every
engine needs to open a directory. No torch here, so that the CTranslate2 engine starts without it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nmt.errors import CheckpointError
from nmt.tokenizer import Tokenizer, sha256_bytes

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
EXPORT_FILE = "nmt.json"  # in an `nmt export` directory: config.json is CTranslate2's own
MAX_JSON_BYTES = 16 << 20  # a config.json larger than this is not ours


def read_json(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise CheckpointError(f"{path}: {path.stat().st_size} bytes, too large for a config; not an nmt checkpoint")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(
            f"{path}: missing; a model directory needs {MODEL_FILE}, {CONFIG_FILE} and its spm model"
        ) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e}); the checkpoint is corrupted") from None
    except RecursionError:
        raise CheckpointError(f"{path}: JSON nested too deeply; not an nmt checkpoint") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object; the checkpoint is corrupted")
    return data


def checked_tokenizers(
    path: Path, desc: dict[str, Any], where: Path, *, fix: str, missing: str, mismatch: str
) -> list[Tokenizer]:
    """The source and target SentencePiece models named in `desc` (spm + spm_sha256), each checked
    against its sha256; `fix`, `missing` and `mismatch` finish the error messages for this kind of directory."""
    spm, sums = desc.get("spm"), desc.get("spm_sha256")
    if not isinstance(spm, dict) or not isinstance(sums, dict) or not {"src", "tgt"} <= spm.keys():
        raise CheckpointError(f"{where}: no SentencePiece model names (spm.src/spm.tgt); {fix}")
    tokenizers = []
    for side in ("src", "tgt"):
        name = spm[side]
        if not isinstance(name, str) or "/" in name or name.startswith("."):
            raise CheckpointError(f"{where}: invalid SentencePiece file name {name!r}")
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing; {missing}")
        data = file.read_bytes()
        if sha256_bytes(data) != sums.get(name):
            raise CheckpointError(f"{file}: {mismatch}")
        tokenizers.append(Tokenizer(data, str(file)))
    return tokenizers
