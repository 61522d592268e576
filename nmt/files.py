"""Reading the small files of a model or export directory (config.json, nmt.json, the SentencePiece models and
vocabularies, checked against their sha256), and a prepared data directory's tokenizer and special ids: what every
engine, and training, needs to open a directory, with the errors a user can act on.
No torch here, so that the CTranslate2 engine starts without it; the file names are nmt.layout's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nmt import fileio
from nmt.errors import CheckpointError, DataError
from nmt.fileio import JsonFileError, sha256_bytes
from nmt.layout import CONFIG_FILE, MODEL_FILE, PREPARE_JSON
from nmt.tokenizer import SPECIAL, SpecialIds, Tokenizer


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
    against its sha256, with the vocabulary that maps their pieces to the model's ids where `desc` names one
    (vocab + vocab_sha256: an imported model's vocab.json; nmt's own models use SentencePiece's ids); `fix`,
    `missing` and `mismatch` finish the error messages for this kind of directory."""
    spm, sums = desc.get("spm"), desc.get("spm_sha256")
    if not isinstance(spm, dict) or not isinstance(sums, dict) or not {"src", "tgt"} <= spm.keys():
        raise CheckpointError(f"{where}: no SentencePiece model names (spm.src/spm.tgt); {fix}")
    vocabs, vocab_sums = desc.get("vocab"), desc.get("vocab_sha256")
    if vocabs is not None and (
        not isinstance(vocabs, dict) or not isinstance(vocab_sums, dict) or not {"src", "tgt"} <= vocabs.keys()
    ):
        raise CheckpointError(f"{where}: vocab needs vocab.src, vocab.tgt and their vocab_sha256; {fix}")
    tokenizers = []
    for side in ("src", "tgt"):
        file, data = _checked_file(path, spm[side], sums, where, "SentencePiece", missing, mismatch)
        vocab, vocab_file = None, None
        if vocabs is not None:
            vocab_file, vocab_data = _checked_file(
                path,
                vocabs[side],
                vocab_sums if isinstance(vocab_sums, dict) else {},
                where,
                "vocabulary",
                missing,
                f"the vocabulary does not match its sha256 in {where.name}; put back the one the model was made with",
            )
            vocab = vocab_map(vocab_file, vocab_data)
        tokenizers.append(Tokenizer(data, str(file), vocab=vocab, vocab_source=str(vocab_file)))
    src, tgt = tokenizers
    if (src.specials.pad, src.specials.eos) != (tgt.specials.pad, tgt.specials.eos):
        raise CheckpointError(
            f"{where}: the source vocabulary has pad {src.specials.pad} and </s> {src.specials.eos}, the target's "
            f"{tgt.specials.pad} and {tgt.specials.eos}; nmt needs them at the same ids on both sides"
        )
    return tokenizers


def _checked_file(
    path: Path, name: Any, sums: dict[str, Any], where: Path, what: str, missing: str, mismatch: str
) -> tuple[Path, bytes]:
    """The bytes of the file `name` in `path`, checked against its sha256 in `sums`."""
    if not isinstance(name, str) or "/" in name or name.startswith("."):
        raise CheckpointError(f"{where}: invalid {what} file name {name!r}")
    file = path / name
    if not file.is_file():
        raise CheckpointError(f"{file}: missing; {missing}")
    data = file.read_bytes()
    if sha256_bytes(data) != sums.get(name):
        raise CheckpointError(f"{file}: {mismatch}")
    return file, data


def vocab_map(file: Path, data: bytes) -> dict[str, Any]:
    """A vocabulary file's JSON object ({piece: id}; Tokenizer checks the ids), or a one-line error naming it."""
    if len(data) > fileio.MAX_JSON_BYTES:
        raise CheckpointError(f"{file}: {len(data)} bytes, too large for a vocabulary")
    try:
        found = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError too
        raise CheckpointError(f"{file}: not valid JSON ({str(e)[:200]}); the vocabulary is damaged") from e
    if not isinstance(found, dict):
        raise CheckpointError(f"{file}: not a vocabulary (a JSON object of piece: id)")
    return found


def data_specials(summary: dict[str, Any]) -> SpecialIds:
    """The special ids of a prepared data directory: prepare.json's "special_ids" (what its ids were encoded
    with, the source of truth for training), nmt's fixed ones where it records none."""
    found = summary.get("special_ids")
    if found is None:
        return SPECIAL
    names = ("pad", "unk", "bos", "eos")
    if not isinstance(found, dict) or not all(type(found.get(k)) is int and found[k] >= 0 for k in names):
        raise DataError(
            f"{PREPARE_JSON}: special_ids {found!r} are not ids of pad, unk, bos and eos; re-run nmt prepare"
        )
    return SpecialIds(**{k: found[k] for k in names})


def data_vocab_files(data_dir: Path, summary: dict[str, Any]) -> dict[str, bytes]:
    """The vocabulary files of a prepared data directory encoded with an imported model's tokenizer
    (prepare.json's "vocab": {"src": NAME, "tgt": NAME, "sha256": {NAME: ...}}, as "spm"), by name; none when its
    ids are SentencePiece's own."""
    vocab = summary.get("vocab")
    if vocab is None:
        return {}
    sums = vocab.get("sha256") if isinstance(vocab, dict) else None
    if not isinstance(vocab, dict) or not isinstance(sums, dict) or not {"src", "tgt"} <= vocab.keys():
        raise DataError(f"{data_dir / PREPARE_JSON}: vocab needs src, tgt and their sha256; re-run nmt prepare")
    files = {}
    for name in dict.fromkeys((vocab["src"], vocab["tgt"])):
        if not isinstance(name, str) or "/" in name or name.startswith(".") or not (data_dir / name).is_file():
            raise DataError(f"{data_dir / PREPARE_JSON}: vocabulary file {name!r} is missing; re-run nmt prepare")
        files[name] = (data_dir / name).read_bytes()
        if sha256_bytes(files[name]) != sums.get(name):
            raise DataError(f"{data_dir / name}: does not match its sha256 in {PREPARE_JSON}; re-run nmt prepare")
    return files


def data_tokenizer(data_dir: Path, summary: dict[str, Any], side: str) -> Tokenizer:
    """The tokenizer of one side ("src", "tgt") of a prepared data directory: its SentencePiece model, through its
    vocabulary where it has one (data_vocab_files); its special ids must be those the data records."""
    name = summary["spm"][side]
    vocab = None
    if files := data_vocab_files(data_dir, summary):
        vocab_name = summary["vocab"][side]
        vocab = vocab_map(data_dir / vocab_name, files[vocab_name])
        tokenizer = Tokenizer(
            (data_dir / name).read_bytes(), str(data_dir / name), vocab=vocab, vocab_source=str(data_dir / vocab_name)
        )
    else:
        tokenizer = Tokenizer((data_dir / name).read_bytes(), str(data_dir / name))
    if tokenizer.specials != data_specials(summary):
        raise DataError(
            f"{data_dir / PREPARE_JSON}: special_ids {data_specials(summary)} are not its tokenizer's "
            f"{tokenizer.specials}; re-run nmt prepare"
        )
    return tokenizer


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
