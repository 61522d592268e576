"""`nmt plot`: training curves of one or more runs (train loss, valid loss, perplexity, BLEU and chrF
against steps or training minutes) from their train_log.jsonl, as a picture and/or a CSV table."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from nmt_cli.common import err, handle_errors, writable


class XAxis(StrEnum):
    step = "step"
    minutes = "minutes"


@handle_errors
def plot(
    run_dirs: Annotated[
        list[Path],
        typer.Argument(
            metavar="RUN_DIR",
            show_default=False,
            help="Run directories (nmt train --out RUN), one line per run; a run still training is read as far "
            "as it is written.",
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            show_default=False,
            help="Picture to write: .png, .svg or .pdf (needs matplotlib: pip install 'nmt[plot]').",
        ),
    ] = None,
    csv: Annotated[
        Path | None,
        typer.Option(
            "--csv",
            show_default=False,
            help="Write the table behind the picture: one line per train or valid record of each run; '-' is "
            "stdout. Works without matplotlib.",
        ),
    ] = None,
    x: Annotated[
        XAxis, typer.Option("--x", help="Horizontal axis: training steps, or training minutes (time spent training).")
    ] = XAxis.step,
    width: Annotated[int, typer.Option("--width", help="Picture width in pixels.")] = 1200,
    height: Annotated[int, typer.Option("--height", help="Picture height in pixels.")] = 800,
    dpi: Annotated[
        int, typer.Option("--dpi", help="Dots per inch: the size of text and lines for the same pixels.")
    ] = 100,
) -> None:
    """Plot the training curves of one or more runs, to compare them: train loss, valid loss, valid
    perplexity and valid BLEU/chrF against steps (or --x minutes), one colour per run.

    nmt plot runs/a runs/b -o curves.png --csv curves.csv
    """
    from nmt.errors import ConfigError
    from nmt.plot import check_picture, draw, labels, read_curves, runs, write_csv

    if output is None and csv is None:
        raise ConfigError("nothing to write; give -o curves.png and/or --csv curves.csv")
    if output is not None:
        check_picture(output, width, height, dpi)  # matplotlib installed, sizes sensible: before any work
        writable(output, "-o")
    if csv is not None and str(csv) != "-":
        writable(csv, "--csv")

    rows = read_curves(run_dirs)
    for name in runs(rows):
        mine = [row for row in rows if row.run == name]
        minutes = max((row.train_minutes for row in mine if row.train_minutes is not None), default=None)
        bleu = [row for row in mine if row.valid_bleu is not None]
        best = max(bleu, key=lambda row: row.valid_bleu or 0.0) if bleu else None
        err.print(
            f"{name}: step {max(row.step for row in mine):,}"
            + (f", {minutes:.1f} training minutes" if minutes is not None else "")
            + (f", best valid BLEU {best.valid_bleu:.1f} at step {best.step:,}" if best is not None else ""),
            markup=False,
        )
    empty = [str(d) for d, name in zip(run_dirs, labels(run_dirs), strict=True) if name not in runs(rows)]
    if empty:
        err.print(f"no train or valid records yet in: {', '.join(empty)}", markup=False)

    if csv is not None:
        write_csv(rows, csv)
        if str(csv) != "-":
            err.print(f"wrote {csv} ({len(rows):,} records)", markup=False)
    if output is not None:
        with err.status(f"drawing {output}…"):
            draw(rows, output, width=width, height=height, dpi=dpi, x="minutes" if x is XAxis.minutes else "step")
        err.print(f"wrote {output} ({width}×{height} px, against {x.value})", markup=False)
