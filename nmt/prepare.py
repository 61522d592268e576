"""`nmt prepare`: raw parallel text → SentencePiece BPE model(s) + encoded splits + prepare.json.
The output directory is written whole or not at all, and the same inputs give the same bytes. The
corpus is streamed, never held in memory: millions of pairs prepare in a bounded amount of memory.

`prepare` runs four stages into a temporary directory: read and clean every split (nmt.prepare_clean), train
SentencePiece (or, with a model's tokenizer, copy the model's SentencePiece files: nmt.lineage), encode every split
with the training split's filters (nmt.prepare_encode), then write prepare.json and put the directory in place."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from nmt.config import PrepareConfig
from nmt.data import corpus_files, count_lines
from nmt.errors import DataError
from nmt.fileio import commit_dir, read_json, sha256_bytes, sha256_file
from nmt.layout import PREPARE_JSON, spm_model_names, vocab_name
from nmt.prepare_clean import clean_corpus
from nmt.prepare_encode import Chunk, encode_split
from nmt.tokenizer import Tokenizer, train_bpe
from nmt.version import __version__

if TYPE_CHECKING:
    from nmt.lineage import ModelTokenizers

DEFAULT_SPM_SAMPLE = PrepareConfig.spm_sample  # its name across versions (benchmarks/prepare_scale.py reads it)
SPM_SAMPLE_SEED = 1


@dataclass
class PrepareResult:
    out: Path
    reused: bool
    summary: dict[str, Any] = field(default_factory=dict)


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


def _keep(src_lens: np.ndarray, tgt_lens: np.ndarray, cfg: PrepareConfig, counts: dict[str, int]) -> np.ndarray:
    """Which pairs of a chunk pass the length filters (each dropped pair counted once, under the first
    filter that drops it); duplicates are handled by the caller."""
    empty = (src_lens == 0) | (tgt_lens == 0) if cfg.drop_empty else np.zeros(len(src_lens), dtype=bool)
    longest, shortest = np.maximum(src_lens, tgt_lens), np.minimum(src_lens, tgt_lens)
    too_long = ~empty & (longest > cfg.max_len) if cfg.max_len else np.zeros_like(empty)
    ratio = (
        ~empty & ~too_long & (longest > cfg.max_ratio * np.maximum(1, shortest))
        if cfg.max_ratio
        else np.zeros_like(empty)
    )
    for name, dropped in (("empty", empty), ("too_long", too_long), ("ratio", ratio)):
        counts[name] += int(dropped.sum())
    return ~(empty | too_long | ratio)


def _lines(path: Path) -> Iterator[str]:
    """Lines of a cleaned text file written by stage 1 (no line break can hide inside a line)."""
    with open(path, encoding="utf-8", newline="\n") as f:
        for line in f:
            yield line[:-1]


def _spm_input(files: list[Path], total: int, sample: int) -> Iterator[str]:
    """The sentences SentencePiece learns from: every line of `files` in order, or, when there are more
    than `sample`, a deterministic random `sample` of them (fixed seed), still in file order."""
    chosen = None
    if sample and total > sample:
        chosen = np.zeros(total, dtype=bool)
        chosen[np.random.default_rng(SPM_SAMPLE_SEED).choice(total, sample, replace=False)] = True
    i = 0
    for path in files:
        for line in _lines(path):
            if chosen is None or chosen[i]:
                yield line
            i += 1


def _remove_leftovers(out: Path) -> None:
    """Remove the temporary directories of earlier runs that were killed (their process is gone)."""
    for leftover in out.parent.glob(f".{out.name}.tmp-*"):
        try:
            os.kill(int(leftover.name.rsplit("-", 1)[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(leftover, ignore_errors=True)
        except (ValueError, PermissionError):
            pass


def prepare(
    cfg: PrepareConfig,
    out: Path,
    force: bool = False,
    stage: Callable[[str], None] = lambda s: None,
    threads: int | None = None,
    tokenizer: Path | None = None,
) -> PrepareResult:
    """Run the whole preparation; reuse `out` when it already holds exactly this preparation.

    Streams: memory is bounded by the SentencePiece sample, a chunk of lines and a few bytes a pair,
    not by the corpus. `stage` receives what is being done, with counts, as it goes. `tokenizer`, a model
    directory: encode with that model's tokenizers instead of training SentencePiece (the vocabulary settings
    then do not apply), and count the pairs whose ids hold <unk>."""
    threads = threads or len(os.sched_getaffinity(0))
    source, record = None, None
    if tokenizer is not None:
        from nmt.lineage import model_tokenizers  # reads a model directory: torch, only when asked

        stage(f"reading the tokenizers of {tokenizer}")
        source = model_tokenizers(tokenizer)
        record = source.record()
    plan = _plan(cfg, stage, record)
    out = Path(out)
    reused = _reuse(out, plan.fingerprint, force)
    if reused is not None:
        return reused
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        lines = _read_and_clean(cfg, plan.corpora, tmp, threads, stage)
        if source is None:
            models, spm_names = _train_sentencepiece(cfg, tmp, lines["train"], stage)
            tokenizers = Tokenizer(models[spm_names["src"]]), Tokenizer(models[spm_names["tgt"]])
        else:
            models, spm_names, tokenizers = _copy_tokenizers(source, tmp), source.names, (source.src, source.tgt)
        # an imported model's id maps are recorded under "vocab", every other tokenizer file under "spm"
        vocabs = set(source.vocab_names.values()) if source is not None and source.vocab_names else set()
        specials = tokenizers[1].specials  # a model's vocabulary has its own (source and target agree: files.py)
        unk_id = specials.unk if source else None
        splits = _encode_splits(cfg, plan.files, lines, tmp, tokenizers, threads, stage, unk_id)
        summary = {
            "nmt_version": __version__,
            "fingerprint": plan.fingerprint,
            "settings": plan.settings,
            "special_ids": asdict(specials),
            "spm": {**spm_names, "sha256": {n: sha256_bytes(p) for n, p in models.items() if n not in vocabs}},
            "vocab_size": {"src": len(tokenizers[0]), "tgt": len(tokenizers[1])},
            "splits": splits,
            "inputs": plan.inputs,
        }
        if record is not None:
            summary["tokenizer"] = record
        if source is not None and source.vocab_names is not None:  # an imported model's piece-to-id map
            summary["vocab"] = {
                **source.vocab_names,
                "sha256": {n: sha256_bytes(models[n]) for n in source.vocab_names.values()},
            }
        _write_out(tmp, out, summary, stage)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return PrepareResult(out, reused=False, summary=summary)


# -- the stages ------------------------------------------------------------------------------------


@dataclass
class _Plan:
    """What a preparation reads and how it is known again: the corpus of every split (and its files), the
    checksums of the files, the settings prepare.json records, and the fingerprint of them all."""

    corpora: dict[str, tuple[Path, Path] | Path]
    files: dict[str, list[Path]]
    inputs: dict[str, str]
    settings: dict[str, Any]
    fingerprint: str


def _plan(cfg: PrepareConfig, stage: Callable[[str], None], tokenizer: dict[str, Any] | None = None) -> _Plan:
    corpora = {"train": corpus_files(cfg.train, cfg.src, cfg.tgt), "valid": corpus_files(cfg.valid, cfg.src, cfg.tgt)}
    for name, prefix in zip(_split_names(cfg.tests), cfg.tests):
        corpora[name] = corpus_files(prefix, cfg.src, cfg.tgt)
    file_lists = {name: [files] if isinstance(files, Path) else list(files) for name, files in corpora.items()}
    stage("checksumming the inputs")
    inputs = {str(f): sha256_file(f) for files in file_lists.values() for f in files}
    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
    sentences = count_lines(file_lists["train"][0]) * (2 if cfg.joint else 1)  # per SentencePiece model
    if not cfg.spm_sample or cfg.spm_sample >= sentences:
        del settings["spm_sample"]  # every sentence is used: the output (and prepare.json) of earlier versions
    if tokenizer is not None:  # no SentencePiece is trained: the model's vocabulary, known by its files' sha256
        for key in ("vocab_size", "joint", "spm_sample"):
            settings.pop(key, None)
    known_by = [settings, inputs, __version__, *([tokenizer] if tokenizer else [])]
    fingerprint = hashlib.sha256(json.dumps(known_by, sort_keys=True).encode()).hexdigest()
    return _Plan(corpora, file_lists, inputs, settings, fingerprint)


def _reuse(out: Path, fingerprint: str, force: bool) -> PrepareResult | None:
    """`out` as it is when it already holds this preparation (and no --force); None when it is to be written.
    Refuses to replace anything else without --force."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory; choose another --out")
    if out.exists() and not any(out.iterdir()):
        out.rmdir()  # an empty directory holds nothing to lose
    if out.exists():
        previous = _read_fingerprint(out)
        if previous == fingerprint and not force:
            return PrepareResult(out, reused=True, summary=read_json(out / PREPARE_JSON))
        if not force:
            what = "a different preparation" if previous else "other files"
            raise DataError(f"{out}: already holds {what}; choose another --out or add --force to replace it")
    return None


def _read_and_clean(
    cfg: PrepareConfig,
    corpora: dict[str, tuple[Path, Path] | Path],
    tmp: Path,
    threads: int,
    stage: Callable[[str], None],
) -> dict[str, int]:
    """Stage 1: read and clean every split, streaming, into text files in `tmp` (the two sides on two cores when
    the corpus is large); the lines of each. A bad line stops everything here, before any SentencePiece
    training. Training text waits in hidden files for its filters."""
    lines: dict[str, int] = {}

    def reading(name: str) -> Callable[[str], None]:
        return lambda done: stage(f"reading {name}: {done}")

    for name, files in corpora.items():
        outs = (_cleaned(tmp, name, cfg.src), _cleaned(tmp, name, cfg.tgt))
        lines[name] = clean_corpus(files, cfg.src, cfg.tgt, outs, threads, reading(name))
    return lines


def _cleaned(tmp: Path, name: str, lang: str) -> Path:
    """Where stage 1 leaves one side of a split, cleaned: the training text in a hidden file, which its filters
    replace with train.LANG (the pairs they kept)."""
    return tmp / f"{'.all.train' if name == 'train' else name}.{lang}"


def _train_sentencepiece(
    cfg: PrepareConfig, tmp: Path, n_train: int, stage: Callable[[str], None]
) -> tuple[dict[str, bytes], dict[str, str]]:
    """Stage 2: SentencePiece BPE on the training text (or a deterministic sample of it), one model for both
    languages or one each, written to `tmp` with their vocabularies; the models by file name, and the file
    name of each side's."""
    langs = (cfg.src, cfg.tgt)
    train_text = {lang: _cleaned(tmp, "train", lang) for lang in langs}
    models: dict[str, bytes] = {}
    spm_names = spm_model_names(cfg.src, cfg.tgt, cfg.joint)
    if cfg.joint:
        stage(f"training SentencePiece BPE on {min(2 * n_train, cfg.spm_sample or 2 * n_train):,} sentences")
        models[spm_names["src"]] = train_bpe(
            _spm_input([train_text[lang] for lang in langs], 2 * n_train, cfg.spm_sample), cfg.vocab_size
        )
    else:
        for side, lang in zip(("src", "tgt"), langs):
            stage(f"training SentencePiece BPE ({lang}) on {min(n_train, cfg.spm_sample or n_train):,} sentences")
            models[spm_names[side]] = train_bpe(_spm_input([train_text[lang]], n_train, cfg.spm_sample), cfg.vocab_size)
    for name, proto in models.items():
        (tmp / name).write_bytes(proto)
        vocab = Tokenizer(proto).pieces()
        (tmp / vocab_name(name)).write_text("".join(f"{p}\n" for p in vocab), encoding="utf-8")
    return models, spm_names


def _copy_tokenizers(source: ModelTokenizers, tmp: Path) -> dict[str, bytes]:
    """Stage 2 with --tokenizer: the model's tokenizer files copied to `tmp` as they are, each SentencePiece model
    with its readable vocabulary as a trained one has; the files by name."""
    for name, data in source.files.items():
        (tmp / name).write_bytes(data)
    for side, tokenizer in (("src", source.src), ("tgt", source.tgt)):
        vocab = tmp / vocab_name(source.names[side])
        vocab.write_text("".join(f"{p}\n" for p in tokenizer.pieces()), encoding="utf-8")
    return dict(source.files)


def _encode_splits(
    cfg: PrepareConfig,
    files: dict[str, list[Path]],
    lines: dict[str, int],
    tmp: Path,
    tokenizers: tuple[Tokenizer, Tokenizer],
    threads: int,
    stage: Callable[[str], None],
    unk_id: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Stage 3: every split encoded into NAME.ids.safetensors (nmt.prepare_encode), the training split through
    its filters; the entry of each in prepare.json (with the pairs holding `unk_id`, when given)."""
    langs = (cfg.src, cfg.tgt)
    return {
        name: encode_split(
            name,
            langs,
            {lang: _cleaned(tmp, name, lang) for lang in langs},
            tmp,
            split_files,
            lines[name],
            tokenizers,
            threads,
            stage,
            _TrainingFilter(cfg, tmp) if name == "train" else None,
            unk_id,
        )
        for name, split_files in files.items()
    }


class _TrainingFilter:
    """The training split's filters over each encoded chunk: lengths and ratio (`_keep`), then duplicates
    (--dedup, first one kept); counts what each dropped, and writes the text of the pairs kept to
    train.SRC and train.TGT."""

    def __init__(self, cfg: PrepareConfig, tmp: Path) -> None:
        self.cfg = cfg
        self.counts = {"empty": 0, "too_long": 0, "ratio": 0, "duplicate": 0}
        self.kept = np.zeros(0, dtype=bool)
        self.seen: set[int] = set()
        self.text = {
            lang: open(tmp / f"train.{lang}", "w", encoding="utf-8", newline="\n") for lang in (cfg.src, cfg.tgt)
        }

    def __call__(self, chunk: Chunk) -> Chunk:
        src_text, tgt_text, src_ids, tgt_ids, sl, tl = chunk
        keep = _keep(sl, tl, self.cfg, self.counts)
        if self.cfg.dedup:
            for i in np.flatnonzero(keep):
                key = hash_pair(src_text[i], tgt_text[i])
                if key in self.seen:
                    keep[i] = False
                    self.counts["duplicate"] += 1
                else:
                    self.seen.add(key)
        rows, self.kept = np.flatnonzero(keep), keep
        if len(rows) < len(src_text):
            src_ids, tgt_ids = [src_ids[i] for i in rows], [tgt_ids[i] for i in rows]
            src_text, tgt_text = [src_text[i] for i in rows], [tgt_text[i] for i in rows]
            sl, tl = sl[rows], tl[rows]
        self.text[self.cfg.src].write("".join(f"{s}\n" for s in src_text))
        self.text[self.cfg.tgt].write("".join(f"{t}\n" for t in tgt_text))
        return src_text, tgt_text, src_ids, tgt_ids, sl, tl

    def close(self) -> None:
        for handle in self.text.values():
            handle.close()


def _write_out(tmp: Path, out: Path, summary: dict[str, Any], stage: Callable[[str], None]) -> None:
    """Stage 4: prepare.json, then `tmp` made the output directory `out` whole or not at all."""
    (tmp / PREPARE_JSON).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    stage("syncing to disk")
    commit_dir(tmp, out)


def hash_pair(src: str, tgt: str) -> int:
    """A 64-bit digest of a sentence pair: --dedup remembers these, not the sentences (two different
    pairs share one with a probability of about n^2 / 2^65: 4e-7 for 4 million pairs)."""
    return int.from_bytes(hashlib.blake2b(f"{src}\t{tgt}".encode(), digest_size=8).digest(), "little")


def _read_fingerprint(out: Path) -> str | None:
    try:
        return cast("str | None", read_json(out / PREPARE_JSON).get("fingerprint"))
    except (OSError, ValueError):
        return None
