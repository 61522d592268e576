"""`nmt export`: write a trained model in another engine's format (CTranslate2, or a Hugging Face transformers
directory)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from nmt_cli.common import err, handle_errors, out, writable
from nmt_cli.settings import choice

from nmt.layout import QUANTIZATIONS

FORMATS = ("ctranslate2", "hf")


@handle_errors
def export(
    model: Annotated[
        Path, typer.Option("--model", "-m", help="Model directory, or a run directory (meaning its best checkpoint).")
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory to write (must not exist unless --force).")],
    fmt: Annotated[
        str, typer.Option("--format", **choice(FORMATS), help=f"Target format: {', '.join(FORMATS)}.")
    ] = "ctranslate2",
    quantization: Annotated[
        str,
        typer.Option(**choice(QUANTIZATIONS), help="Weight type of the export (CTranslate2; hf is float32)."),
    ] = "float32",
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")] = False,
) -> None:
    """Export a model for another inference engine; the output directory alone is enough to translate.

    CTranslate2: `nmt translate --engine ctranslate2 -m OUT` (needs `pip install 'nmt[ct2]'`).
    hf: a transformers directory (MarianMTModel for post-norm models, PegasusForConditionalGeneration for pre-norm
    ones) with MarianTokenizer's files, a generation config and a model card; `nmt import OUT` reads it back
    (needs `pip install 'nmt[hf]'`).
    """
    from nmt.errors import ConfigError

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is not supported; choose one of: {', '.join(FORMATS)}")
    if fmt == "hf":
        _export_hf(model, out_dir, quantization, force)
        return
    from nmt.export import export_ctranslate2

    writable(out_dir, "--out", directory=True)

    with err.status(f"exporting {model}…"):
        path = export_ctranslate2(model, out_dir, quantization=quantization, force=force)
    out.print(
        f"exported {model} to {path} (CTranslate2, {quantization}); "
        f"translate with: nmt translate --engine ctranslate2 -m {path}",
        markup=False,
    )


def _export_hf(model: Path, out_dir: Path, quantization: str, force: bool) -> None:
    from nmt.errors import ConfigError

    if quantization != "float32":
        raise ConfigError(f"--quantization {quantization}: --format hf writes float32 weights; leave it out")
    from nmt.hf_dir import export_hf, quiet_transformers

    writable(out_dir, "--out", directory=True)
    with quiet_transformers(), err.status(f"exporting {model}…"):
        path = export_hf(model, out_dir, force=force)
    out.print(
        f"exported {model} to {path} (transformers); load it with AutoModelForSeq2SeqLM.from_pretrained({str(path)!r})",
        markup=False,
    )
