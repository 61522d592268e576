"""`nmt prepare`: train SentencePiece BPE on parallel text (or take a model's: --tokenizer) and write a prepared
data directory."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from nmt_cli.common import err, handle_errors, out, writable
from nmt_cli.settings import FROM_FLAGS, Settings, settings

from nmt.config import PrepareConfig


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
@settings(PrepareConfig)
def prepare(
    settings: Settings = FROM_FLAGS,  # the corpora and the preparation's settings (nmt_cli.settings)
    *,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the prepared data to.")],
    threads: Annotated[int | None, typer.Option(min=1, help="Threads for encoding (default: all cores).")] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Rebuild even if --out already holds this preparation, or replace a different one."
        ),
    ] = False,
    tokenizer: Annotated[
        Path | None,
        typer.Option(
            metavar="MODEL",
            help="Encode with the SentencePiece model(s) of this model (or run) directory instead of training new "
            "ones, for `nmt train --init MODEL`; pairs holding <unk> are counted and shown.",
        ),
    ] = None,
) -> None:
    """Train a SentencePiece BPE model on parallel text and encode every split (like fairseq-preprocess); with
    --tokenizer MODEL, encode with that model's SentencePiece model(s) instead, to fine-tune it (nmt train --init).

    Special ids: pad=0, unk=1, bos=2 (<s>), eos=3 (</s>). Valid and test splits are never filtered.
    """
    from nmt.prepare import prepare as run_prepare

    cfg = settings.make(PrepareConfig)
    if tokenizer is not None:
        _vocabulary_not_given(settings)
    writable(out_dir, "--out", directory=True)
    with err.status("preparing…") as status, terminate_as_interrupt():
        result = run_prepare(cfg, out_dir, force=force, stage=Stages(status), threads=threads, tokenizer=tokenizer)
    summary = result.summary
    if result.reused:
        out.print(f"{out_dir} already holds this preparation (same inputs and settings): reusing it; --force rebuilds")
        return
    train_info = summary["splits"]["train"]
    dropped = ", ".join(f"{k} {v}" for k, v in train_info["filtered"].items() if v) or "none"
    joint = summary["spm"]["src"] == summary["spm"]["tgt"]
    out.print(f"wrote {out_dir}: vocabulary {summary['vocab_size']['src']} ({'joint' if joint else 'separate'})")
    if "tokenizer" in summary:
        out.print(f"  tokenizer of {summary['tokenizer']['path']} (no new vocabulary)", markup=False)
    for name, info in summary["splits"].items():
        kept = info.get("kept", info["lines"])
        toks = info["tokens"]
        mean = " ".join(f"{lang} {toks[lang] / max(kept, 1):.1f}" for lang in (cfg.src, cfg.tgt))
        out.print(f"  {name:<18} {kept:>8,} pairs   mean BPE tokens per sentence: {mean}")
    out.print(f"  training pairs dropped by filters: {dropped}")
    if "tokenizer" in summary:
        _report_unknown(summary["splits"])


def _vocabulary_not_given(settings: Settings) -> None:
    """--tokenizer brings its vocabulary: the options that shape a new one conflict with it."""
    from nmt.errors import ConfigError

    given = settings.given(PrepareConfig)
    for key, flag in (("vocab_size", "--vocab-size"), ("joint", "--joint/--separate")):
        if key in given:
            raise ConfigError(
                f"{flag} conflicts with --tokenizer: the model's vocabulary is used, no new one is trained"
            )


def _report_unknown(splits: dict) -> None:
    """How many pairs hold <unk> (text the model's vocabulary cannot cover), what became of them, and where
    the first few are."""
    found = {name: info["unk"] for name, info in splits.items() if info.get("unk", {}).get("pairs")}
    if not found:
        out.print("  pairs holding <unk>: none (the vocabulary covers every pair)")
        return
    parts = []
    for name, unk in found.items():
        part = f"{name} {unk['pairs']:,}"
        if "kept" in splits[name]:
            part += f" ({unk['kept']:,} kept, {unk['pairs'] - unk['kept']:,} dropped by the filters above)"
        parts.append(part)
    out.print(
        f"  pairs holding <unk> (the vocabulary cannot cover them): {', '.join(parts)}; kept as encoded, as "
        "prepare keeps every pair its filters pass",
        markup=False,
    )
    for unk in found.values():
        for example in unk["examples"]:
            out.print(f"    {example}", markup=False)
