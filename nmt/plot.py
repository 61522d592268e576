"""Training curves of one or more runs, read from their `train_log.jsonl`: a table (one row per train
or valid record, written as CSV) and a picture (matplotlib, optional: `pip install 'nmt[plot]'`).

The log of a run that is still training can be read: a last line the trainer has not finished writing
(no newline at its end) is left out. Records other than `train` and `valid` (e.g. `skip`) are ignored."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from nmt.errors import ConfigError, DataError
from nmt.fileio import write_text
from nmt.layout import LOG_FILE

Kind = Literal["train", "valid"]
XAxis = Literal["step", "minutes"]

INSTALL_HINT = "pip install 'nmt[plot]'"
FORMATS = (".png", ".svg", ".pdf")
MAX_PIXELS = 20_000  # per side

# the log's own names; a record has those of its kind, the others are empty in the table
TRAIN_VALUES = ("loss", "ppl", "lr", "tokens_per_s")
VALID_VALUES = ("valid_loss", "valid_nll", "valid_ppl", "valid_bleu", "valid_chrf")


@dataclass(frozen=True)
class Row:
    """One record of one run's log. `run` labels the run (its directory's name, made unique)."""

    run: str
    run_dir: str
    kind: Kind
    step: int
    epoch: int | None = None
    train_minutes: float | None = None
    loss: float | None = None
    ppl: float | None = None
    lr: float | None = None
    tokens_per_s: float | None = None
    valid_loss: float | None = None
    valid_nll: float | None = None
    valid_ppl: float | None = None
    valid_bleu: float | None = None
    valid_chrf: float | None = None


COLUMNS = tuple(f.name for f in fields(Row))


# ---------------------------------------------------------------------------------------------
# Reading the logs


def log_path(run_dir: Path) -> Path:
    """The log of a run directory (or the log file itself, if given)."""
    run_dir = Path(run_dir)
    if run_dir.is_file() and run_dir.suffix == ".jsonl":
        return run_dir
    log = run_dir / LOG_FILE
    if not run_dir.exists():
        raise DataError(f"{run_dir}: no such directory; give a run directory (nmt train --out RUN)")
    if not log.is_file():
        raise DataError(f"{run_dir}: no {LOG_FILE}; is this a run directory (nmt train --out RUN)?")
    return log


def labels(run_dirs: Sequence[Path]) -> list[str]:
    """A short, distinct label per run: its directory's name, with as many parent directories as it
    takes to tell equal names apart (`en_fr/run`, `en_de/run`); the same directory twice gets `#2`."""
    paths = [Path(os.path.abspath(Path(d).parent if Path(d).is_file() else d)) for d in run_dirs]
    parts = [p.parts[1:] or (str(p),) for p in paths]  # without the root
    depth = [1] * len(paths)
    while True:
        names = ["/".join(ps[-n:]) for ps, n in zip(parts, depth, strict=True)]
        clashing = {
            i
            for i, name in enumerate(names)
            if depth[i] < len(parts[i]) and any(n == name and paths[j] != paths[i] for j, n in enumerate(names))
        }
        if not clashing:
            break
        for i in clashing:
            depth[i] += 1
    seen: dict[str, int] = {}
    result = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        result.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return result


def _number(record: dict[str, Any], key: str, where: str, required: bool = False) -> float | None:
    value = record.get(key)
    if value is None:
        if required:
            raise DataError(
                f"{where}: a {record.get('kind')} record without {key!r}; the log is damaged: remove the line"
            )
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{where}: {key} is {value!r}, not a number; the log is damaged: remove the line")
    return float(value)


def _row(record: dict[str, Any], run: str, run_dir: Path, where: str) -> Row | None:
    kind = record.get("kind")
    if kind not in ("train", "valid"):
        return None  # skip, and whatever later versions add
    step = record.get("step")
    if isinstance(step, bool) or not isinstance(step, int):
        raise DataError(f"{where}: a {kind} record with step {step!r}; the log is damaged: remove the line")
    epoch = record.get("epoch")
    names = TRAIN_VALUES if kind == "train" else VALID_VALUES
    required = "loss" if kind == "train" else "valid_loss"
    values = {name: _number(record, name, where, required=name == required) for name in names}
    return Row(
        run=run,
        run_dir=str(run_dir),
        kind=kind,
        step=step,
        epoch=epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None,
        train_minutes=_number(record, "train_minutes", where),
        **values,
    )


def read_log(log: Path, run: str, run_dir: Path | None = None) -> list[Row]:
    """The train and valid records of one log, in the order written. The last line may be torn (the
    run is still training): without its newline it is left out unless it is already complete JSON."""
    try:
        data = log.read_bytes()
    except OSError as e:
        raise DataError(f"{log}: cannot read ({e.strerror})") from e
    lines = data.split(b"\n")
    rows: list[Row] = []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        torn = number == len(lines)  # no newline after it: being written right now
        where = f"{log} line {number}"
        try:
            record = json.loads(raw.decode("utf-8"))
        except ValueError as e:  # UnicodeDecodeError too
            if torn:
                continue
            raise DataError(f"{where}: not a JSON record; the log is damaged: remove the line") from e
        if not isinstance(record, dict):
            if torn:
                continue
            raise DataError(f"{where}: not a JSON object; the log is damaged: remove the line")
        row = _row(record, run, run_dir if run_dir is not None else log.parent, where)
        if row is not None:
            rows.append(row)
    return rows


def read_curves(run_dirs: Sequence[Path]) -> list[Row]:
    """The rows of all runs, run by run, each labelled by `labels`. Every run directory is checked
    before any log is read."""
    if not run_dirs:
        raise ConfigError("no run directory given; give one or more (nmt train --out RUN)")
    logs = [log_path(Path(d)) for d in run_dirs]
    rows: list[Row] = []
    for log, run, run_dir in zip(logs, labels(run_dirs), run_dirs, strict=True):
        rows += read_log(log, run, Path(run_dir))
    return rows


def runs(rows: Iterable[Row]) -> list[str]:
    """The run labels in their first order."""
    return list(dict.fromkeys(row.run for row in rows))


# ---------------------------------------------------------------------------------------------
# The table


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)  # nan, inf as Python writes them
    return str(value)


def csv_text(rows: Iterable[Row]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_cell(getattr(row, name)) for name in COLUMNS])
    return buffer.getvalue()


def write_csv(rows: Iterable[Row], path: Path | str) -> None:
    """The table as CSV: a header (COLUMNS), one line per record; empty cells where a record has no
    such value. `-` is stdout."""
    text = csv_text(rows)
    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(path)
    try:
        write_text(path, text)
    except OSError as e:
        raise DataError(f"{path}: cannot write ({e.strerror}); choose another --csv") from e


# ---------------------------------------------------------------------------------------------
# The picture


def check_matplotlib() -> None:
    """Raise the one-line install hint if matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise ConfigError(
            f"the picture needs matplotlib, which is not installed; install it with: {INSTALL_HINT} "
            "(--csv FILE works without it)"
        ) from e


def check_picture(path: Path, width: int, height: int, dpi: int) -> None:
    """The picture's options, checked before any work."""
    if Path(path).suffix.lower() not in FORMATS:
        raise ConfigError(f"-o {path}: choose a file name ending in {', '.join(FORMATS)}")
    for flag, pixels in (("--width", width), ("--height", height)):
        if not 16 <= pixels <= MAX_PIXELS:
            raise ConfigError(f"{flag} {pixels}: give a size in pixels between 16 and {MAX_PIXELS}")
    if not 10 <= dpi <= 1200:
        raise ConfigError(f"--dpi {dpi}: give a resolution between 10 and 1200 dots per inch")
    check_matplotlib()


# (panel title, [(column, line style)], logarithmic y)
PANELS: tuple[tuple[str, tuple[tuple[str, str], ...], bool], ...] = (
    ("train loss", (("loss", "-"),), False),
    ("valid loss", (("valid_loss", "-"),), False),
    ("valid perplexity", (("valid_ppl", "-"),), True),
    ("valid BLEU (solid) / chrF (dashed)", (("valid_bleu", "-"), ("valid_chrf", "--")), False),
)
X_LABELS = {"step": "step", "minutes": "training minutes"}


def _series(rows: Sequence[Row], column: str, x: XAxis) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in rows:
        value = getattr(row, column)
        where = row.step if x == "step" else row.train_minutes
        if value is not None and where is not None:
            xs.append(float(where))
            ys.append(float(value))
    return xs, ys


def draw(
    rows: Sequence[Row], path: Path | str, width: int = 1200, height: int = 800, dpi: int = 100, x: XAxis = "step"
) -> None:
    """A 2x2 picture — train loss, valid loss, valid perplexity, valid BLEU and chrF — against `x`
    (steps or training minutes), one colour per run. `width` and `height` are the picture's size in
    pixels; the format follows the file name (.png, .svg, .pdf). matplotlib's Agg canvas draws it,
    without pyplot: no display is needed and the process's matplotlib backend is left alone."""
    path = Path(path)
    check_picture(path, width, height, dpi)
    if x not in X_LABELS:
        raise ConfigError(f"--x {x!r}: choose one of {', '.join(X_LABELS)}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    # Agg truncates the size in pixels: a hair more than width/dpi inches gives exactly `width` pixels
    fig = Figure(figsize=((width + 0.01) / dpi, (height + 0.01) / dpi), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2, squeeze=False).ravel()
    names = runs(rows)
    colours = [f"C{i % 10}" for i in range(len(names))]
    by_run = {name: [row for row in rows if row.run == name] for name in names}
    for ax, (title, columns, log_y) in zip(axes, PANELS, strict=True):
        values: list[float] = []
        for name, colour in zip(names, colours, strict=True):
            for column, style in columns:
                xs, ys = _series(by_run[name], column, x)
                if xs:
                    marker = "o" if column.startswith("valid") and len(xs) <= 60 else None
                    ax.plot(xs, ys, style, color=colour, marker=marker, markersize=3, linewidth=1.2)
                    values += [y for y in ys if math.isfinite(y)]
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel(X_LABELS[x], fontsize="small")
        ax.tick_params(labelsize="small")
        ax.grid(True, alpha=0.3)
        # early perplexities are a hundred times the last ones: a logarithmic scale shows both
        if log_y and values and min(values) > 0 and max(values) / min(values) > 10:
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
        if not values:
            ax.text(0.5, 0.5, "no values in the log yet", ha="center", va="center", transform=ax.transAxes)
    if names:
        handles = [Line2D([], [], color=colour, linewidth=2) for colour in colours]
        fig.legend(handles, names, loc="outside upper center", ncol=min(len(names), 4), fontsize="small", frameon=False)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lower()[1:])
        os.replace(tmp, path)
    except OSError as e:
        raise DataError(f"{path}: cannot write ({e.strerror}); choose another -o") from e
    finally:
        tmp.unlink(missing_ok=True)
