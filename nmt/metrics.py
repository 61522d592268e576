"""Corpus scores of translations with sacreBLEU: BLEU, chrF and TER of one or more systems against one or
more reference streams, the signatures that make them reproducible, and paired bootstrap significance.
Text in, numbers out: knows nothing about models or torch, and never prints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.metrics.base import Metric
from sacrebleu.significance import PairedTest, Result

from nmt.errors import ConfigError, DataError
from nmt.textio import check_text

METRICS = ("bleu", "chrf", "ter")


@dataclass(frozen=True)
class Paired:
    """One system's paired bootstrap result for one metric, against the baseline (the first system)."""

    p_value: float | None  # None for the baseline itself
    mean: float  # mean score over the bootstrap resamples
    ci: float  # half-width of the 95% confidence interval around `mean`


@dataclass(frozen=True)
class SystemScore:
    """Corpus scores of one system; `paired` maps a metric to its Paired result, empty without the test."""

    name: str  # the hypothesis file, or the name the caller gave
    bleu: float | None  # None: not asked for
    chrf: float | None
    ter: float | None
    paired: dict[str, Paired] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoreReport:
    """Everything `score_lines` computed, in plain values; `to_dict` is JSON-ready."""

    references: list[str]
    systems: list[SystemScore]
    signatures: dict[str, str]  # metric → e.g. "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
    paired_bs_n: int | None = None  # bootstrap resamples, None when no paired test ran

    def to_dict(self, decimals: int | None = None) -> dict[str, Any]:
        """JSON-ready; metrics not computed are left out; `decimals` rounds the scores (p-values get 2 more)."""

        def tidy(value: Any, key: str = "") -> Any:
            if isinstance(value, dict):
                return {k: tidy(v, k) for k, v in value.items() if v is not None or k not in METRICS}
            if isinstance(value, list):
                return [tidy(v) for v in value]
            if isinstance(value, float) and decimals is not None:
                return round(value, decimals + 2 if key == "p_value" else decimals)
            return value

        return cast(dict[str, Any], tidy(asdict(self)))  # tidy keeps a dict a dict


def read_segments(path: str | Path) -> list[str]:
    """Lines of a UTF-8 file, read the way the `sacrebleu` tool reads them: split on '\\n' only, and
    trailing whitespace (a '\\r' included) dropped. Blank lines are kept: they are empty translations."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as e:
        raise DataError(f"{path}: no such file; give a text file with one sentence per line") from e
    except IsADirectoryError as e:
        raise DataError(f"{path}: is a directory; give a text file with one sentence per line") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror}); check the path and its permissions") from e
    return segments(raw, str(path))


def segments(raw: bytes, name: str) -> list[str]:
    """`read_segments` of bytes read elsewhere (stdin); `name` goes in the error messages. What is not text
    at all (a gzip, an executable) is refused as `nmt translate` refuses it; a stray bad byte is named."""
    check_text(raw, name)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"{name}:{line}: invalid UTF-8 (byte 0x{raw[e.start]:02x}); "
            "re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
        ) from e
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line does not start another one
    return [line.rstrip() for line in lines]


def score_lines(
    hypotheses: Sequence[Sequence[str]],
    references: Sequence[Sequence[str]],
    *,
    names: Sequence[str] | None = None,
    reference_names: Sequence[str] | None = None,
    lowercase: bool = False,
    tokenize: str = "13a",
    paired_bs_n: int | None = None,
    metrics: Sequence[str] = METRICS,
) -> ScoreReport:
    """BLEU, chrF and TER (or the `metrics` named) of every system (a list of lines) against the reference
    streams (each a list of lines, aligned with the systems), with sacreBLEU's defaults apart from
    `lowercase` and `tokenize`.

    `lowercase` applies to BLEU and chrF; TER is case-insensitive in sacreBLEU anyway (as in TERCOM).
    `paired_bs_n` runs sacreBLEU's paired bootstrap test with that many resamples, every system against
    the first one; its seed comes from SACREBLEU_SEED (default 12345) and shows in the signatures.
    """
    names = list(names) if names is not None else [f"system {i + 1}" for i in range(len(hypotheses))]
    reference_names = (
        list(reference_names) if reference_names is not None else [f"reference {i + 1}" for i in range(len(references))]
    )
    _check_options(len(hypotheses), len(references), tokenize, paired_bs_n, metrics)
    _check_aligned(hypotheses, references, names, reference_names)

    # One metric object per kind, built once: sacreBLEU caches the reference statistics for all systems.
    scorers = _metrics(references, lowercase, tokenize, metrics)
    systems = [list(lines) for lines in hypotheses]
    scores = {key: [metric.corpus_score(lines, None) for lines in systems] for key, metric in scorers.items()}
    signatures = {key: metric.get_signature().format() for key, metric in scorers.items()}

    paired: list[dict[str, Paired]] = [{} for _ in systems]
    if paired_bs_n is not None:
        test = PairedTest(list(zip(names, systems)), scorers, None, test_type="bs", n_samples=paired_bs_n)
        test_signatures, results = test()
        for key in scorers:
            label = scores[key][0].name  # PairedTest keys its results by sacreBLEU's label: BLEU, chrF2, TER
            signatures[key] = test_signatures[label].format()  # now with the seed and number of resamples
            for by_metric, result in zip(paired, results[label]):
                # a metric's column holds Results (only the "System" column holds names), and the bootstrap
                # test sets every system's mean and ci (the baseline's too, since paired_bs_n >= 1)
                assert isinstance(result, Result) and result.mean is not None and result.ci is not None
                p_value = None if result.p_value is None else float(result.p_value)
                by_metric[key] = Paired(p_value, float(result.mean), float(result.ci))

    def score(key: str, i: int) -> float | None:
        return float(scores[key][i].score) if key in scores else None

    rows = [
        SystemScore(name, bleu=score("bleu", i), chrf=score("chrf", i), ter=score("ter", i), paired=paired[i])
        for i, name in enumerate(names)
    ]
    return ScoreReport(reference_names, rows, signatures, paired_bs_n)


def sentence_scores(
    hypotheses: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    name: str = "system 1",
    reference_names: Sequence[str] | None = None,
    lowercase: bool = False,
    tokenize: str = "13a",
    metrics: Sequence[str] = METRICS,
) -> tuple[list[dict[str, float]], dict[str, str]]:
    """Every line's own score in each of `metrics` (what `sacrebleu --sentence-level` prints), and the
    signatures. Sentence BLEU uses effective order, as sacreBLEU's sentence level does, so that a short
    line without a matching 4-gram does not score 0."""
    reference_names = (
        list(reference_names) if reference_names is not None else [f"reference {i + 1}" for i in range(len(references))]
    )
    _check_options(1, len(references), tokenize, None, metrics)
    _check_aligned([hypotheses], references, [name], reference_names)
    scorers = _metrics(references, lowercase, tokenize, metrics, effective_order=True, cache=False)
    rows = [
        {key: float(metric.sentence_score(line, [r[i] for r in references]).score) for key, metric in scorers.items()}
        for i, line in enumerate(hypotheses)
    ]
    return rows, {key: metric.get_signature().format() for key, metric in scorers.items()}


def _check_options(
    n_systems: int, n_references: int, tokenize: str, paired_bs_n: int | None, metrics: Sequence[str] = METRICS
) -> None:
    """Fail on wrong options before any file is read."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ConfigError(
            f"unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}"
            if unknown
            else f"no metric asked for; choose from {', '.join(METRICS)}"
        )
    if n_systems == 0:
        raise ConfigError("no hypothesis given; give at least one file of translations to score")
    if n_references == 0:
        raise ConfigError("no reference given; give at least one reference file")
    if tokenize not in BLEU.TOKENIZERS:
        raise ConfigError(f"unknown BLEU tokenizer {tokenize!r}; choose one of {', '.join(BLEU.TOKENIZERS)}")
    if paired_bs_n is not None:
        if paired_bs_n < 1:
            raise ConfigError(f"paired bootstrap needs at least 1 resample, got {paired_bs_n}; 1000 is usual")
        if n_systems < 2:
            raise ConfigError(
                "paired bootstrap compares systems: give at least two hypothesis files, the baseline first"
            )


def _check_aligned(
    hypotheses: Sequence[Sequence[str]],
    references: Sequence[Sequence[str]],
    names: Sequence[str],
    reference_names: Sequence[str],
) -> None:
    """Every stream must hold one line per segment of the first reference."""
    n = len(references[0])
    if n == 0:
        raise DataError(f"{reference_names[0]}: no lines; a reference file holds one sentence per line")
    for lines, name in zip(references[1:], reference_names[1:]):
        if len(lines) != n:
            raise DataError(
                f"{name}: {len(lines)} lines but reference {reference_names[0]} has {n}; every reference file "
                "must hold one translation per line of the same segments, in the same order"
            )
    for lines, name in zip(hypotheses, names):
        if len(lines) != n:
            raise DataError(
                f"{name}: {len(lines)} lines but reference {reference_names[0]} has {n}; a hypothesis file must hold "
                "exactly one translation per reference line (look for a missing, extra or split line)"
            )


def _metrics(
    references: Sequence[Sequence[str]],
    lowercase: bool,
    tokenize: str,
    metrics: Sequence[str] = METRICS,
    effective_order: bool = False,
    cache: bool = True,
) -> dict[str, Metric]:
    """sacreBLEU's metric objects for `metrics`, keyed like SystemScore's fields, in the order asked.
    With `cache` they hold the references' statistics (for corpus scores of several systems)."""
    streams = [list(lines) for lines in references] if cache else None
    built: dict[str, Metric] = {}
    for key in metrics:
        if key == "bleu":
            try:
                built[key] = BLEU(
                    lowercase=lowercase, tokenize=tokenize, effective_order=effective_order, references=streams
                )
            except (ImportError, RuntimeError, OSError) as e:  # ja-mecab, ko-mecab and spm need extras
                reason = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
                raise ConfigError(
                    f"BLEU tokenizer {tokenize!r} is unavailable ({reason}); install it or use 13a"
                ) from e
        elif key == "chrf":
            built[key] = CHRF(lowercase=lowercase, references=streams)
        else:
            built[key] = TER(references=streams)
    return built


def bleu_chrf(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[float, float]:
    """Detokenized, cased sacreBLEU (13a) and chrF2 of one system: what validation tracks during training."""
    refs = [list(r) for r in references]
    return (
        float(BLEU().corpus_score(list(hypotheses), refs).score),
        float(CHRF().corpus_score(list(hypotheses), refs).score),
    )
