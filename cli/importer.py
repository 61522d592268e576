"""`nmt import`: read a Hugging Face transformers directory (MarianMT as OPUS-MT publishes them, or an
`nmt export --format hf`) into an nmt model directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from nmt_cli.common import err, handle_errors, out, writable


@handle_errors
def import_model(
    hf_dir: Annotated[
        Path,
        typer.Argument(
            metavar="DIR",
            help="A local transformers directory: config.json, model.safetensors, source.spm, target.spm, "
            "vocab.json, tokenizer_config.json.",
        ),
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Model directory to write (must not exist unless --force).")
    ],
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")] = False,
) -> None:
    """Import a transformers MarianMT directory as an nmt model directory, which translate, serve, attention,
    info, export and train --init then take. Weights are read from safetensors only; a config field nmt cannot
    map is an error naming it. Needs `pip install 'nmt[hf]'`."""
    from nmt.hf_dir import import_hf, quiet_transformers

    writable(out_dir, "--out", directory=True)
    with quiet_transformers(), err.status(f"importing {hf_dir}…"):
        path = import_hf(hf_dir, out_dir, force=force)
    out.print(f"imported {hf_dir} to {path}; translate with: nmt translate -m {path}", markup=False)
