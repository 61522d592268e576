"""Reading the small files of a model or export directory (config.json, nmt.json, the SentencePiece models,
checked against their sha256): what every engine needs to open a directory, with the errors a user can act on.
No torch here, so that the CTranslate2 engine starts without it; the file names are nmt.layout's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nmt import fileio
from nmt.errors import CheckpointError
from nmt.fileio import JsonFileError, sha256_bytes
from nmt.layout import CONFIG_FILE, MODEL_FILE
from nmt.tokenizer import Tokenizer


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a model, checkpoint or export directory, or a CheckpointError saying what is wrong."""
    try:
        return fileio.read_json(path)
    except FileNotFoundError as e:
        raise CheckpointError(
            f"{path}: missing; a model directory needs {MODEL_FILE}, {CONFIG_FILE} and its spm model"
        ) from e
    except JsonFileError as e:
        message = {
            "size": f"{e.detail} bytes, too large for a config; not an nmt checkpoint",
            "syntax": f"not valid JSON ({e.detail}); the checkpoint is corrupted",
            "depth": "JSON nested too deeply; not an nmt checkpoint",
            "type": "expected a JSON object; the checkpoint is corrupted",
        }[e.problem]
        raise CheckpointError(f"{path}: {message}") from e


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


def export_languages(path: Path, desc: dict[str, Any]) -> dict[str, Any]:
    """The languages of an export (`src_lang`, `tgt_lang`; None where unknown): its nmt.json's, or for an
    export made before nmt.json recorded them, the exported model's config.json when it is still there,
    unchanged."""
    if "src_lang" in desc or "tgt_lang" in desc:
        return {"src_lang": desc.get("src_lang"), "tgt_lang": desc.get("tgt_lang")}
    source = desc.get("source")
    source = source if isinstance(source, dict) else {}
    config = Path(str(source.get("path", ""))) / CONFIG_FILE
    if source.get("path") and config.is_file() and fileio.sha256_file(config) == source.get("config_sha256"):
        try:
            found = read_json(config)
        except CheckpointError:
            found = {}
        return {"src_lang": found.get("src_lang"), "tgt_lang": found.get("tgt_lang")}
    return {"src_lang": None, "tgt_lang": None}
