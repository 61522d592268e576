"""`nmt prepare`: train SentencePiece BPE on parallel text and write a prepared data directory."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from nmt_cli.common import err, handle_errors, out, writable

DEFAULT_SPM_SAMPLE = 2_000_000  # nmt.prepare.DEFAULT_SPM_SAMPLE, written out so that `nmt --help` loads no numpy


class Stages:
    """What `nmt prepare` is doing: the live status line on a terminal; otherwise, once it has run for a
    few seconds (a small preparation stays quiet), a line on stderr when the stage changes and every few
    seconds within a long one."""

    EVERY = 5.0  # seconds between plain lines

    def __init__(self, status) -> None:
        self.status, self.last, self.shown = status, "", 0.0
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        if err.is_terminal:
            self.status.update(f"{message}…")
            return
        stage, now = message.split(":")[0], time.monotonic()
        if now - self.started < self.EVERY:
            return
        if stage != self.last.split(":")[0] or now - self.shown >= self.EVERY:
            err.print(f"[{now - self.started:6.1f} s] {message}", markup=False)
            self.last, self.shown = message, now


@contextlib.contextmanager
def terminate_as_interrupt():
    """SIGTERM unwinds like Ctrl-C, so that the half-written temporary directory is removed."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@handle_errors
def prepare(
    src: Annotated[str, typer.Option("--src", "-s", help="Source language suffix, e.g. en.")],
    tgt: Annotated[str, typer.Option("--tgt", "-t", help="Target language suffix, e.g. fr.")],
    train: Annotated[
        str, typer.Option(help="Training corpus: PREFIX (PREFIX.SRC + PREFIX.TGT, optionally .gz) or a .tsv file.")
    ],
    valid: Annotated[str, typer.Option(help="Validation corpus, same forms as --train.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the prepared data to.")],
    test: Annotated[
        list[str] | None, typer.Option(help="Test corpus; repeat for several. Each split is named after its prefix.")
    ] = None,
    vocab_size: Annotated[int, typer.Option(help="SentencePiece BPE vocabulary size (per model).")] = 8000,
    joint: Annotated[
        bool, typer.Option("--joint/--separate", help="One BPE model for both languages, or one per language.")
    ] = True,
    max_len: Annotated[
        int, typer.Option(help="Drop training pairs with more BPE tokens than this on either side; 0 keeps all.")
    ] = 256,
    max_ratio: Annotated[
        float, typer.Option(help="Drop training pairs whose token-length ratio exceeds this; 0 keeps all.")
    ] = 0.0,
    drop_empty: Annotated[
        bool, typer.Option("--drop-empty/--keep-empty", help="Drop training pairs with an empty side.")
    ] = True,
    dedup: Annotated[
        bool,
        typer.Option("--dedup/--no-dedup", help="Drop exact duplicate training pairs (remembered by a 64-bit hash)."),
    ] = False,
    spm_sample: Annotated[
        int, typer.Option(help="Train SentencePiece on at most this many sentences, a fixed random sample; 0 uses all.")
    ] = DEFAULT_SPM_SAMPLE,
    threads: Annotated[int | None, typer.Option(min=1, help="Threads for encoding (default: all cores).")] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Rebuild even if --out already holds this preparation, or replace a different one."
        ),
    ] = False,
) -> None:
    """Train a SentencePiece BPE model on parallel text and encode every split (like fairseq-preprocess).

    Special ids: pad=0, unk=1, bos=2 (<s>), eos=3 (</s>). Valid and test splits are never filtered.
    """
    from nmt.prepare import PrepareConfig
    from nmt.prepare import prepare as run_prepare

    writable(out_dir, "--out", directory=True)
    cfg = PrepareConfig(
        src=src,
        tgt=tgt,
        train=train,
        valid=valid,
        tests=tuple(test or ()),
        vocab_size=vocab_size,
        joint=joint,
        max_len=max_len,
        max_ratio=max_ratio,
        drop_empty=drop_empty,
        dedup=dedup,
        spm_sample=spm_sample,
    )
    with err.status("preparing…") as status, terminate_as_interrupt():
        result = run_prepare(cfg, out_dir, force=force, stage=Stages(status), threads=threads)
    summary = result.summary
    if result.reused:
        out.print(f"{out_dir} already holds this preparation (same inputs and settings): reusing it; --force rebuilds")
        return
    train_info = summary["splits"]["train"]
    dropped = ", ".join(f"{k} {v}" for k, v in train_info["filtered"].items() if v) or "none"
    out.print(f"wrote {out_dir}: vocabulary {summary['vocab_size']['src']} ({'joint' if joint else 'separate'})")
    for name, info in summary["splits"].items():
        kept = info.get("kept", info["lines"])
        toks = info["tokens"]
        mean = " ".join(f"{lang} {toks[lang] / max(kept, 1):.1f}" for lang in (src, tgt))
        out.print(f"  {name:<18} {kept:>8,} pairs   mean BPE tokens per sentence: {mean}")
    out.print(f"  training pairs dropped by filters: {dropped}")
