"""`nmt train` and `nmt average`: train a Transformer on a prepared data directory; average checkpoints."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from nmt_cli.common import count, err, handle_errors, out, writable
from nmt_cli.settings import FROM_FLAGS, Settings, settings
from rich.live import Live
from rich.table import Table

from nmt.config import ModelConfig, TrainConfig
from nmt.errors import ConfigError, NmtError


def duration(seconds: float) -> str:
    """'42s', '5m40s', '2h03m'."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    return f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"


class Display:
    """Training progress on stderr (stdout carries only the result line): a live table on a terminal,
    whose elapsed time and ETA tick between events; plain lines otherwise (CI, pipes, logs), which carry the
    same step total, elapsed time and ETA. Quiet: the warnings only."""

    def __init__(self, quiet: bool = False) -> None:
        self.last: dict[str, Any] = {}
        self.valid: dict[str, Any] = {}
        self.state = "starting"
        self.max_steps = self.first_step = self.step = 0
        self.max_minutes = self.trained_before = 0.0  # the time limit; seconds trained before this start (resumed)
        self.started = time.monotonic()
        self.quiet = quiet
        # last: rich renders the table once when Live is made, and the table reads the fields above
        self.live: Live | None = (
            Live(console=err, refresh_per_second=2, transient=False, get_renderable=self._table)
            if err.is_terminal and not quiet
            else None
        )

    def elapsed(self) -> float:
        """Seconds of training, over all the starts of the run (what max_minutes counts)."""
        return self.trained_before + time.monotonic() - self.started

    def eta(self) -> float | None:
        """Seconds until max_steps or max_minutes ends the run, whichever comes first; None when neither
        limits it (or when only max_steps does and no step has been timed yet)."""
        left = []
        done = self.step - self.first_step
        if self.max_steps and done > 0:
            left.append((self.max_steps - self.step) * (time.monotonic() - self.started) / done)
        if self.max_minutes:
            left.append(self.max_minutes * 60 - self.elapsed())
        return max(0.0, min(left)) if left else None

    def timing(self) -> str:
        """'1m12s elapsed, ETA 5m40s'."""
        eta = self.eta()
        return f"{duration(self.elapsed())} elapsed" + (f", ETA {duration(eta)}" if eta is not None else "")

    def __enter__(self) -> Display:
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live:
            self.live.__exit__(*exc)

    def _table(self) -> Table:
        table = Table(show_header=False, box=None)
        s = self.last
        table.add_row("state", self.state)
        table.add_row("step", f"{self.step}" + (f" / {self.max_steps}" if self.max_steps else ""))
        if s:
            table.add_row("epoch", str(s["epoch"]))
            table.add_row("loss / ppl", f"{s['loss']:.3f} / {s['ppl']:.1f}")
            table.add_row("lr", f"{s['lr']:.2e}")
            table.add_row("tokens/s", f"{s['tokens_per_s']:,.0f}")
        eta = self.eta()
        table.add_row("elapsed", duration(self.elapsed()) + (f"   ETA {duration(eta)}" if eta is not None else ""))
        if self.valid:
            v = self.valid
            bleu = f"  BLEU {v['valid_bleu']:.2f}" if "valid_bleu" in v else ""
            table.add_row(
                "last validation", f"step {v['step']}: loss {v['valid_loss']:.3f} ppl {v['valid_ppl']:.2f}{bleu}"
            )
        return table

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        self.step = event.get("step", self.step)
        if kind == "start":
            self.max_steps, self.first_step, self.state = event["max_steps"], event["step"], "training"
            self.max_minutes, self.trained_before = event.get("max_minutes", 0.0), event.get("train_seconds", 0.0)
            self.started = time.monotonic()
        elif kind == "train":
            self.last, self.state = event, "training"
        elif kind == "validating":
            self.state = f"validating at step {event['step']}…"
        elif kind == "valid":
            self.valid, self.state = event, "training"
        line = self._line(kind, event) if kind == "skip" or not self.quiet else None
        if line:
            err.print(line, markup=False)
        if self.live:
            self.live.refresh()

    def _line(self, kind: Any, event: dict[str, Any]) -> str | None:
        """The line an event prints on stderr, if any (on a terminal the table shows steps and checkpoints)."""
        if kind == "start":
            skipped = f", {event['skipped_long']} too long skipped" if event["skipped_long"] else ""
            processes = f"{event['processes']} processes x " if event.get("processes", 1) > 1 else ""
            return (
                f"training {event['params']:,} parameters on {event['train_pairs']:,} pairs{skipped} "
                f"({event['device']}, {processes}{count(event['threads'], 'thread')})"
            )
        if kind == "resumed":
            return f"resumed from {event['path']} (step {event['step']})"
        if kind == "train" and not self.live:
            total = f"/{self.max_steps}" if self.max_steps else ""
            return (
                f"step {event['step']:>{len(total) - 1 if total else 6}}{total}  epoch {event['epoch']:>3}  "
                f"loss {event['loss']:.3f}  ppl {event['ppl']:8.2f}  lr {event['lr']:.2e}  "
                f"{event['tokens_per_s']:,.0f} tok/s  {self.timing()}"
            )
        if kind == "valid":
            bleu = f"  BLEU {event['valid_bleu']:.2f}" if "valid_bleu" in event else ""
            return f"valid step {event['step']:>6}  loss {event['valid_loss']:.3f}  ppl {event['valid_ppl']:.2f}{bleu}"
        if kind == "skip":
            return (
                f"warning: step {event['step']}: the {event['what']} became {event['value']}; "
                "skipped this batch (--skip-nonfinite)"
            )
        if kind == "checkpoint" and not self.live:
            return f"saved {event['path']}"
        return None


@handle_errors
@settings(ModelConfig, TrainConfig)
def train(
    ctx: typer.Context,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Run directory for checkpoints and logs.")] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="TOML file with [model] and [train] tables; the options below, given here, win over it."),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue the run in this run directory exactly where its last checkpoint left off."),
    ] = None,
    init: Annotated[
        Path | None,
        typer.Option(
            metavar="MODEL",
            help="Start from this model's (or run's) weights and [model] settings, with a fresh optimizer and "
            "schedule (fine-tuning); DATA_DIR must be prepared with `nmt prepare --tokenizer MODEL`.",
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Delete an existing run in --out and start over.")] = False,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda or cuda:N (default: cuda when available, else cpu).")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads per process (default: all cores, shared among the processes).")
    ] = None,
    nproc: Annotated[
        int,
        typer.Option(
            help="Train on N processes on this machine (one per GPU, or CPU processes), "
            "launched by torch.distributed.run; see torchrun for several machines."
        ),
    ] = 1,
    dump_config: Annotated[
        bool,
        typer.Option(
            "--dump-config",
            help="Print the settings this command would train with (--config, then the options; or --resume's run) "
            "as TOML that --config reads back, and exit without training.",
        ),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="No progress on stderr: notes, warnings and errors only (and the 'done:' line)."
        ),
    ] = False,
    settings: Settings = FROM_FLAGS,  # the [model] and [train] options (nmt_cli.settings)
) -> None:
    """nmt train DATA_DIR --out RUN_DIR [--config FILE.toml] [--OPTION VALUE ...]: train an encoder-decoder
    Transformer on a prepared data directory (from `nmt prepare`), with label smoothing, warm-up and token batches.

    Validates every --valid-every steps (loss, perplexity, greedy sacreBLEU), checkpoints to RUN_DIR/checkpoints
    (safetensors + JSON), keeps the last --keep-last plus the best; RUN_DIR/best and RUN_DIR/last point at them.
    Ctrl-C or SIGTERM saves a checkpoint; `nmt train --resume RUN_DIR` continues it.
    """
    from nmt import distributed

    if init is not None and resume is not None:
        raise ConfigError(
            "--init starts a new run from a model; --resume continues a run from its checkpoint: give one"
        )
    if dump_config:
        print(_dump_config(ctx, config, resume, overwrite, settings, init), end="")
        return
    group = distributed.from_environment()
    if nproc != 1:
        if nproc < 1 or group.distributed:
            raise ConfigError(f"--nproc {nproc}: " + ("give 1 or more" if nproc < 1 else "already started by torchrun"))
        raise typer.Exit(launch(nproc))
    if group.distributed:
        distributed.stop_with_launcher()
    try:
        _train(ctx, out_dir, config, resume, overwrite, device, threads, group, settings, quiet, init)
    except NmtError as e:
        if group.distributed:
            e.args = (f"rank {group.rank}: {e}",)
        raise


def _train(
    ctx: typer.Context,
    out_dir: Path | None,
    config: Path | None,
    resume: Path | None,
    overwrite: bool,
    device: str | None,
    threads: int | None,
    group: Any,
    settings: Settings,
    quiet: bool,
    init: Path | None = None,
) -> None:
    import nmt.train as training
    from nmt.runtime import slow_bf16

    data_dir = _data_dir(ctx)
    display = Display(quiet) if group.writer else (lambda event: None)
    run: dict[str, Any] = dict(device=device, threads=threads, callback=display, group=group)
    busy = _silent if quiet else err.status
    if resume:
        _resume_alone(data_dir, config, overwrite, settings)
        with busy(f"loading {resume}…"):
            trainer = training.resume(resume, settings.given(TrainConfig), spell=settings.flag(TrainConfig), **run)
        run_dir = resume
    else:
        if data_dir is None or out_dir is None:
            raise ConfigError("give DATA_DIR and --out RUN_DIR (or --resume RUN_DIR)")
        writable(out_dir, "--out", directory=True)
        model_over, train_cfg = _configs(config, settings)
        with busy(f"loading {data_dir} and building the model…"):
            trainer = training.start(
                data_dir,
                out_dir,
                model_over,
                train_cfg,
                overwrite=overwrite,
                init=init,
                spell=_said(config, settings),
                **run,
            )
        run_dir = out_dir
        if init is not None and group.writer:
            record = trainer.checkpointer.files.meta["init"]
            err.print(
                f"note: starting from {record['path']} (model.safetensors sha256 {record['model_sha256'][:16]}…), "
                "with a fresh optimizer and schedule",
                markup=False,
            )
    if trainer.cfg.precision == "bf16" and group.writer and (why := slow_bf16(trainer.device)):
        err.print(f"warning: {why}; use --precision fp32 here")

    _stop_on_signals(trainer, group)
    try:
        with display if isinstance(display, Display) else contextlib.nullcontext():
            reason = trainer.train()
    finally:
        trainer.close()
    if trainer.stop_requested:
        if group.writer:
            err.print(f"stopped at step {trainer.state.step}; resume with: nmt train --resume {run_dir}")
        raise typer.Exit(130 if trainer.stop_requested == "SIGINT" else 143)
    if not group.writer:
        return
    best = trainer.early.best_metric
    out.print(
        f"done: {reason}. best {trainer.cfg.early_stop_metric} {best:.2f} at step {trainer.early.best_step}; "
        f"model: {run_dir}/best"
    )


def _silent(what: str) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


def _data_dir(ctx: typer.Context) -> Path | None:
    positional = list(ctx.args)
    if len(positional) > 1:
        raise ConfigError(f"one DATA_DIR expected, got {' '.join(positional)}; options look like --name value")
    return Path(positional[0]) if positional else None


def _resume_alone(data_dir: Path | None, config: Path | None, overwrite: bool, settings: Settings) -> None:
    if data_dir or config or overwrite or settings.given(ModelConfig):
        raise ConfigError(
            "--resume continues a run with its own data and config; give only RUN_DIR and limits such as --max-steps"
        )


def _said(config: Path | None, settings: Settings) -> Any:
    """A [model] setting as the user gave it: by its flag, or as a key of the --config file."""
    given, flag = settings.given(ModelConfig), settings.flag(ModelConfig)
    return lambda key: flag(key) if key in given else f"{config} [model] {key}"


def _dump_config(
    ctx: typer.Context,
    config: Path | None,
    resume: Path | None,
    overwrite: bool,
    settings: Settings,
    init: Path | None = None,
) -> str:
    """`--dump-config`: the [model] and [train] tables this command would train with, as TOML that --config reads
    back. The keys the prepared data sets are shown commented out (a config that named them would not fit other
    data); without DATA_DIR they are left out."""
    import nmt.train as training
    from nmt.config import to_dict, to_toml

    data_dir = _data_dir(ctx)
    if resume:
        _resume_alone(data_dir, config, overwrite, settings)
        given = settings.given(TrainConfig)
        model_cfg, train_cfg = training.resumed_configs(resume, given, spell=settings.flag(TrainConfig))
    else:
        model_over, train_cfg = _configs(config, settings)
        free = {k: v for k, v in model_over.items() if k not in DATA_FIXED}
        if init is not None:
            if data_dir is None:
                raise ConfigError("--init needs DATA_DIR, to check that its vocabulary is the model's")
            model_cfg = training.init_from(init, data_dir, model_over, _said(config, settings)).model_cfg
        else:
            model_cfg = (
                training.model_config_for(data_dir, model_over) if data_dir else settings.make(ModelConfig, free)
            )
    model = to_dict(model_cfg)
    fixed = {key: model.pop(key) for key in DATA_FIXED}
    known = {"model": fixed} if resume or data_dir else None
    tables = to_toml({"model": model, "train": to_dict(train_cfg)}, known, "  # set by the prepared data")
    return f"# nmt train --dump-config; train with it: nmt train DATA_DIR --out RUN_DIR --config FILE\n\n{tables}"


def _configs(config: Path | None, settings: Settings) -> tuple[dict[str, Any], TrainConfig]:
    """The [model] keys (the file's, then the flags') and the training config of a new run, checked."""
    from nmt.config import check_table, load_toml

    file_cfg = load_toml(config) if config else {}
    for section, cls in (("model", ModelConfig), ("train", TrainConfig)):
        check_table(cls, file_cfg.get(section, {}), f"{config} [{section}]")
    if file_cfg.get("decode"):
        err.print(
            f"note: {config}: nmt train ignores [decode]; `nmt translate --config {config}` reads it", markup=False
        )
    train_cfg = settings.make(TrainConfig, _loss_without_bleu(config, file_cfg.get("train", {}), settings))
    model_file = file_cfg.get("model", {})
    # checked here too, so that a refused value is named by its flag; the prepared data fixes the vocabulary
    settings.make(ModelConfig, {k: v for k, v in model_file.items() if k not in DATA_FIXED})
    return {**model_file, **settings.given(ModelConfig)}, train_cfg


def _loss_without_bleu(config: Path | None, table: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Without BLEU (--no-valid-bleu, or valid_bleu = false in the file) early stopping and the best checkpoint go
    by the validation loss, said in a note, unless a metric is named (bleu then is the config's error)."""
    given = settings.given(TrainConfig)
    chosen = {**table, **given}
    if chosen.get("valid_bleu", True) or "early_stop_metric" in chosen:
        return table
    said = "--no-valid-bleu" if "valid_bleu" in given else f"{config} [train] valid_bleu = false"
    err.print(f"note: {said}: early stopping watches the validation loss", markup=False)
    return {**table, "early_stop_metric": "loss"}


def _stop_on_signals(trainer: Any, group: Any) -> None:
    """SIGINT and SIGTERM ask the trainer to stop after the step it is taking (and save a checkpoint)."""

    def on_signal(signum: int, frame: Any) -> None:
        trainer.stop_requested = signal.Signals(signum).name
        if not group.distributed:  # (torchrun passes on the signal the processes already had from the terminal)
            signal.signal(signum, signal.SIG_DFL)  # a second signal stops at once; checkpoints stay atomic
        if group.writer:
            err.print(f"{trainer.stop_requested}: saving a checkpoint after this step…")

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)


DATA_FIXED = ("src_vocab_size", "tgt_vocab_size", "pad_id")  # [model] keys the prepared data sets
SHUTDOWN_S = 600  # how long torch.distributed.run lets the processes finish their step and checkpoint on a signal


def launch(nproc: int) -> int:
    """`nmt train --nproc N ...`: this same command on N processes, started by torch.distributed.run (torchrun's
    engine, on this machine); returns the exit code. The processes print their own errors; a process that dies
    without one (killed) is named here, in one line."""
    import logging
    import uuid

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch
    from torch.distributed.run import config_from_args, parse_args

    argv, skip = [], False
    for arg in sys.argv[1:]:  # the same command without --nproc
        if skip or arg == "--nproc" or arg.startswith("--nproc="):
            skip = not skip and arg == "--nproc"
            continue
        argv.append(arg)
    cores = len(os.sched_getaffinity(0))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // nproc)))  # torchrun would warn and set 1
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # its failure report is ours below
    # what `torchrun --standalone` sets up: a rendezvous on a free local port
    config, entry, args = config_from_args(
        parse_args(
            [
                "--rdzv-backend=c10d",
                "--rdzv-endpoint=localhost:0",
                f"--rdzv-id={uuid.uuid4()}",
                "--master-port=29500",
                f"--nproc-per-node={nproc}",
                "--monitor-interval=0.1",
                "-m",
                "nmt_cli.main",
                *argv,
            ]
        )
    )
    config.shutdown_timeout = SHUTDOWN_S
    try:
        elastic_launch(config, entry)(*args)
    except SignalException as e:  # passed on to the processes, which saved a checkpoint and stopped
        return 128 + int(e.sigval)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        if failure.signal_name() not in ("<N/A>", "SIGTERM", "SIGINT"):  # killed: it could not say so itself
            err.print(
                f"error: rank {rank} was killed ({failure.signal_name()}); the other processes stopped. "
                "Resume with --resume",
                markup=False,
            )
        return failure.exitcode if failure.exitcode > 0 else 1
    return 0


@handle_errors
def average(
    run_dir: Annotated[Path, typer.Argument(help="Run directory whose checkpoints to average.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Model directory to write.")],
    last: Annotated[int, typer.Option(help="Average the last N checkpoints.")] = 5,
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")] = False,
) -> None:
    """Average the weights of the last N checkpoints of a run into a new model directory."""
    from nmt.checkpoint import average_checkpoints
    from nmt.errors import CheckpointError
    from nmt.layout import CHECKPOINT_NAME, CHECKPOINTS

    if last < 1:
        raise ConfigError(f"--last {last}: average at least 1 checkpoint")
    if out_dir.exists() and not force:
        raise ConfigError(f"--out {out_dir} exists; add --force to replace it")
    writable(out_dir, "--out", directory=True)
    ckpts = (
        sorted(p for p in (run_dir / CHECKPOINTS).iterdir() if CHECKPOINT_NAME.fullmatch(p.name) and p.is_dir())
        if (run_dir / CHECKPOINTS).is_dir()
        else []
    )
    if not ckpts:
        raise CheckpointError(f"{run_dir}: no checkpoints (expected {run_dir}/{CHECKPOINTS}/step_*)")
    chosen = ckpts[-last:]
    if len(chosen) < last:
        err.print(
            f"warning: only {count(len(chosen), 'checkpoint')} in {run_dir}; averaging "
            f"{'those' if len(chosen) != 1 else 'it'}",
            markup=False,
        )
    with err.status(f"averaging {len(chosen)} checkpoints…"):
        average_checkpoints(chosen, out_dir)
    out.print(f"averaged {', '.join(p.name for p in chosen)} into {out_dir}")
