"""`nmt prepare`: raw parallel text → SentencePiece BPE model(s) + encoded splits + prepare.json.
The output directory is written whole or not at all, and the same inputs give the same bytes. The
corpus is streamed, never held in memory: millions of pairs prepare in a bounded amount of memory."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any, cast

import numpy as np

from nmt.data import corpus_files, count_lines, iter_side_blocks, misaligned, write_ids
from nmt.errors import ConfigError, DataError
from nmt.fileio import commit_dir, read_json, sha256_bytes, sha256_file
from nmt.layout import PREPARE_JSON, ids_file, spm_model_names, vocab_name
from nmt.tokenizer import SPECIAL, Tokenizer, train_bpe
from nmt.version import __version__

DEFAULT_SPM_SAMPLE = 2_000_000  # SentencePiece's documentation: a few million sentences are plenty
SPM_SAMPLE_SEED = 1
CHUNK = 50_000  # pairs encoded at a time: bounds memory, and feeds SentencePiece's threads
PARALLEL_BYTES = 32 << 20  # corpora this large are cleaned on two cores, one side each


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
    spm_sample: int = (
        DEFAULT_SPM_SAMPLE  # SentencePiece learns from at most this many sentences (a fixed random sample); 0: all
    )


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
    """Lines of a cleaned text file written by this module (no line break can hide inside a line)."""
    with open(path, encoding="utf-8", newline="\n") as f:
        for line in f:
            yield line[:-1]


def _clean_side(
    files: tuple[Path, Path] | Path, side: int, src: str, tgt: str, out: Path, report: Callable[[int], None]
) -> int:
    """Write one side of a corpus, cleaned, to `out`; its number of lines."""
    n = 0
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for block in iter_side_blocks(files, side, src, tgt):
            f.write("\n".join(block) + "\n")
            n += len(block)
            report(n)
    return n


def _clean_side_main() -> None:
    """Entry point of a worker process (`python -c`, see `_clean_corpus`): cleans one side, printing its
    progress and then its outcome on stdout, one JSON line each."""
    args = json.loads(sys.argv[1])
    try:  # Linux: die with the parent, whatever kills it
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != args["parent"]:
            return
    except (OSError, AttributeError):
        pass
    names = args["files"]  # one TSV file or the two sides (see `_clean_in_workers`)
    files = Path(names[0]) if len(names) == 1 else (Path(names[0]), Path(names[1]))
    try:
        n = _clean_side(
            files,
            args["side"],
            args["src"],
            args["tgt"],
            Path(args["out"]),
            lambda done: print(json.dumps({"done": done}), flush=True),
        )
        print(json.dumps({"lines": n}), flush=True)
    except DataError as e:
        print(json.dumps({"error": str(e)}), flush=True)


def _clean_corpus(
    files: tuple[Path, Path] | Path,
    src: str,
    tgt: str,
    outs: tuple[Path, Path],
    threads: int,
    report: Callable[[str], None],
) -> int:
    """Clean both sides of a corpus into `outs`; its number of pairs, or DataError for a bad line (one core:
    the source side's first; two: the first found) or for sides of different lengths. A large corpus is
    cleaned on two cores, one side each (`_clean_in_workers`)."""
    paths = [files] if isinstance(files, Path) else list(files)

    def lines_of(lang: str) -> Callable[[int], None]:
        return lambda n: report(f"{n:,} lines ({lang})")

    if threads < 2 or sum(f.stat().st_size for f in paths) < PARALLEL_BYTES:
        counts = [
            _clean_side(files, side, src, tgt, outs[side], lines_of(lang)) for side, lang in enumerate((src, tgt))
        ]
    else:
        counts = _clean_in_workers(paths, src, tgt, outs, lambda n: report(f"{n:,} pairs"))
    if counts[0] != counts[1]:  # only two files can disagree: a TSV line holds both sides
        raise misaligned(paths[0], paths[1], counts[0], counts[1])
    return counts[0]


def _clean_in_workers(
    paths: list[Path], src: str, tgt: str, outs: tuple[Path, Path], report: Callable[[int], None]
) -> list[int]:
    """`_clean_side` for both sides at once, in two fresh Python processes (not multiprocessing: it would
    re-run the caller's script); the lines of each. The first bad line found stops the other side."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, (str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")))
        ),
    }
    code = "from nmt.prepare import _clean_side_main; _clean_side_main()"
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                code,
                json.dumps(
                    {
                        "files": [str(f) for f in paths],
                        "side": side,
                        "src": src,
                        "tgt": tgt,
                        "out": str(outs[side]),
                        "parent": os.getpid(),
                    }
                ),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for side in (0, 1)
    ]
    last: list[dict] = [{}, {}]  # each worker's latest JSON line: progress, then its outcome
    errors: list[str] = ["", ""]

    def follow(side: int) -> None:
        stdout, stderr = workers[side].stdout, workers[side].stderr
        assert stdout is not None and stderr is not None  # both are PIPEs
        for line in stdout:
            last[side] = json.loads(line)
        errors[side] = stderr.read()

    def failed() -> bool:
        return any("error" in state for state in last)

    readers = [threading.Thread(target=follow, args=(side,), daemon=True) for side in (0, 1)]
    try:
        for reader in readers:
            reader.start()
        while any(reader.is_alive() for reader in readers) and not failed():
            next(reader for reader in readers if reader.is_alive()).join(0.2)
            report(min(state.get("done", state.get("lines", 0)) for state in last))
    finally:  # done, failed or interrupted: no worker outlives this
        for worker in workers:
            if worker.poll() is None and (failed() or any(r.is_alive() for r in readers)):
                worker.kill()
            worker.wait()
    for state in last:  # the source side's error first, when both found one
        if "error" in state:
            raise DataError(state["error"])
    for side, state in enumerate(last):
        if "lines" not in state:
            raise RuntimeError(
                f"cleaning {paths[min(side, len(paths) - 1)]} failed in a worker process "
                f"(exit code {workers[side].returncode}): {errors[side].strip()[-2000:]}"
            )
    return [state["lines"] for state in last]


def _text_chunks(src: Path, tgt: Path) -> Iterator[tuple[list[str], list[str]]]:
    """CHUNK aligned lines at a time from the two cleaned sides."""
    with open(src, encoding="utf-8", newline="\n") as fs, open(tgt, encoding="utf-8", newline="\n") as ft:
        while src_lines := [line[:-1] for line in islice(fs, CHUNK)]:
            yield src_lines, [line[:-1] for line in islice(ft, CHUNK)]


def _encode_ahead(
    texts: Iterator[tuple[list[str], list[str]]], src_tok: Tokenizer, tgt_tok: Tokenizer, threads: int
) -> Iterator[tuple[list[str], list[str], list[list[int]], list[list[int]]]]:
    """Each chunk of texts with its ids. The next chunk is encoded on a background thread while the caller
    works on this one: SentencePiece lets go of the GIL, so Python's share of the work overlaps its own."""

    def encode(
        src_text: list[str], tgt_text: list[str]
    ) -> tuple[list[str], list[str], list[list[int]], list[list[int]]]:
        return src_text, tgt_text, src_tok.encode_batch(src_text, threads), tgt_tok.encode_batch(tgt_text, threads)

    with ThreadPoolExecutor(1) as pool:
        pending = None
        for src_text, tgt_text in texts:
            future = pool.submit(encode, src_text, tgt_text)
            if pending is not None:
                yield pending.result()
            pending = future
        if pending is not None:
            yield pending.result()


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
) -> PrepareResult:
    """Run the whole preparation; reuse `out` when it already holds exactly this preparation.

    Streams: memory is bounded by the SentencePiece sample, a chunk of lines and a few bytes a pair,
    not by the corpus. `stage` receives what is being done, with counts, as it goes."""
    if cfg.src == cfg.tgt:
        raise ConfigError(f"--src and --tgt are both {cfg.src!r}; give two different languages")
    if cfg.vocab_size < 300:
        raise ConfigError(f"--vocab-size {cfg.vocab_size} is too small; use at least 300 (bytes and specials need 260)")
    if cfg.spm_sample < 0:
        raise ConfigError(f"--spm-sample {cfg.spm_sample}: give a number of sentences, or 0 for all")
    threads = threads or len(os.sched_getaffinity(0))
    corpora = {"train": corpus_files(cfg.train, cfg.src, cfg.tgt), "valid": corpus_files(cfg.valid, cfg.src, cfg.tgt)}
    for name, prefix in zip(_split_names(cfg.tests), cfg.tests):
        corpora[name] = corpus_files(prefix, cfg.src, cfg.tgt)
    file_lists = {name: [files] if isinstance(files, Path) else list(files) for name, files in corpora.items()}
    stage("checksumming the inputs")
    inputs = {str(f): sha256_file(f) for files in file_lists.values() for f in files}
    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
    train_files = file_lists["train"]
    sentences = count_lines(train_files[0]) * (2 if cfg.joint else 1)  # per SentencePiece model
    if not cfg.spm_sample or cfg.spm_sample >= sentences:
        del settings["spm_sample"]  # every sentence is used: the output (and prepare.json) of earlier versions
    fingerprint = hashlib.sha256(json.dumps([settings, inputs, __version__], sort_keys=True).encode()).hexdigest()

    out = Path(out)
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

    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    langs = (cfg.src, cfg.tgt)
    try:
        # 1. Read and clean every split, streaming, into text files (the two sides on two cores when the
        #    corpus is large): a bad line stops everything here, before any SentencePiece training.
        #    Training text waits in hidden files for its filters.
        lines: dict[str, int] = {}

        def reading(name: str) -> Callable[[str], None]:
            return lambda done: stage(f"reading {name}: {done}")

        for name, files in corpora.items():
            clean_prefix = tmp / (".all.train" if name == "train" else name)
            lines[name] = _clean_corpus(
                files,
                cfg.src,
                cfg.tgt,
                (Path(f"{clean_prefix}.{cfg.src}"), Path(f"{clean_prefix}.{cfg.tgt}")),
                threads,
                reading(name),
            )

        # 2. SentencePiece BPE on the training text (or a deterministic sample of it).
        train_text = {lang: tmp / f".all.train.{lang}" for lang in langs}
        n_train = lines["train"]
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
                models[spm_names[side]] = train_bpe(
                    _spm_input([train_text[lang]], n_train, cfg.spm_sample), cfg.vocab_size
                )
        src_tok, tgt_tok = Tokenizer(models[spm_names["src"]]), Tokenizer(models[spm_names["tgt"]])
        for name, proto in models.items():
            (tmp / name).write_bytes(proto)
            vocab = Tokenizer(proto).pieces()
            (tmp / vocab_name(name)).write_text("".join(f"{p}\n" for p in vocab), encoding="utf-8")

        # 3. Encode every split in chunks on all cores; ids go to raw files, then into safetensors.
        splits = {}
        for name, split_files in file_lists.items():
            entry: dict[str, Any] = {"lines": lines[name], "files": [str(f) for f in split_files]}
            text = {lang: tmp / (f".all.train.{lang}" if name == "train" else f"{name}.{lang}") for lang in langs}
            raw = {lang: tmp / f".{name}.{lang}.ids" for lang in langs}
            lens: dict[str, list[np.ndarray]] = {lang: [] for lang in langs}
            counts = {"empty": 0, "too_long": 0, "ratio": 0, "duplicate": 0}
            seen: set[int] = set()
            kept_text = None
            if name == "train":
                kept_text = {lang: open(tmp / f"train.{lang}", "w", encoding="utf-8", newline="\n") for lang in langs}
            try:
                with open(raw[cfg.src], "wb") as rs, open(raw[cfg.tgt], "wb") as rt:
                    done, started = 0, time.perf_counter()
                    texts = _text_chunks(text[cfg.src], text[cfg.tgt])
                    for src_text, tgt_text, src_ids, tgt_ids in _encode_ahead(texts, src_tok, tgt_tok, threads):
                        size = len(src_text)
                        sl = np.fromiter(map(len, src_ids), dtype=np.int64, count=size)
                        tl = np.fromiter(map(len, tgt_ids), dtype=np.int64, count=size)
                        if kept_text is not None:
                            keep = _keep(sl, tl, cfg, counts)
                            if cfg.dedup:
                                for i in np.flatnonzero(keep):
                                    key = hash_pair(src_text[i], tgt_text[i])
                                    if key in seen:
                                        keep[i] = False
                                        counts["duplicate"] += 1
                                    else:
                                        seen.add(key)
                            rows = np.flatnonzero(keep)
                            if len(rows) < size:
                                src_ids, tgt_ids = [src_ids[i] for i in rows], [tgt_ids[i] for i in rows]
                                src_text, tgt_text = [src_text[i] for i in rows], [tgt_text[i] for i in rows]
                                sl, tl = sl[rows], tl[rows]
                            kept_text[cfg.src].write("".join(f"{s}\n" for s in src_text))
                            kept_text[cfg.tgt].write("".join(f"{t}\n" for t in tgt_text))
                        for handle, ids, side_lens, lang in ((rs, src_ids, sl, cfg.src), (rt, tgt_ids, tl, cfg.tgt)):
                            flat = np.fromiter(chain.from_iterable(ids), dtype="<i4", count=int(side_lens.sum()))
                            handle.write(flat.tobytes())
                            lens[lang].append(side_lens)
                        done += size
                        rate = done / max(time.perf_counter() - started, 1e-9)
                        stage(f"encoding {name}: {done:,} of {lines[name]:,} pairs ({rate:,.0f} pairs/s)")
            finally:
                for kept in (kept_text or {}).values():
                    kept.close()
            sl, tl = (np.concatenate(lens[lang]) if lens[lang] else np.zeros(0, dtype=np.int64) for lang in langs)
            if name == "train":
                entry["filtered"] = counts
                entry["kept"] = len(sl)
                if not len(sl):
                    raise DataError(f"{split_files[0]}: every training pair was filtered out; relax the filters")
                for lang in langs:
                    text[lang].unlink()
            stage(f"writing {name}")
            write_ids(tmp / ids_file(name), raw[cfg.src], sl, raw[cfg.tgt], tl)
            for path in raw.values():
                path.unlink()
            entry["tokens"] = {cfg.src: int(sl.sum()), cfg.tgt: int(tl.sum())}
            splits[name] = entry
        summary = {
            "nmt_version": __version__,
            "fingerprint": fingerprint,
            "settings": settings,
            "special_ids": asdict(SPECIAL),
            "spm": {**spm_names, "sha256": {n: sha256_bytes(p) for n, p in models.items()}},
            "vocab_size": {"src": len(src_tok), "tgt": len(tgt_tok)},
            "splits": splits,
            "inputs": inputs,
        }
        (tmp / PREPARE_JSON).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        stage("syncing to disk")
        commit_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return PrepareResult(out, reused=False, summary=summary)


def hash_pair(src: str, tgt: str) -> int:
    """A 64-bit digest of a sentence pair: --dedup remembers these, not the sentences (two different
    pairs share one with a probability of about n^2 / 2^65: 4e-7 for 4 million pairs)."""
    return int.from_bytes(hashlib.blake2b(f"{src}\t{tgt}".encode(), digest_size=8).digest(), "little")


def _read_fingerprint(out: Path) -> str | None:
    try:
        return cast("str | None", read_json(out / PREPARE_JSON).get("fingerprint"))
    except (OSError, ValueError):
        return None
