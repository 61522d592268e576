"""`nmt score`: sacreBLEU's BLEU, chrF and TER of hypothesis files (or stdin) against references, as a
table with the signatures, as bare numbers (-b), per sentence, or as JSON. The numbers come from
nmt.metrics, imported inside the command so that `nmt --help` does not load sacreBLEU and numpy."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from nmt_cli.common import handle_errors, out, writable
from nmt_cli.settings import FROM_FLAGS, Settings, settings
from rich.markup import escape
from rich.table import Table

from nmt.config import DecodeConfig

if TYPE_CHECKING:
    from nmt.metrics import ScoreReport

LABELS = {"bleu": "BLEU", "chrf": "chrF2", "ter": "TER"}  # sacreBLEU's names for its default metrics
WIDTH = 1  # decimals shown, as the sacrebleu tool shows them
JSON_WIDTH = 2  # decimals in --json: a hundredth of a point, p-values 2 more
SIGNIFICANT = 0.05  # p-values below it get a '*', as in sacreBLEU's tables
STDIN = "-"


class Metric(StrEnum):
    bleu = "bleu"
    chrf = "chrf"
    ter = "ter"


HypothesesArg = Annotated[
    list[Path] | None,
    typer.Argument(
        metavar="HYP",
        show_default=False,
        help="Hypothesis files, one translation per line, aligned with the references; '-' or none "
        "reads stdin. With --paired-bs the first one is the baseline.",
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
        "--json",
        help=f"Print machine-readable JSON only, scores to {JSON_WIDTH} decimals unless -w. [default: off, a table]",
    ),
]
MetricsOpt = Annotated[
    list[Metric] | None,
    typer.Option(
        "--metrics",
        show_default=False,
        help="Metrics to compute, in this order: --metrics bleu chrf ter (or repeat the flag). [default: all three]",
    ),
]
ScoreOnlyOpt = Annotated[
    bool,
    typer.Option(
        "--score-only",
        "-b",
        help="Print the numbers only: one line per hypothesis (per sentence with --sentence-level), "
        "the metrics separated by tabs. [default: off]",
    ),
]
SentenceOpt = Annotated[
    bool,
    typer.Option(
        "--sentence-level",
        help="Score every line on its own (sentence BLEU with effective order, as sacreBLEU's); "
        "one hypothesis only. [default: off]",
    ),
]
WidthOpt = Annotated[
    int | None,
    typer.Option(
        "--width",
        "-w",
        min=0,
        max=16,
        show_default=False,
        help=f"Decimals shown. [default: {WIDTH}; {JSON_WIDTH} in --json]",
    ),
]
PairedOpt = Annotated[
    bool,
    typer.Option(
        "--paired-bs",
        help="Paired bootstrap resampling of every hypothesis against the first; adds the bootstrap mean ± 95% "
        "CI and p-values. [default: off]",
    ),
]
PairedNOpt = Annotated[
    int,
    typer.Option("--paired-bs-n", min=1, help="Number of bootstrap resamples for --paired-bs."),
]


@handle_errors
@settings((DecodeConfig, ("beam_size", "length_penalty", "batch_tokens")))
def score(
    references: ReferenceOpt,
    hypotheses: HypothesesArg = None,
    lowercase: LowercaseOpt = False,
    tokenize: TokenizeOpt = "13a",
    metrics: MetricsOpt = None,
    score_only: ScoreOnlyOpt = False,
    sentence_level: SentenceOpt = False,
    as_json: JsonOpt = False,
    width: WidthOpt = None,
    paired_bs: PairedOpt = False,
    paired_bs_n: PairedNOpt = 1000,
    model: Annotated[
        Path | None,
        typer.Option("--model", "-m", help="Translate --src with this model and score that too (after any HYP files)."),
    ] = None,
    src: Annotated[Path | None, typer.Option("--src", help="Source file to translate with --model.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Keep the --model translation in this file.")
    ] = None,
    settings: Settings = FROM_FLAGS,  # --beam, --lenpen and --batch-tokens for --model (nmt_cli.settings)
) -> None:
    """Score translations with sacreBLEU: BLEU, chrF and TER, one row per hypothesis file.

    Translations can come on stdin: nmt translate -m MODEL < test.en | nmt score -r test.fr.
    With -m MODEL --src SRC, translate SRC first and score that translation in the same batch.
    """
    from nmt.errors import ConfigError
    from nmt.metrics import read_segments, score_lines, sentence_scores

    keys = list(dict.fromkeys(m.value for m in metrics)) if metrics else list(LABELS)
    hypotheses = [str(h) for h in hypotheses or []]
    _check_choices(hypotheses, model, src, score_only, as_json, sentence_level, paired_bs)
    if not hypotheses and model is None:
        if sys.stdin.isatty():
            raise ConfigError(
                "nothing to score: give HYP files, pipe translations in "
                "(nmt translate ... | nmt score -r REF), or -m MODEL --src SRC"
            )
        hypotheses = [STDIN]
    if output is not None:
        writable(output, "--output")
    ref_lines = [read_segments(r) for r in references]  # before any translating: a bad -r fails at once
    reference_names = [str(r) for r in references]
    systems = [_read(h) for h in hypotheses]
    names = ["stdin" if h == STDIN else h for h in hypotheses]
    if model is not None:
        from nmt_cli.translate import translate_file

        config = settings.make(DecodeConfig)
        systems.append(translate_file(model, src, config, output))
        names.append(str(output) if output else f"{model} (beam {config.beam_size})")
    options = dict(reference_names=reference_names, lowercase=lowercase, tokenize=tokenize, metrics=keys)
    if sentence_level:
        rows, signatures = sentence_scores(systems[0], ref_lines, name=names[0], **options)
        _print_sentences(rows, signatures, names[0], reference_names, keys, score_only, as_json, width)
        return
    report = score_lines(systems, ref_lines, names=names, paired_bs_n=paired_bs_n if paired_bs else None, **options)
    _print_report(report, keys, score_only, as_json, width)


def _check_choices(
    hypotheses: list[str],
    model: Path | None,
    src: Path | None,
    score_only: bool,
    as_json: bool,
    sentence_level: bool,
    paired_bs: bool,
) -> None:
    """Refuse options that do not go together, before anything is read."""
    from nmt.errors import ConfigError

    if model is not None and str(model).lower() in LABELS and not model.exists():  # sacreBLEU's -m bleu chrf
        metrics = [str(model), *(h for h in hypotheses if h.lower() in LABELS and not Path(h).exists())]
        raise ConfigError(f"-m is --model here; use --metrics {' '.join(metrics).lower()}")
    if (model is None) != (src is None):
        raise ConfigError("--model and --src go together: -m MODEL --src SRC -r REF")
    if hypotheses.count(STDIN) > 1:
        raise ConfigError("'-' (stdin) given twice; stdin can be read once")
    if score_only and as_json:
        raise ConfigError("--score-only and --json are two kinds of output; choose one")
    if sentence_level and (paired_bs or len(hypotheses) + (model is not None) > 1):
        raise ConfigError(
            "--sentence-level scores one hypothesis on its own"
            + ("; drop --paired-bs" if paired_bs else "; give one HYP file (or stdin, or -m)")
        )


def _print_report(report: ScoreReport, keys: list[str], score_only: bool, as_json: bool, width: int | None) -> None:
    """The corpus-level scores: JSON, bare numbers (--score-only) or a table with the signatures."""
    if as_json:
        out.out(
            json.dumps(report.to_dict(JSON_WIDTH if width is None else width), indent=2, ensure_ascii=False),
            highlight=False,
        )
    elif score_only:
        for system in report.systems:
            typer.echo("\t".join(f"{getattr(system, key):.{_width(width)}f}" for key in keys))  # tabs kept
    else:
        out.print(_table(report, keys, _width(width)))
        for key, signature in report.signatures.items():
            out.print(f"{LABELS[key]}|{escape(signature)}")


def _width(width: int | None) -> int:
    return WIDTH if width is None else width


def _read(name: str) -> list[str]:
    """A hypothesis file's lines; '-' is stdin."""
    from nmt.errors import ConfigError
    from nmt.metrics import read_segments, segments

    if name != STDIN:
        return read_segments(name)

    raw = sys.stdin.buffer.read()
    if not raw:
        raise ConfigError("nothing to score: stdin is empty; pipe translations in or give HYP files")
    return segments(raw, "stdin")


def _print_sentences(
    rows: list[dict[str, float]],
    signatures: dict[str, str],
    name: str,
    references: list[str],
    keys: list[str],
    score_only: bool,
    as_json: bool,
    width: int | None,
) -> None:
    """Per-sentence scores: a tab-separated table with a header and the signatures, bare numbers, or JSON."""
    if as_json:
        decimals = JSON_WIDTH if width is None else width
        sentences = [{"line": i, **{k: round(v, decimals) for k, v in row.items()}} for i, row in enumerate(rows, 1)]
        report = {"references": references, "system": name, "signatures": signatures, "sentences": sentences}
        out.out(json.dumps(report, indent=2, ensure_ascii=False), highlight=False)
        return
    decimals = _width(width)
    lines = [] if score_only else ["\t".join(["line", *(LABELS[k] for k in keys)])]
    for i, row in enumerate(rows, 1):
        numbers = [f"{row[k]:.{decimals}f}" for k in keys]
        lines.append("\t".join(numbers if score_only else [str(i), *numbers]))
    if not score_only:
        lines += [f"{LABELS[k]}|{signatures[k]}" for k in keys]
    typer.echo("\n".join(lines))  # rich would turn the tabs into spaces


def _table(report: ScoreReport, keys: list[str], width: int) -> Table:
    """One row per system. With a paired test each score cell reads as sacreBLEU's: the score, the bootstrap
    mean ± the 95% confidence interval, and below it the p-value against the first row."""
    paired = report.paired_bs_n is not None
    caption = f"against {', '.join(report.references)}"
    if paired:
        caption += (
            f"; score (bootstrap mean ± 95% CI); p: paired bootstrap ({report.paired_bs_n} resamples) "
            f"against the first row, * p < {SIGNIFICANT}"
        )
    table = Table(caption=escape(caption), caption_justify="left")
    table.add_column("hypothesis")
    for key in keys:
        table.add_column(LABELS[key], justify="right")
    for i, system in enumerate(report.systems):
        cells = [f"{getattr(system, key):.{width}f}" for key in keys]
        if paired:
            cells = [
                f"{cell} ({system.paired[key].mean:.{width}f} ± {system.paired[key].ci:.{width}f})\n"
                + (_p_value(system.paired[key].p_value) if i else "baseline")
                for cell, key in zip(cells, keys)
            ]
        table.add_row(escape(system.name), *cells)
    return table


def _p_value(p: float | None) -> str:
    return "" if p is None else f"p = {p:.4f}" + ("*" if p < SIGNIFICANT else "")
