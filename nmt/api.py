"""The Python API: `nmt.load(MODEL, ...)` gives a translator, the one `nmt translate` uses.

    import nmt
    t = nmt.load("runs/en_fr", beam=5)
    t.translate(["How was your day?"])            # ["Comment s'est passée ta journée ?"]
    t.translate(["How was your day?"], results=True)[0].nbest   # [(text, score, log_prob), ...]
    t.info["parameters"]

The engine is chosen here (PyTorch for a model or run directory, CTranslate2 for an `nmt export` directory),
not in the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, overload

from nmt.config import DecodeConfig, SamplingConfig, from_dict
from nmt.errors import ConfigError
from nmt.translate import PRECISIONS, LineTranslator, Translation

ENGINES = ("auto", "pytorch", "ctranslate2")


def load_translator(
    model: Path,
    config: DecodeConfig,
    engine: str = "auto",
    precision: str = "fp32",
    device: str | None = None,
    threads: int | None = None,
    sampling: SamplingConfig | None = None,
) -> LineTranslator:
    """The engine's translator: PyTorch on a model or run directory, CTranslate2 on an `nmt export`
    directory ('auto' tells them apart)."""
    from nmt.checkpoint import MODEL_FILE
    from nmt.export import EXPORT_FILE

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

        compute_type = {"fp32": "default", "int8": "int8", "bf16": "bfloat16"}[precision]
        return CT2Translator.load(model, config, device=device, threads=threads, compute_type=compute_type)
    from nmt.translate import Translator

    if exported:
        raise ConfigError(f"{model}: a CTranslate2 export; translate it with --engine ctranslate2 (or auto)")
    return Translator.load(model, config, device=device, threads=threads, sampling=sampling, precision=precision)


class Loaded:
    """A loaded model with its decoding settings: `translate` lines, read `info`."""

    def __init__(self, path: Path, translator: LineTranslator) -> None:
        self.path, self.translator = path, translator
        self._info: dict[str, Any] | None = None

    @overload
    def translate(self, lines: str | list[str], results: Literal[False] = False) -> list[str]: ...

    @overload
    def translate(self, lines: str | list[str], results: Literal[True]) -> list[Translation]: ...

    def translate(self, lines: str | list[str], results: bool = False) -> list[str] | list[Translation]:
        """One translation per line, in order (a string is one line). `results=True`: `Translation`s with
        the score, the n-best list (text, score, log-prob), the subword pieces and, if asked, the alignment."""
        batch = [lines] if isinstance(lines, str) else list(lines)
        if any("\n" in line for line in batch):
            raise ConfigError("a line to translate holds a newline; split the text into lines first")
        found = list(self.translator.translate_lines(batch))
        return found if results else [t.text for t in found]

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
    beam: int = 5,
    nbest: int = 1,
    length_penalty: float = 1.0,
    align: bool = False,
    sampling: SamplingConfig | None = None,
    **decode: Any,
) -> Loaded:
    """Load a model directory, run directory (its best checkpoint) or `nmt export` directory for translating.
    Other keyword arguments are DecodeConfig fields (max_len_a, no_repeat_ngram, min_len, ...), checked as the
    command line's are."""
    values = {"beam_size": beam, "nbest": nbest, "length_penalty": length_penalty, **decode}
    config = from_dict(DecodeConfig, values, where="nmt.load")
    translator = load_translator(Path(model), config, engine, precision, device, threads, sampling)
    if align:
        from nmt.translate import Translator

        if not isinstance(translator, Translator):
            raise ConfigError(
                "align needs the model's attention, which CTranslate2 does not give; use engine='pytorch'"
            )
        translator.align = True
    return Loaded(Path(model), translator)
