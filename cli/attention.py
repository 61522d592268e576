"""`nmt attention`: translate a sentence and draw the attention behind it (or write it as JSON)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from nmt_cli.common import err, handle_errors, out, writable
from nmt_cli.settings import FROM_FLAGS, Settings, choice, settings

from nmt.config import DecodeConfig
from nmt.layout import ATTENTION_KINDS


@handle_errors
@settings((DecodeConfig, ("beam_size",)))
def attention(
    model: Annotated[
        Path, typer.Option("--model", "-m", help="Model directory, or a run directory (meaning its best checkpoint).")
    ],
    sentence: Annotated[str | None, typer.Argument(help="The sentence; without it, one per line from stdin.")] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Picture to write (PNG); several sentences: NAME-1.png, NAME-2.png, ... (-o and/or --json: "
            "there is no default file to overwrite).",
        ),
    ] = None,
    kind: Annotated[
        str,
        typer.Option(
            **choice(ATTENTION_KINDS),
            help="cross (target pieces over source pieces), encoder or decoder (self-attention).",
        ),
    ] = "cross",
    layer: Annotated[str, typer.Option(help="A layer number (0 = first) or 'all' (one row of panels each).")] = "all",
    head: Annotated[str, typer.Option(help="A head number, 'mean' of the heads, or 'all' (one panel each).")] = "mean",
    json_file: Annotated[
        Path | None,
        typer.Option(
            "--json",
            help="Also write the weights and their pieces as JSON here ('-': stdout); alone, "
            "without --output, no picture is drawn.",
        ),
    ] = None,
    settings: Settings = FROM_FLAGS,  # --beam (nmt_cli.settings)
    device: Annotated[str | None, typer.Option(help="cpu, cuda or cuda:N.")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: all cores).")] = None,
) -> None:
    """Translate SENTENCE (or each line of stdin) and draw the attention that produced the translation: heatmaps
    with the subword pieces on the axes, from the model's own softmax weights (teacher-forced on its output)."""
    from nmt.attention import draw, import_pyplot
    from nmt.errors import ConfigError
    from nmt.translate import Translator

    _check_choices(model, kind, output, json_file)
    config = settings.make(DecodeConfig)
    lines = [sentence] if sentence is not None else [line.rstrip("\n") for line in sys.stdin]
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise ConfigError("no sentence: give one as an argument or on stdin")
    if output is not None:
        import_pyplot()  # before the model loads: a missing matplotlib is said at once
        writable(output, "--output")
    from nmt.runtime import all_cores

    translator = Translator.load(model, config, device=device, threads=threads or all_cores())
    net = translator.model
    layers = net.config.dec_layers if kind != "encoder" else net.config.enc_layers
    chosen_layer = None if layer == "all" else _index(layer, layers, "--layer")
    chosen_head: int | str = head if head in ("mean", "all") else _index(head, net.config.n_heads, "--head")
    ids = translator.encode(lines, lambda message: err.print(f"warning: {message}", markup=False))
    found = translator.search_ids(ids)
    dumps = []
    for n, (line, src_ids, hyps) in enumerate(zip(lines, ids, found), start=1):
        tokens = hyps[0].tokens if hyps else []
        maps = translator.attention_maps(src_ids, tokens)
        text = translator.tgt_tok.decode(tokens)
        if output is not None:
            path = output if len(lines) == 1 else output.with_name(f"{output.stem}-{n}{output.suffix}")
            draw(maps, kind, chosen_layer, chosen_head, path, title=f"{line}  →  {text}")
            err.print(f"wrote {path}", markup=False)
        dumps.append({"source": line, "translation": text, **maps.to_dict()})
        if json_file is None or str(json_file) != "-":  # stdout carries the JSON then
            out.print(text, markup=False)
    if json_file is not None:
        data = json.dumps(dumps if len(dumps) > 1 else dumps[0])
        if str(json_file) == "-":
            sys.stdout.write(data + "\n")
        else:
            writable(json_file, "--json").write_text(data + "\n", encoding="utf-8")
            err.print(f"wrote {json_file}", markup=False)


def _index(value: str, count: int, flag: str) -> int:
    from nmt.errors import ConfigError

    if not value.isdigit() or int(value) >= count:
        raise ConfigError(f"{flag} {value}: give a number from 0 to {count - 1}, or the words it allows")
    return int(value)


def _check_choices(model: Path, kind: str, output: Path | None, json_file: Path | None) -> None:
    """Refuse what cannot work before stdin is read or the model loaded."""
    from nmt.attention import KINDS
    from nmt.errors import ConfigError, NmtError
    from nmt.info import kind_of  # it tells the kinds of directory apart

    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r}: choose {', '.join(KINDS)}")
    try:
        exported = kind_of(model) == "ctranslate2"
    except NmtError:
        exported = False  # not a directory nmt knows: loading it says why
    if exported:
        raise ConfigError(f"{model}: an export has no attention weights; use the PyTorch model directory")
    if output is None and json_file is None:  # as nmt plot: a picture goes where it is asked to, never over one
        raise ConfigError("nothing to write; give -o attention.png and/or --json FILE ('-': stdout)")
