"""`nmt translate`: a Unix filter. One output line per input line, in order, whatever the input."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from nmt_cli.common import count, err, handle_errors, writable
from nmt_cli.settings import FROM_FLAGS, Settings, choice, settings

from nmt.config import DecodeConfig, SamplingConfig
from nmt.documents import FORMATS as DOCUMENTS
from nmt.layout import ENGINES

ModelOpt = Annotated[
    Path, typer.Option("--model", "-m", help="Model directory, or a run directory (meaning its best checkpoint).")
]
FORMATS = ("text", "jsonl")
CHUNK = 512  # lines translated (and written, and counted) at a time from a file or a pipe
REPORT_EVERY = 5.0  # seconds between progress lines when stderr is not a terminal


def warn(message: str) -> None:
    err.print(f"warning: {message}", markup=False)


class Progress:
    """Lines done, on stderr: a bar on a terminal, else a line every few seconds; the total at the end."""

    def __init__(self, total: int | None, enabled: bool, summary: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        self.total, self.done, self.summary = total, 0, summary
        self.started = self.reported = time.monotonic()
        self.bar = None
        if enabled and err.is_terminal:
            self.bar = Bar(
                TextColumn("translating"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err,
                transient=True,
            )
            self.task = self.bar.add_task("translate", total=total)
        self.lines = enabled and not err.is_terminal

    def __enter__(self) -> Progress:
        if self.bar:
            self.bar.__enter__()
        return self

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.bar:
            self.bar.update(self.task, completed=self.done, total=self.total)
        elif self.lines and now - self.reported >= REPORT_EVERY:
            self.reported = now
            of = f"/{self.total:,}" if self.total is not None else ""
            err.print(
                f"translated {self.done:,}{of} lines ({self.done / (now - self.started):,.1f} sent/s)", markup=False
            )

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.bar:
            self.bar.__exit__(exc_type, exc, tb)
        if exc_type is None and self.summary:
            seconds = time.monotonic() - self.started
            err.print(
                f"{count(self.done, 'line')} in {seconds:.1f} s ({self.done / max(seconds, 1e-9):,.1f} sent/s)",
                markup=False,
            )


def translated(
    translator, source: Iterable[str], size: int, warn: Callable[[str], None], where: str, progress: Progress
) -> Iterator[tuple[int, list, float]]:
    """(index of its first line, results, seconds per line) for each chunk of `size` lines, in order."""
    from nmt.textio import chunks

    index = 0
    for chunk in chunks(source, size):
        started = time.perf_counter()
        results = translator.translate_batch(chunk, warn, index + 1, where)
        yield index, results, (time.perf_counter() - started) / len(chunk)
        index += len(chunk)
        progress.advance(len(chunk))


def formatter(fmt: str, nbest: int, scores: bool) -> Callable[..., str]:
    """How one result is written: a line of text, Moses n-best lines, or one JSON object."""

    def text(index: int, result, seconds: float) -> str:
        if nbest > 1:  # Moses: i ||| text ||| features ||| total (F0: the model's log-probability)
            return "".join(f"{index} ||| {t} ||| F0= {lp:.4f} ||| {s:.4f}\n" for t, s, lp in result.nbest)
        line = f"{result.text} ||| {result.alignment}" if result.alignment else result.text  # Marian's --alignment
        return f"{result.score:.4f}\t{line}\n" if scores else f"{line}\n"

    def jsonl(index: int, result, seconds: float) -> str:
        record = {
            "line": index,
            "text": result.text,
            "score": round(result.score, 4),
            "log_prob": round(result.nbest[0][2], 4),
            "tokens": list(result.tokens),
            "time": round(seconds, 4),
        }
        if result.alignment is not None:
            record["alignment"] = result.alignment
        # what was translated piece by piece: each sentence (or part of one too long for the model)
        record["sentences"] = [
            {"source": s.source, "text": s.text, "score": round(s.score, 4), "log_prob": round(s.log_prob, 4)}
            for s in result.sentences
        ]
        if nbest > 1:
            record["nbest"] = [{"text": t, "score": round(s, 4), "log_prob": round(lp, 4)} for t, s, lp in result.nbest]
        return json.dumps(record, ensure_ascii=False) + "\n"

    return jsonl if fmt == "jsonl" else text


@handle_errors
@settings(DecodeConfig, SamplingConfig)
def translate(
    ctx: typer.Context,
    model: ModelOpt,
    input_file: Annotated[Path | None, typer.Option("--input", "-i", help="Read this file instead of stdin.")] = None,
    file: Annotated[
        Path | None,
        typer.Argument(show_default=False, help="Read this file instead of stdin (the same as -i FILE; '-': stdin)."),
    ] = None,
    output_file: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write here instead of stdout (batch by batch; the file appears whole at the end)."
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config", help="Read the [decode] table of this TOML file (a recipe's config.toml); flags given here win."
        ),
    ] = None,
    settings: Settings = FROM_FLAGS,  # the [decode] and sampling options (nmt_cli.settings)
    scores: Annotated[
        bool,
        typer.Option(
            "--scores",
            help="Print 'score<TAB>translation' instead of the translation alone (jsonl and --nbest lists "
            "hold scores already).",
        ),
    ] = False,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            **choice(FORMATS),
            help="'text', or 'jsonl': one JSON object per line (text, score, log_prob, tokens, "
            "time: seconds of its batch per line, nbest, and sentences: the source, text, score and log_prob of "
            "each sentence translated) for programs.",
        ),
    ] = "text",
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No warnings and no progress on stderr (errors still).")
    ] = False,
    sampling: Annotated[
        bool, typer.Option("--sampling", help="Sample each output at random instead of searching (ignores --beam).")
    ] = False,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda or cuda:N (default: cuda when available, else cpu).")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: all cores).")] = None,
    engine: Annotated[
        str,
        typer.Option(
            **choice(ENGINES),
            help="'pytorch', 'ctranslate2' (a directory written by `nmt export`; pip install 'nmt[ct2]'), "
            "or 'auto': ctranslate2 for an export, else pytorch.",
        ),
    ] = "auto",
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="Compute with int8 weights: PyTorch dynamic quantisation of the Linear layers (CPU only), "
            "or CTranslate2's int8.",
        ),
    ] = False,
    bf16: Annotated[
        bool,
        typer.Option(
            "--bf16",
            help="Compute in bfloat16 (log-probs and scores stay float32); on an export, CTranslate2's bfloat16, "
            "where the device has it (recent NVIDIA GPUs).",
        ),
    ] = False,
    align: Annotated[
        bool,
        typer.Option(
            "--align",
            help="Add the source-target word alignment from cross-attention: 'translation ||| 0-0 1-2 ...' "
            "(Pharaoh, 0-based words; the penultimate decoder layer, heads averaged).",
        ),
    ] = False,
    input_format: Annotated[
        str | None,
        typer.Option(
            "--input-format",
            **choice(DOCUMENTS),
            help="'text': sentences, line by line; or a document, translated whole and written back in its own "
            "format: 'markdown', 'html', 'srt', 'vtt' (markup, code, cue numbers and timings kept). "
            "Default: from the file's extension (.md, .html, .srt, .vtt), text for stdin.",
        ),
    ] = None,
) -> None:
    """Translate lines from stdin (or FILE) to stdout (or --output): exactly one output line per input line.

    Each line's sentences are translated and joined back in the line's spacing (--split none: a line is one
    sentence). Interactive on a terminal (each line as soon as it is entered); batched by length for speed on pipes
    and files. Empty lines give empty lines; a sentence longer than the model takes is cut at punctuation or
    between words and translated in parts, with a warning, never truncated; invalid UTF-8 is replaced with a
    warning.
    With --engine ctranslate2 (found by itself for a directory written by `nmt export`) the search runs in CTranslate2.
    A Markdown, HTML or subtitle file (--input-format, or its extension) comes back whole, in the same format.
    """
    from nmt.config import check_table, load_toml
    from nmt.errors import ConfigError

    say = (lambda message: None) if quiet else warn
    if file is not None and input_file is not None:
        raise ConfigError(f"-i/--input given twice (-i {input_file} and FILE {file}); one input file")
    input_file = input_file if file is None else file
    input_file = None if str(input_file) == "-" else input_file  # '-' is stdin, as in nmt score
    table = load_toml(config_file).get("decode", {}) if config_file is not None else {}
    check_table(DecodeConfig, table, f"{config_file} [decode]")
    config = settings.make(DecodeConfig, table)
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose {' or '.join(FORMATS)}")
    if sampling and config.nbest > 1:
        raise ConfigError("--sampling draws one output per line; --nbest needs search")
    check_scores(scores, fmt, config.nbest)
    if output_file is not None:
        writable(output_file, "--output")
    if (document := document_format(input_format, input_file, fmt, config.nbest, scores, align)) != "text":
        sampler = settings.make(SamplingConfig) if sampling else None
        options = dict(engine=engine, precision=precision(int8, bf16), device=device, threads=threads, sampling=sampler)
        return translate_document(model, config, options, document, input_file, output_file, say)
    from nmt.textio import Output, read_lines, stream_lines

    lines = read_lines(input_file, say) if input_file is not None else None  # a bad file fails before the model loads
    interactive = lines is None and sys.stdin.isatty()
    # a piped stdin is checked before the model loads too (its first block); a terminal's only once the model is
    # there, since reading it waits for the user's first sentence
    piped = stream_lines(sys.stdin.buffer, "<stdin>", say) if lines is None and not interactive else None
    sampler = settings.make(SamplingConfig) if sampling else None
    from nmt.api import load
    from nmt.runtime import all_cores, keep_freed_memory

    keep_freed_memory()  # process-wide settings are the command's to make, not the library's
    with err.status(f"loading {model}…"):
        translator = load(
            model,
            config=config,
            engine=engine,
            precision=precision(int8, bf16),
            device=device,
            threads=threads or all_cores(),
            sampling=sampler,
            align=align,
        ).translator
    check_bf16(translator, bf16, say)

    if interactive and not quiet:
        err.print("type a sentence, Ctrl-D to end", markup=False)
    where = f"{input_file}:" if input_file is not None else "<stdin>:"
    source = (
        lines if lines is not None else piped if piped is not None else stream_lines(sys.stdin.buffer, "<stdin>", say)
    )
    write = formatter(fmt, config.nbest, scores)
    report = not quiet and (input_file is not None or output_file is not None)
    with Output(output_file) as output, Progress(len(lines) if lines is not None else None, report, report) as progress:
        for first, results, seconds in translated(
            translator, source, 1 if interactive else CHUNK, say, where, progress
        ):
            output.write("".join(write(first + i, result, seconds) for i, result in enumerate(results)))
            output.flush()


def check_bf16(translator, bf16: bool, say: Callable[[str], None]) -> None:
    """A warning where bfloat16 is slower than float32 on this device."""
    if bf16:
        from nmt.translate import Translator  # only here: the CTranslate2 engine runs without torch

        if isinstance(translator, Translator):
            from nmt.runtime import slow_bf16

            if why := slow_bf16(translator.device):
                say(f"{why}; leave out --bf16 here (or try --int8)")


def document_format(
    input_format: str | None, input_file: Path | None, fmt: str, nbest: int, scores: bool, align: bool
) -> str:
    """What the input is (--input-format, else its file's extension, else text); a document format refuses the
    options that describe lines, since what comes back is the document itself."""
    from nmt.documents import check_format, format_of
    from nmt.errors import ConfigError

    document = check_format(input_format) if input_format is not None else format_of(input_file)
    asked = [
        flag
        for flag, given in (("--format jsonl", fmt == "jsonl"), (f"--nbest {nbest}", nbest > 1), ("--scores", scores))
        if given
    ] + (["--align"] if align else [])
    if document != "text" and asked:
        said = "--input-format " + document if input_format is not None else f"its extension says {document}"
        raise ConfigError(
            f"{asked[0]} describes translated lines, but a {document} document ({said}) is written back whole in "
            "its own format; leave it out, or give --input-format text"
        )
    return document


def translate_document(
    model: Path,
    config: DecodeConfig,
    options: dict,
    document: str,
    input_file: Path | None,
    output_file: Path | None,
    say: Callable[[str], None],
) -> None:
    """Read a whole document (a file or stdin), translate it and write it in its own format to stdout or --output
    (whole, or not at all). `options`: nmt.load's engine, precision, device, threads and sampling."""
    from nmt.api import load
    from nmt.documents import translate_document as read_as
    from nmt.runtime import all_cores, keep_freed_memory
    from nmt.textio import Output, read_document

    text = read_document(input_file, say)  # a bad file fails before the model loads, and so does
    read_as("", document, lambda texts: [], lang=None)  # a format whose reader is not installed
    keep_freed_memory()
    with err.status(f"loading {model}…"):
        loaded = load(model, config=config, **{**options, "threads": options["threads"] or all_cores()})
    check_bf16(loaded.translator, options["precision"] == "bf16", say)
    where = f"{input_file}:" if input_file is not None else "<stdin>:"
    translated = loaded.translate_document(text, document, warn=say, where=where)
    with Output(output_file) as output:
        output.write(translated)


def check_scores(scores: bool, fmt: str, nbest: int) -> None:
    """--scores adds a score to plain translations; the other outputs hold their scores already, so asking
    again there is a mistake to say, not a flag to drop in silence."""
    from nmt.errors import ConfigError

    if scores and fmt == "jsonl":
        raise ConfigError("--scores: --format jsonl already gives each line's score and log_prob; drop --scores")
    if scores and nbest > 1:
        raise ConfigError(
            f"--scores: the n-best list (--nbest {nbest}) already gives each hypothesis's scores "
            "(Moses: i ||| text ||| F0= log-prob ||| score); drop --scores"
        )


def precision(int8: bool, bf16: bool) -> str:
    from nmt.errors import ConfigError

    if int8 and bf16:
        raise ConfigError("--int8 and --bf16 exclude each other; choose one")
    return "int8" if int8 else "bf16" if bf16 else "fp32"


def translate_file(model: Path, src: Path, config, output: Path | None = None) -> list[str]:
    """Translate a whole file (for `nmt score -m`), one sentence per line as a test set is (split none);
    returns the translations, optionally also written."""
    from dataclasses import replace

    from nmt.api import load

    with err.status(f"loading {model}…"):
        loaded = load(model, config=replace(config, split="none"))
    with Progress(None, True, False) as progress:

        def advance(done: int, total: int) -> None:
            progress.total = total
            progress.advance(done - progress.done)

        return loaded.translate_file(src, output, warn=warn, progress=advance)
