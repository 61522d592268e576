"""`nmt score`: sacreBLEU's BLEU, chrF and TER of hypothesis files against references, as a table with
the signatures, or as JSON. The numbers come from nmt.metrics, imported inside the command so that
`nmt --help` does not load sacreBLEU and numpy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from nmt_cli.common import handle_errors, out, writable

if TYPE_CHECKING:
    from nmt.metrics import ScoreReport

LABELS = {"bleu": "BLEU", "chrf": "chrF2", "ter": "TER"}  # sacreBLEU's names for its default metrics
WIDTH = 1  # decimals shown, as the sacrebleu tool shows them; --json gives full precision
SIGNIFICANT = 0.05  # p-values below it get a '*', as in sacreBLEU's tables

HypothesesArg = Annotated[
    Optional[list[Path]],
    typer.Argument(
        metavar="HYP",
        show_default=False,
        help="Hypothesis files, one translation per line, aligned with the references. "
        "With --paired-bs the first one is the baseline.",
    ),
]
ReferenceOpt = Annotated[
    list[Path],
    typer.Option(
        "--reference",
        "-r",
        metavar="REF",
        show_default=False,
        help="Reference file, one translation per line; repeat -r for more references of the same segments.",
    ),
]
LowercaseOpt = Annotated[
    bool,
    typer.Option(
        "--lowercase",
        "-lc",
        help="Lowercase BLEU and chrF (sacreBLEU's TER is case-insensitive already). [default: off, case-sensitive]",
    ),
]
TokenizeOpt = Annotated[
    str,
    typer.Option("--tokenize", "-tok", help="Tokenizer for BLEU, any sacreBLEU name: 13a, intl, zh, char, none, ..."),
]
JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json", help="Print machine-readable JSON only, with full-precision scores. [default: off, a table]"
    ),
]
PairedOpt = Annotated[
    bool,
    typer.Option(
        "--paired-bs",
        help="Paired bootstrap resampling of every hypothesis against the first; adds p-values. [default: off]",
    ),
]
PairedNOpt = Annotated[
    int,
    typer.Option("--paired-bs-n", min=1, help="Number of bootstrap resamples for --paired-bs."),
]


@handle_errors
def score(
    references: ReferenceOpt,
    hypotheses: HypothesesArg = None,
    lowercase: LowercaseOpt = False,
    tokenize: TokenizeOpt = "13a",
    as_json: JsonOpt = False,
    paired_bs: PairedOpt = False,
    paired_bs_n: PairedNOpt = 1000,
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="Translate --src with this model and score that too (after any HYP files).")] = None,
    src: Annotated[Optional[Path], typer.Option("--src", help="Source file to translate with --model.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Keep the --model translation in this file.")] = None,
    beam: Annotated[int, typer.Option(help="Beam size for --model.")] = 5,
    lenpen: Annotated[float, typer.Option(help="GNMT length penalty alpha for --model.")] = 1.0,
    batch_tokens: Annotated[int, typer.Option(help="Source tokens per batch for --model.")] = 4096,
) -> None:
    """Score translations with sacreBLEU: BLEU, chrF and TER, one row per hypothesis file.

    With -m MODEL --src SRC, translate SRC first and score that translation in the same batch.
    """
    from nmt.errors import ConfigError
    from nmt.metrics import read_segments, score_lines

    hypotheses = list(hypotheses or [])
    if (model is None) != (src is None):
        raise ConfigError("--model and --src go together: -m MODEL --src SRC -r REF")
    if not hypotheses and model is None:
        raise ConfigError("nothing to score: give HYP files and/or -m MODEL --src SRC")
    if output is not None:
        writable(output, "--output")
    systems = [read_segments(h) for h in hypotheses]
    names = [str(h) for h in hypotheses]
    if model is not None:
        from nmt_cli.translate import decode_options, translate_file

        config = decode_options(beam, lenpen, "gnmt", 1.2, 10, batch_tokens, 1, 0, 0.0)
        systems.append(translate_file(model, src, config, output))
        names.append(str(output) if output else f"{model} (beam {beam})")
    report = score_lines(
        systems,
        [read_segments(r) for r in references],
        names=names,
        reference_names=[str(r) for r in references],
        lowercase=lowercase,
        tokenize=tokenize,
        paired_bs_n=paired_bs_n if paired_bs else None,
    )
    if as_json:
        out.out(json.dumps(report.to_dict(), indent=2, ensure_ascii=False), highlight=False)
        return
    out.print(_table(report))
    for key, signature in report.signatures.items():
        out.print(f"{LABELS[key]}|{escape(signature)}")


def _table(report: ScoreReport) -> Table:
    """One row per system; with a paired test, the p-values against the first row too."""
    paired = report.paired_bs_n is not None
    caption = f"against {', '.join(report.references)}"
    if paired:
        caption += f"; p: paired bootstrap ({report.paired_bs_n} resamples) against the first row, * p < {SIGNIFICANT}"
    table = Table(caption=escape(caption), caption_justify="left")
    table.add_column("hypothesis")
    for key in LABELS:
        table.add_column(LABELS[key], justify="right")
    if paired:
        for key in LABELS:
            table.add_column(f"p {LABELS[key]}", justify="right")
    for i, system in enumerate(report.systems):
        cells = [escape(system.name), *(f"{getattr(system, key):.{WIDTH}f}" for key in LABELS)]
        if paired:
            cells += [_p_value(system.paired[key].p_value) if i else "baseline" for key in LABELS]
        table.add_row(*cells)
    return table


def _p_value(p: float | None) -> str:
    return "" if p is None else f"{p:.4f}" + ("*" if p < SIGNIFICANT else "")
