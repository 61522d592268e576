"""`nmt info PATH`: what a model, run, prepared data or CTranslate2 export directory is and holds, as an
aligned list on stdout or (--json) the dict of nmt.info.describe. Reads JSON files and safetensors headers
only: no weights are loaded and torch is not imported, so it answers at once."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from nmt_cli.common import handle_errors, out
from rich.text import Text

KINDS = {"model": "model dir", "run": "run dir", "data": "prepared data", "ctranslate2": "CTranslate2 export"}
SHOWN_VERSIONS = ("nmt", "torch", "sentencepiece")  # and ctranslate2 for an export; --json has them all
SCORES = {"bleu": "BLEU", "chrf": "chrF", "loss": "loss", "nll": "nll", "ppl": "ppl"}  # valid_* keys, in order
Row = tuple[str, str]


@handle_errors
def info(
    path: Annotated[
        Path,
        typer.Argument(
            help="A model (or checkpoint) directory, a run directory, a prepared data directory or a CTranslate2 "
            "export.",
            show_default=False,
        ),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the description as JSON (sizes in bytes). [default: off, a list]")
    ] = False,
) -> None:
    """Say what a directory is: languages, vocabulary, model shape and parameters, training steps and time,
    best validation scores, checksums, versions, files and sizes.

    Reads JSON and safetensors headers only: no weights are loaded, nothing in the files is run.
    """
    from nmt.info import describe

    desc = describe(path)
    if as_json:
        out.out(json.dumps(_finite(desc), indent=2, ensure_ascii=False), highlight=False)
        return
    rows = render(desc)
    width = max(len(label) for label, _ in rows if label)
    for label, value in rows:
        out.print(Text.assemble((label.ljust(width + 2), "bold"), value) if label or value else Text(""))


def render(desc: dict[str, Any]) -> list[Row]:
    """The lines of the text output, as (label, value); a row of two empty strings is a blank line."""
    kind = desc["kind"]
    rows: list[Row] = [(KINDS[kind], desc["path"])]
    if kind == "run":
        rows += _run(desc)
    elif kind == "model":
        rows += _model(desc)
    elif kind == "data":
        rows += _data(desc)
    else:
        rows += _export(desc)
    rows.append(("versions", _versions(desc["versions"], kind == "ctranslate2")))
    rows += [("", ""), *_files(desc["files"])]
    if kind == "run" and desc["model"] is not None:  # the best model, after the run's own files
        model = desc["model"]
        rows += [("", ""), ("best model" if desc["best"] else "last model", model["path"])]
        rows += [(f"  {label}", value) for label, value in _model(model, nested=True)]
    return rows


# ---------------------------------------------------------------------------------------------
# Each kind


def _run(d: dict[str, Any]) -> list[Row]:
    rows = [_languages(d), ("data", str(d["data_dir"]))]
    if d.get("init"):
        rows.append(_lineage(d["init"]))
    steps = f"{d['step']:,} (epoch {d['epoch'] + 1}), {_duration(d['train_minutes'])} of training"
    log = d["log"] or {}
    if isinstance(log.get("last_step"), int) and log["last_step"] > d["step"]:
        steps += f"; the log goes on to step {log['last_step']:,}, past the last checkpoint"
    rows.append(("steps", steps if d["last"] else "no checkpoint yet"))
    if d["best"]:
        rows.append(("best", f"{_best(d['best'])} ({d['best'].get('checkpoint', '?')})"))
    if d["last"]:
        rows.append(("last", f"{d['last']['checkpoint']}"))
    names = [c["name"] for c in d["checkpoints"]]
    shown = ", ".join(names) if len(names) <= 3 else f"{names[0]} … {names[-1]}"
    size = _size(sum(c["bytes"] for c in d["checkpoints"]))
    rows.append(("checkpoints", f"{len(names)}" + (f": {shown} ({size})" if names else "")))
    if d["last_valid"]:
        rows.append(("last valid", _scores(d["last_valid"])))
    config = d["config"]
    if isinstance(config.get("train"), dict):
        rows.append(("train config", _non_default(config["train"], "train")))
    rows += [("warning", w) for w in d["warnings"]]
    return rows


def _model(d: dict[str, Any], nested: bool = False) -> list[Row]:
    """A model's rows; `nested` (a run's best model) leaves out what the run's rows say already."""
    weights = d["weights"]
    dtype = weights["dtype"] if isinstance(weights["dtype"], str) else "/".join(weights["dtype"])
    rows = [] if nested else [_languages(d)]
    rows += [
        ("shape", _shape(d["model"])),
        ("parameters", f"{d['parameters']:,} ({dtype}, {_size(weights['bytes'])})"),
        ("vocabulary", _vocab(d["vocab"])),
    ]
    if d.get("averaged"):
        rows += _averaged(d["averaged"])
    if d.get("init") and not nested:
        rows.append(_lineage(d["init"]))
    if d["step"] is not None:
        epoch = f" (epoch {d['epoch'] + 1})" if isinstance(d["epoch"], int) else ""
        minutes = f", {_duration(d['train_minutes'])} of training" if d["train_minutes"] is not None else ""
        rows.append(("step", f"{d['step']:,}{epoch}{minutes}"))
    if d["valid"]:
        rows.append(("valid", _scores(d["valid"])))
    if d["best"]:
        rows.append(("best so far", _best(d["best"])))
    if d["train"] and not nested:
        rows.append(("train config", _non_default(d["train"], "train")))
    if d["data_dir"] and not nested:
        rows.append(("data", str(d["data_dir"])))
    rows.append(("spm", _spm(d["checksums"])))
    return rows


def _lineage(init: dict[str, Any]) -> Row:
    """Where a run started (nmt train --init): the model and the sha256 of its weights."""
    return ("started", f"initialised from {init.get('path')} (sha256 {str(init.get('model_sha256'))[:16]}…)")


def _averaged(averaged: dict[str, Any]) -> list[Row]:
    """An average of checkpoints: which steps (where recorded) in place of a step, and no validation."""
    n, steps = averaged["checkpoints"], averaged["steps"]
    what = f"averaged from {n} checkpoint{'s' if n != 1 else ''}"
    if not steps:
        what += "; steps not recorded"
    elif len(steps) == 1 or min(steps) == max(steps):
        what += f", step {steps[0]:,}"
    else:
        what += f", steps {min(steps):,}–{max(steps):,}"
    return [("step", what), ("valid", "not validated (score it: nmt score -m MODEL --src SRC -r REF)")]


def _data(d: dict[str, Any]) -> list[Row]:
    rows = [_languages(d), ("vocabulary", _vocab(d["vocab"]))]
    for name, split in d["splits"].items():
        text = f"{split['pairs']:,} pairs" if isinstance(split.get("pairs"), int) else "?"
        dropped = {k: v for k, v in (split.get("filtered") or {}).items() if v}
        if dropped:
            text += f" of {split['lines']:,} (dropped: {', '.join(f'{v:,} {k}' for k, v in dropped.items())})"
        tokens = split.get("tokens") or {}
        if tokens:
            text += ", " + " + ".join(f"{n:,} {lang}" for lang, n in tokens.items()) + " tokens"
        unk = split.get("unk") or {}
        if isinstance(unk.get("pairs"), int) and unk["pairs"]:
            text += f"; {unk['pairs']:,} holding <unk>"
        rows.append((name, text))
    settings = {k: v for k, v in d["settings"].items() if k not in ("src", "tgt", "train", "valid", "tests")}
    rows.append(("settings", ", ".join(f"{k} {_value(v)}" for k, v in settings.items())))
    if d.get("tokenizer"):
        tokenizer = d["tokenizer"]
        files = ", ".join(
            f"{name} sha256 {str(digest)[:16]}…" for name, digest in (tokenizer.get("sha256") or {}).items()
        )
        rows.append(("tokenizer", f"from {tokenizer.get('path')} ({files}); no vocabulary trained"))
    sums = d["checksums"]
    rows.append(("inputs", f"{len(sums['inputs'] or {})} files, sha256 recorded; fingerprint {_short(sums)}"))
    rows.append(("spm", _spm(sums)))
    return rows


def _export(d: dict[str, Any]) -> list[Row]:
    languages = _languages(d)
    if not d["src_lang"]:
        languages = ("languages", "unknown (the exported model is no longer where it was)")
    source = d["source"] or {}
    return [
        languages,
        ("shape", _shape(d["model"])),
        ("parameters", f"{d['parameters']:,} ({d['quantization']})"),
        ("vocabulary", _vocab(d["vocab"])),
        ("exported from", str(source.get("path", "?"))),
        ("model.bin", f"sha256 {str(d['checksums'].get('model_bin_sha256'))[:16]}…"),
        ("spm", _spm(d["checksums"])),
    ]


# ---------------------------------------------------------------------------------------------
# Pieces


def _languages(d: dict[str, Any]) -> Row:
    return ("languages", f"{d['src_lang']} → {d['tgt_lang']}" if d["src_lang"] else "not recorded")


def _shape(m: dict[str, Any]) -> str:
    # the options imported models use, where they differ from nmt's defaults (older configs lack them)
    options = [
        "sinusoids in halves" if m.get("positions", "interleaved") != "interleaved" else "",
        "unscaled embeddings" if not m.get("scale_embedding", True) else "",
        "output bias" if m.get("output_bias") else "",
    ]
    return (
        f"{m['arch']}, d_model {m['d_model']}, {m['n_heads']} heads, {m['enc_layers']}+{m['dec_layers']} layers, "
        f"ffn {m['ffn_dim']}, {'pre' if m['pre_norm'] else 'post'}-norm, {m['activation']}, "
        f"{m['max_positions']} positions" + "".join(f", {option}" for option in options if option)
    )


def _vocab(v: dict[str, Any]) -> str:
    sizes = f"{v['src']:,} source, {v['tgt']:,} target" if v["src"] != v["tgt"] else f"{v['src']:,}"
    spm = v["spm"]
    names = f"joint {spm['src']}" if v["joint"] else f"{spm['src']} + {spm['tgt']}"
    if maps := v.get("maps"):  # an imported model's ids: the pieces mapped by its vocabulary file(s)
        names += f" through {maps['src']}" if maps["src"] == maps["tgt"] else f" through {maps['src']} + {maps['tgt']}"
    shared = "; shared embeddings" if v.get("shared_embeddings") else "; tied output" if v.get("tied_output") else ""
    return f"{sizes} ({names}){shared}"


def _best(best: dict[str, Any]) -> str:
    value = best["value"]
    shown = f"{value:.2f}" if isinstance(value, int | float) else str(value)
    return f"step {best['step']:,}, {SCORES.get(str(best['metric']), best['metric'])} {shown}"


def _scores(scores: dict[str, Any]) -> str:
    keys = sorted(scores, key=lambda k: list(SCORES).index(k[6:]) if k[6:] in SCORES else len(SCORES))
    parts = []
    for key in keys:
        name, value = key.removeprefix("valid_"), scores[key]
        if isinstance(value, int | float):
            label = SCORES.get(name, name)
            parts.append(f"{label} {value:.1f}" if name == "ppl" else f"{label} {value:.2f}")
    return ", ".join(parts)


def _non_default(settings: dict[str, Any], section: str) -> str:
    """The settings that differ from the defaults (the whole config is in --json)."""
    from nmt.config import TrainConfig, to_dict

    defaults = to_dict(TrainConfig()) if section == "train" else {}
    changed = {k: v for k, v in settings.items() if defaults.get(k, object()) != v}
    return ", ".join(f"{k} {_value(v)}" for k, v in changed.items()) or "the defaults"


def _spm(sums: dict[str, Any]) -> str:
    ok = sums.get("spm_ok")
    if ok is None:
        return "no checksum recorded"
    return "sha256 matches" if ok else "MISSING or CHANGED (the sha256 differs from the recorded one)"


def _versions(v: dict[str, Any], export: bool) -> str:
    made = ", ".join(f"{k} {version}" for k, version in v["recorded"].items())
    shown = (*SHOWN_VERSIONS, "ctranslate2") if export else SHOWN_VERSIONS
    here = ", ".join(f"{k} {v['environment'].get(k) or 'not installed'}" for k in shown)
    return (f"made by {made}; " if made else "") + f"here {here}"


def _files(entries: list[dict[str, Any]]) -> list[Row]:
    rows: list[Row] = [("files", f"{len(entries)}, {_size(sum(e.get('bytes', 0) for e in entries))}")]
    names = [e["name"] + ("/" if e["type"] == "dir" else "") for e in entries]
    width = max((len(n) for n, e in zip(names, entries) if e["type"] != "link"), default=0)
    for name, entry in zip(names, entries):
        if entry["type"] == "link":
            rows.append(("", f"{name} -> {entry['target']}"))
        else:
            rows.append(("", f"{name.ljust(width)}  {_size(entry['bytes']).rjust(10)}"))
    return rows


def _size(n: float) -> str:
    """1,234,567 → '1.2 MiB'."""
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            break
    return f"{n:.1f} {unit}"


def _duration(minutes: Any) -> str:
    """0.03 → '2 s', 12.34 → '12.3 min', 200 → '3 h 20 min'."""
    if not isinstance(minutes, int | float) or not math.isfinite(minutes):
        return "? min"
    if minutes < 1:
        return f"{minutes * 60:.0f} s"
    if minutes < 60:
        return f"{minutes:.1f} min"
    return f"{int(minutes // 60)} h {minutes % 60:.0f} min"


def _short(sums: dict[str, Any]) -> str:
    return f"{str(sums.get('fingerprint'))[:16]}…"


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return ",".join(map(str, v))
    return str(v)


def _finite(value: Any) -> Any:
    """NaN and infinities (a diverged validation) as null: --json prints strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
