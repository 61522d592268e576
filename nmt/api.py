"""The Python API: `nmt.load(MODEL, ...)` gives a translator, the one `nmt translate` uses.

    import nmt
    t = nmt.load("runs/en_fr", beam_size=5)
    t.translate(["How was your day?"])            # ["Comment s'est passée ta journée ?"]
    t.translate(["How was your day?"], results=True)[0].nbest   # [(text, score, log_prob), ...]
    t.info["parameters"]
    t.translate_file("notes.en", "notes.fr")    # what `nmt translate -i notes.en -o notes.fr` does
    t.translate_document("# Plans\n\nWe leave on *Friday*.", format="markdown")  # Markdown again, same shape
    t.translate_document(Path("film.srt").read_text(), format="srt")   # cue numbers and timings as they were

The engine is chosen here (PyTorch for a model or run directory, CTranslate2 for an `nmt export` directory),
not in the command line."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, overload

from nmt.config import DecodeConfig, SamplingConfig, from_dict
from nmt.errors import ConfigError
from nmt.layout import ENGINES
from nmt.line_translator import PRECISIONS, LineTranslator, Translation


def load_translator(
    model: Path,
    config: DecodeConfig,
    engine: str = "auto",
    precision: str = "fp32",
    device: str | None = None,
    threads: int | None = None,
    sampling: SamplingConfig | None = None,
    align: bool = False,
) -> LineTranslator:
    """The engine's translator: PyTorch on a model or run directory, CTranslate2 on an `nmt export`
    directory ('auto' tells them apart). `align`: each translation's word alignment too (PyTorch only)."""
    from nmt.layout import EXPORT_FILE, MODEL_FILE

    model = Path(model)
    if engine not in ENGINES:
        raise ConfigError(f"engine {engine!r}: choose {', '.join(ENGINES)}")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: choose {', '.join(PRECISIONS)}")
    exported = (model / EXPORT_FILE).is_file() and not (model / MODEL_FILE).exists()
    if engine == "auto":
        engine = "ctranslate2" if exported else "pytorch"
    if engine == "ctranslate2":
        if sampling is not None:
            raise ConfigError("--sampling is not available with --engine ctranslate2; use the PyTorch engine")
        from nmt.ct2 import CT2Translator

        CT2Translator.check_align(align)  # before loading anything
        compute_type = {"fp32": "default", "int8": "int8", "bf16": "bfloat16"}[precision]
        return CT2Translator.load(model, config, device=device, threads=threads, compute_type=compute_type)
    from nmt.translate import Translator

    if exported:
        raise ConfigError(f"{model}: a CTranslate2 export; translate it with --engine ctranslate2 (or auto)")
    return Translator.load(
        model, config, device=device, threads=threads, sampling=sampling, precision=precision, align=align
    )


def _python_warning(message: str) -> None:
    warnings.warn(message, stacklevel=3)


# Documents whose pieces are placed by the word alignment when the engine gives one: inline markup (Markdown,
# HTML) goes to the words it belongs to, a sentence's translation is shared over its cues (subtitles)
ALIGNED = frozenset({"markdown", "html", "srt", "vtt"})
MARKUP = frozenset({"markdown", "html"})  # ... and those that lose something without it


def no_alignment_note(fmt: str) -> str:
    """What a document in `fmt` (one of MARKUP) loses on an engine without word alignments."""
    return (
        f"{fmt}: this engine (CTranslate2) gives no word alignment, so inline markup is placed by position; "
        "the PyTorch engine carries it along the words"
    )


class Loaded:
    """A loaded model with its decoding settings: `translate` lines, read `info`."""

    def __init__(self, path: Path, translator: LineTranslator) -> None:
        self.path, self.translator = path, translator
        self._info: dict[str, Any] | None = None
        self._aligned: LineTranslator | None = None  # the same model giving word alignments (documents)

    @overload
    def translate(self, lines: str | list[str], results: Literal[False] = False) -> list[str]: ...

    @overload
    def translate(self, lines: str | list[str], results: Literal[True]) -> list[Translation]: ...

    def translate(self, lines: str | list[str], results: bool = False) -> list[str] | list[Translation]:
        """One translation per line, in order (a string is one line); each line's sentences are translated and
        joined back (split="none" when loading: a line is one sentence). `results=True`: `Translation`s with the
        score, the n-best list (text, score, log-prob), the subword pieces, the sentences one by one
        (`.sentences`) and, if asked, the alignment."""
        batch = [lines] if isinstance(lines, str) else list(lines)
        if any("\n" in line for line in batch):
            raise ConfigError("a line to translate holds a newline; split the text into lines first")
        found = list(self.translator.translate_lines(batch))
        return found if results else [t.text for t in found]

    def translate_file(
        self,
        src: str | Path,
        dest: str | Path | None = None,
        *,
        warn: Callable[[str], None] | None = None,
        progress: Callable[[int, int], None] | None = None,
        chunk: int = 512,
    ) -> list[str]:
        """Translate a UTF-8 text file: one translation per line, in order (the sentences of a line translated
        and joined back, unless the model was loaded with split="none"), returned and, given `dest`, written
        there (the file appears whole when every line is done, never half-written). Invalid UTF-8 is replaced
        and a sentence longer than the model takes is cut and translated in parts, each with a warning naming
        `src:LINE`
        (given to `warn`, by default Python's warnings); a file that is not text raises a DataError.
        `progress(done, total)` is called with the lines done and the file's lines after each `chunk` lines."""
        from nmt.textio import Output, read_lines

        src = Path(src)
        say = warn if warn is not None else _python_warning
        lines = read_lines(src, say)
        texts: list[str] = []
        for result in self.translator.translate_lines(lines, chunk, say, f"{src}:"):
            texts.append(result.text)
            if progress is not None and (len(texts) % chunk == 0 or len(texts) == len(lines)):
                progress(len(texts), len(lines))
        if dest is not None:
            with Output(Path(dest)) as sink:
                sink.write("".join(f"{text}\n" for text in texts))
        return texts

    def translate_document(
        self, text: str, format: str = "text", *, warn: Callable[[str], None] | None = None, where: str = "line "
    ) -> str:
        """A whole document translated, in the same format and shape (`format`: text, markdown, html, srt or vtt;
        nmt.documents.format_of tells it from a file name): only text meant for people is translated, its
        markup, code, cue numbers and timings kept. Markdown and HTML carry inline markup along the word
        alignment, which the engine is asked for when it can give one (CTranslate2 cannot: the markup is then
        placed by position, with a warning). Warnings name `where` and the document's line ("film.srt:12: ..."),
        given to `warn` (by default Python's warnings)."""
        from nmt.documents import check_format, translate_document

        fmt = check_format(format)
        say = warn if warn is not None else _python_warning
        translator = self._for_document(fmt, say)

        def pieces(texts: list[str]) -> list[Translation]:
            if fmt == "text":  # a text's lines are the document's lines: the engine's warnings name them
                return translator.translate_batch(texts, say, 1, where)
            return translator.translate_batch(texts)  # pieces, not lines: the format says their warnings

        return translate_document(text, fmt, pieces, lang=translator.src_lang, warn=say, where=where)

    def _for_document(self, fmt: str, say: Callable[[str], None]) -> LineTranslator:
        """The translator for a document in `fmt`: with word alignments where the format uses them."""
        base = self.translator
        if fmt not in ALIGNED or base.align:
            return base
        if not base.can_align:
            if fmt in MARKUP:
                say(no_alignment_note(fmt))
            return base
        if self._aligned is None:
            self._aligned = base.with_config(align=True)
        return self._aligned

    @property
    def info(self) -> dict[str, Any]:
        """What `nmt info --json` says of the model (languages, shape, parameters, scores, versions)."""
        if self._info is None:
            from nmt.info import describe

            self._info = describe(self.path)
        return self._info


def load(
    model: str | Path,
    *,
    engine: str = "auto",
    precision: str = "fp32",
    device: str | None = None,
    threads: int | None = None,
    align: bool = False,
    sampling: SamplingConfig | None = None,
    config: DecodeConfig | None = None,
    **decode: Any,
) -> Loaded:
    """Load a model directory, run directory (its best checkpoint) or `nmt export` directory for translating.
    It changes no process-wide setting unless asked: `threads` sets torch's intra-op threads (None leaves them
    as they are); `nmt.runtime.keep_freed_memory()` is the allocator setting `nmt translate` makes.
    The search settings are DecodeConfig's fields, named as in a config file's [decode] table (beam_size,
    nbest, length_penalty, max_len_a, no_repeat_ngram, min_len, split, ...), one name each and checked as the command
    line's are (`beam=5`, the flag's word, is pointed at `beam_size`); or give a whole DecodeConfig as `config`."""
    if config is None:
        config = from_dict(DecodeConfig, decode, where="nmt.load")
    elif decode:
        raise ConfigError(f"nmt.load: give DecodeConfig fields in `config`, not as {', '.join(sorted(decode))}")
    if align and config.nbest > 1:
        raise ConfigError("align gives the best translation's alignment (--align); leave out nbest (--nbest)")
    translator = load_translator(Path(model), config, engine, precision, device, threads, sampling, align)
    return Loaded(Path(model), translator)
