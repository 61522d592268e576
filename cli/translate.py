"""`nmt translate`: a Unix filter. One output line per input line, in order, whatever the input."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, BinaryIO, Callable, Iterator, Optional

import typer

from nmt_cli.common import err, handle_errors

ModelOpt = Annotated[Path, typer.Option("--model", "-m", help="Model directory, or a run directory (meaning its best checkpoint).")]


def read_text_lines(stream: BinaryIO, name: str, warn: Callable[[str], None]) -> Iterator[str]:
    """Lines split on '\\n' only ('\\r\\n' accepted); invalid UTF-8 is replaced, with a warning, never fatal."""
    for number, raw in enumerate(stream, start=1):  # binary iteration splits on b'\n' alone
        raw = raw[:-1] if raw.endswith(b"\n") else raw
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as e:
            warn(f"{name}:{number}: invalid UTF-8 at column {e.start + 1}; replaced with U+FFFD")
            yield raw.decode("utf-8", errors="replace")


def warn(message: str) -> None:
    err.print(f"warning: {message}", markup=False)


def read_file(path: Path, warn: Callable[[str], None]) -> list[str]:
    import io

    from nmt.errors import DataError

    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror}); check the path") from None
    return list(read_text_lines(io.BytesIO(raw), str(path), warn))


def decode_options(beam: int, lenpen: float, normalize: str, max_len_a: float, max_len_b: int,
                   batch_tokens: int, nbest: int, no_repeat_ngram: int, unk_penalty: float):
    from nmt.config import DecodeConfig
    from nmt.errors import ConfigError

    if beam < 1 or nbest < 1 or batch_tokens < 1:
        raise ConfigError("--beam, --nbest and --batch-tokens must be at least 1")
    if nbest > beam:
        raise ConfigError(f"--nbest {nbest} needs --beam of at least {nbest}")
    return DecodeConfig(beam_size=beam, length_penalty=lenpen, normalize=normalize, max_len_a=max_len_a,
                        max_len_b=max_len_b, batch_tokens=batch_tokens, nbest=nbest,
                        no_repeat_ngram=no_repeat_ngram, unk_penalty=unk_penalty)


@handle_errors
def translate(
    model: ModelOpt,
    input_file: Annotated[Optional[Path], typer.Option("--input", "-i", help="Read this file instead of stdin.")] = None,
    output_file: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here instead of stdout (written whole at the end).")] = None,
    beam: Annotated[int, typer.Option(help="Beam size; 1 is greedy search.")] = 5,
    lenpen: Annotated[float, typer.Option(help="GNMT length penalty alpha: score / ((5 + len) / 6) ** alpha; 0 is the raw sum.")] = 1.0,
    normalize: Annotated[str, typer.Option(help="'gnmt' (uses --lenpen) or 'length' (score / length).")] = "gnmt",
    max_len_a: Annotated[float, typer.Option(help="Output length limit a * source_length + b: the a.")] = 1.2,
    max_len_b: Annotated[int, typer.Option(help="Output length limit a * source_length + b: the b.")] = 10,
    batch_tokens: Annotated[int, typer.Option(help="Source tokens per batch (times the beam).")] = 4096,
    nbest: Annotated[int, typer.Option(help="Print the K best as 'i ||| translation ||| score' (Moses/fairseq n-best format).")] = 1,
    scores: Annotated[bool, typer.Option("--scores", help="Print 'score<TAB>translation' instead of the translation alone.")] = False,
    no_repeat_ngram: Annotated[int, typer.Option(help="Never repeat an n-gram of this size; 0 allows repeats.")] = 0,
    unk_penalty: Annotated[float, typer.Option(help="Subtract this from the log-probability of <unk>.")] = 0.0,
    sampling: Annotated[bool, typer.Option("--sampling", help="Sample each output at random instead of searching (ignores --beam).")] = False,
    temperature: Annotated[float, typer.Option(help="With --sampling: divide the logits by this.")] = 1.0,
    top_k: Annotated[int, typer.Option(help="With --sampling: draw from the k most probable tokens; 0 draws from all.")] = 0,
    top_p: Annotated[float, typer.Option(help="With --sampling: draw from the smallest set holding this much probability.")] = 1.0,
    seed: Annotated[int, typer.Option(help="With --sampling: random seed (the same seed gives the same output).")] = 1,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda or cuda:N (default: cuda when available, else cpu).")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads (default: all cores).")] = None,
    engine: Annotated[str, typer.Option(help="'pytorch', or 'ctranslate2' for a directory written by `nmt export` (pip install 'nmt[ct2]').")] = "pytorch",
    int8: Annotated[bool, typer.Option("--int8", help="Compute with int8 weights: PyTorch dynamic quantisation of the Linear layers (CPU only), or CTranslate2's int8.")] = False,
    bf16: Annotated[bool, typer.Option("--bf16", help="Compute in bfloat16 (log-probs and scores stay float32).")] = False,
) -> None:
    """Translate lines from stdin (or --input) to stdout (or --output): exactly one output line per input line.

    Interactive on a terminal (each line as soon as it is entered); batched by length for speed on pipes and files.
    Empty lines give empty lines, over-long lines are truncated with a warning, invalid UTF-8 is replaced with a warning.
    With --engine ctranslate2, -m is a directory written by `nmt export` and the search runs in CTranslate2.
    """
    from nmt.config import SamplingConfig
    from nmt.errors import ConfigError

    config = decode_options(beam, lenpen, normalize, max_len_a, max_len_b, batch_tokens, nbest, no_repeat_ngram, unk_penalty)
    if sampling and nbest > 1:
        raise ConfigError("--sampling draws one output per line; --nbest needs search")
    sampler = SamplingConfig(temperature, top_k, top_p, seed) if sampling else None
    translator = load_translator(model, config, engine, precision(int8, bf16), device=device, threads=threads, sampling=sampler)
    if bf16 and engine == "pytorch":
        from nmt.runtime import slow_bf16

        if why := slow_bf16(translator.device):
            warn(f"{why}; leave out --bf16 here (or try --int8)")

    def fmt(index: int, result) -> str:
        if nbest > 1:
            return "\n".join(f"{index} ||| {text} ||| {score:.4f}" for text, score in result.nbest)
        return f"{result.score:.4f}\t{result.text}" if scores else result.text

    if input_file is not None:
        results = _with_progress(translator, read_file(input_file, warn), warn)
        text = "".join(fmt(i, r) + "\n" for i, r in enumerate(results))
        _write(output_file, text)
        return

    interactive = sys.stdin.isatty()
    lines_in = read_text_lines(sys.stdin.buffer, "<stdin>", warn)
    chunk = 1 if interactive else 512
    if output_file is not None:
        results = list(translator.translate_lines(lines_in, chunk=chunk, warn=warn))
        _write(output_file, "".join(fmt(i, r) + "\n" for i, r in enumerate(results)))
        return
    stdout = sys.stdout.buffer
    for i, result in enumerate(translator.translate_lines(lines_in, chunk=chunk, warn=warn)):
        stdout.write((fmt(i, result) + "\n").encode("utf-8"))
        if interactive or (i + 1) % chunk == 0:
            stdout.flush()
    stdout.flush()


def precision(int8: bool, bf16: bool) -> str:
    from nmt.errors import ConfigError

    if int8 and bf16:
        raise ConfigError("--int8 and --bf16 exclude each other; choose one")
    return "int8" if int8 else "bf16" if bf16 else "fp32"


def load_translator(model: Path, config, engine: str, precision: str, device: str | None = None,
                    threads: int | None = None, sampling=None):
    """The engine's translator: PyTorch on a model or run directory, CTranslate2 on an `nmt export` directory."""
    from nmt.errors import ConfigError

    if engine not in ("pytorch", "ctranslate2"):
        raise ConfigError(f"--engine {engine!r}: choose pytorch or ctranslate2")
    if engine == "ctranslate2":
        if sampling is not None:
            raise ConfigError("--sampling is not available with --engine ctranslate2; use the PyTorch engine")
        from nmt.ct2 import CT2Translator

        compute_type = {"fp32": "default", "int8": "int8", "bf16": "bfloat16"}[precision]
        return CT2Translator.load(model, config, device=device, threads=threads, compute_type=compute_type)
    from nmt.checkpoint import MODEL_FILE
    from nmt.export import EXPORT_FILE
    from nmt.translate import Translator

    if (model / EXPORT_FILE).is_file() and not (model / MODEL_FILE).exists():
        raise ConfigError(f"{model}: a CTranslate2 export; translate it with --engine ctranslate2")
    return Translator.load(model, config, device=device, threads=threads, sampling=sampling, precision=precision)


def translate_file(model: Path, src: Path, config, output: Path | None = None) -> list[str]:
    """Translate a whole file (for `nmt score -m`); returns the translations, optionally also written."""
    from nmt.translate import Translator

    lines = read_file(src, warn)
    translator = Translator.load(model, config)
    texts = [r.text for r in _with_progress(translator, lines, warn)]
    if output is not None:
        _write(output, "".join(f"{t}\n" for t in texts))
    return texts


def _with_progress(translator, lines: list[str], warn) -> list:
    """Translate a whole file in chunks, with a progress bar on stderr when it is a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    chunk = 2048
    results: list = []
    with Progress(TextColumn("translating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, disable=not err.is_terminal) as progress:
        task = progress.add_task("translate", total=len(lines))
        for start in range(0, len(lines), chunk):
            results += translator.translate_batch(lines[start : start + chunk], warn, start + 1)
            progress.update(task, completed=len(results))
    return results


def _write(path: Path | None, text: str) -> None:
    """Write atomically: a failed run leaves no half-written output file."""
    if path is None:
        sys.stdout.buffer.write(text.encode("utf-8"))
        sys.stdout.buffer.flush()
        return
    import os

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(text.encode("utf-8"))
    os.replace(tmp, path)
