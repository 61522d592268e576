"""`nmt prepare`: raw parallel text → SentencePiece BPE model(s) + encoded splits + prepare.json.
The output directory is written whole or not at all, and the same inputs give the same bytes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from nmt import __version__
from nmt.data import ParallelIds, ParallelText, read_parallel
from nmt.errors import ConfigError, DataError
from nmt.tokenizer import SPECIAL, Tokenizer, sha256_file, train_bpe

PREPARE_JSON = "prepare.json"


@dataclass(frozen=True)
class PrepareConfig:
    src: str
    tgt: str
    train: str
    valid: str
    tests: tuple[str, ...] = ()
    vocab_size: int = 8000
    joint: bool = True
    max_len: int = 256  # training pairs with more BPE tokens on either side are dropped; 0 keeps all
    max_ratio: float = 0.0  # training pairs whose token-length ratio exceeds this are dropped; 0 keeps all
    drop_empty: bool = True  # drop training pairs with an empty side
    dedup: bool = False  # drop exact duplicate training pairs (the first one stays)


@dataclass
class PrepareResult:
    out: Path
    reused: bool
    summary: dict = field(default_factory=dict)


def _split_names(tests: tuple[str, ...]) -> list[str]:
    """Test splits are named after their prefix ('test_2016_flickr'); clashes get a numeric suffix."""
    names: list[str] = []
    for prefix in tests:
        base = Path(prefix).name
        for suffix in (".tsv", ".gz"):
            base = base.removesuffix(suffix)
        name, k = base, 1
        while name in names or name in ("train", "valid"):
            name, k = f"{base}{k}", k + 1
        names.append(name)
    return names


def _filter(text: ParallelText, src_ids: list[list[int]], tgt_ids: list[list[int]], cfg: PrepareConfig):
    """Indices of the training pairs that pass the filters, and how many each filter dropped."""
    counts = {"empty": 0, "too_long": 0, "ratio": 0, "duplicate": 0}
    seen: set[tuple[str, str]] = set()
    keep = []
    for i, (s, t) in enumerate(zip(src_ids, tgt_ids)):
        if cfg.drop_empty and (not s or not t):
            counts["empty"] += 1
        elif cfg.max_len and (len(s) > cfg.max_len or len(t) > cfg.max_len):
            counts["too_long"] += 1
        elif cfg.max_ratio and max(len(s), len(t)) > cfg.max_ratio * max(1, min(len(s), len(t))):
            counts["ratio"] += 1
        elif cfg.dedup and (text.src[i], text.tgt[i]) in seen:
            counts["duplicate"] += 1
        else:
            if cfg.dedup:
                seen.add((text.src[i], text.tgt[i]))
            keep.append(i)
    return keep, counts


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prepare(cfg: PrepareConfig, out: Path, force: bool = False, stage: Callable[[str], None] = lambda s: None) -> PrepareResult:
    """Run the whole preparation; reuse `out` when it already holds exactly this preparation."""
    if cfg.src == cfg.tgt:
        raise ConfigError(f"--src and --tgt are both {cfg.src!r}; give two different languages")
    if cfg.vocab_size < 300:
        raise ConfigError(f"--vocab-size {cfg.vocab_size} is too small; use at least 300 (bytes and specials need 260)")
    stage("reading corpora")
    corpora: dict[str, ParallelText] = {"train": read_parallel(cfg.train, cfg.src, cfg.tgt)}
    corpora["valid"] = read_parallel(cfg.valid, cfg.src, cfg.tgt)
    for name, prefix in zip(_split_names(cfg.tests), cfg.tests):
        corpora[name] = read_parallel(prefix, cfg.src, cfg.tgt)
    inputs = {str(f): sha256_file(f) for text in corpora.values() for f in text.files}
    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
    fingerprint = hashlib.sha256(json.dumps([settings, inputs, __version__], sort_keys=True).encode()).hexdigest()

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory; choose another --out")
    if out.exists() and not any(out.iterdir()):
        out.rmdir()  # an empty directory holds nothing to lose
    if out.exists():
        previous = _read_fingerprint(out)
        if previous == fingerprint and not force:
            return PrepareResult(out, reused=True, summary=json.loads((out / PREPARE_JSON).read_text()))
        if not force:
            what = "a different preparation" if previous else "other files"
            raise DataError(f"{out}: already holds {what}; choose another --out or add --force to replace it")

    stage("training SentencePiece BPE")
    train = corpora["train"]
    models: dict[str, bytes] = {}
    if cfg.joint:
        models["spm.model"] = train_bpe(train.src + train.tgt, cfg.vocab_size)
        spm_names = {"src": "spm.model", "tgt": "spm.model"}
    else:
        spm_names = {"src": f"spm.{cfg.src}.model", "tgt": f"spm.{cfg.tgt}.model"}
        models[spm_names["src"]] = train_bpe(train.src, cfg.vocab_size)
        models[spm_names["tgt"]] = train_bpe(train.tgt, cfg.vocab_size)
    src_tok, tgt_tok = Tokenizer(models[spm_names["src"]]), Tokenizer(models[spm_names["tgt"]])

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name, proto in models.items():
            (tmp / name).write_bytes(proto)
            vocab = Tokenizer(proto).pieces()
            (tmp / name.replace(".model", ".vocab")).write_text("".join(f"{p}\n" for p in vocab), encoding="utf-8")
        splits = {}
        for name, text in corpora.items():
            stage(f"encoding {name} ({len(text):,} pairs)")
            src_ids, tgt_ids = src_tok.encode_batch(text.src), tgt_tok.encode_batch(text.tgt)
            entry: dict = {"lines": len(text), "files": [str(f) for f in text.files]}
            if name == "train":
                keep, counts = _filter(text, src_ids, tgt_ids, cfg)
                text = ParallelText([text.src[i] for i in keep], [text.tgt[i] for i in keep], text.files)
                src_ids, tgt_ids = [src_ids[i] for i in keep], [tgt_ids[i] for i in keep]
                entry["filtered"] = counts
                entry["kept"] = len(keep)
                if not keep:
                    raise DataError(f"{text.files[0]}: every training pair was filtered out; relax the filters")
            ids = ParallelIds.from_lists(src_ids, tgt_ids)
            ids.save(tmp / f"{name}.ids.safetensors")
            for lang, lines in ((cfg.src, text.src), (cfg.tgt, text.tgt)):
                (tmp / f"{name}.{lang}").write_text("".join(f"{s}\n" for s in lines), encoding="utf-8")
            entry["tokens"] = {cfg.src: int(ids.src_lens.sum()), cfg.tgt: int(ids.tgt_lens.sum())}
            splits[name] = entry
        summary = {
            "nmt_version": __version__,
            "fingerprint": fingerprint,
            "settings": settings,
            "special_ids": asdict(SPECIAL),
            "spm": {**spm_names, "sha256": {n: hashlib.sha256(p).hexdigest() for n, p in models.items()}},
            "vocab_size": {"src": len(src_tok), "tgt": len(tgt_tok)},
            "splits": splits,
            "inputs": inputs,
        }
        (tmp / PREPARE_JSON).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
        _fsync_dir(out.parent if str(out.parent) else Path("."))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return PrepareResult(out, reused=False, summary=summary)


def _read_fingerprint(out: Path) -> str | None:
    try:
        return json.loads((out / PREPARE_JSON).read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None


def load_summary(data_dir: Path) -> dict:
    """prepare.json of a prepared data directory, or a clear error."""
    path = Path(data_dir) / PREPARE_JSON
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{data_dir}: not a prepared data directory (no {PREPARE_JSON}); run `nmt prepare` first") from None
    except ValueError as e:
        raise DataError(f"{path}: invalid JSON ({e}); re-run `nmt prepare --force`") from None
