"""The model card (README.md) of a transformers export: what nmt recorded about the model, and nothing else. The
facts come from the model directory's config.json (shape, training settings, the validation scores of the
checkpoint or the checkpoints averaged, where it started from) and, when it is still there, from the prepared
data directory's prepare.json (the corpus files and their sha256, the splits, the SentencePiece model); what
was not recorded is left out, never guessed. Knows nothing about tensors or transformers' classes: nmt.hf
hands it the loaded model's config and the transformers config it wrote."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from nmt.config import to_toml
from nmt.errors import NmtError
from nmt.fileio import sha256_file
from nmt.info_parts import parameters_of, read_json
from nmt.layout import MODEL_FILE, PREPARE_JSON
from nmt.version import __version__

if TYPE_CHECKING:
    from nmt.modeldir import LoadedModel

SAMPLE_USE = """```python
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{path}")
model = AutoModelForSeq2SeqLM.from_pretrained("{path}")
batch = tokenizer(["{text}"], return_tensors="pt", padding=True)
print(tokenizer.batch_decode(model.generate(**batch), skip_special_tokens=True))
```"""


def model_card(
    loaded: LoadedModel, out: Path, hf: dict[str, Any], generation: dict[str, Any], transformers_version: str
) -> str:
    """README.md of the export `out` of `loaded`, whose transformers config is `hf` and generation config
    `generation`."""
    config = loaded.config
    src, tgt = config.get("src_lang"), config.get("tgt_lang")
    pair = f"{src}→{tgt}" if src and tgt else "translation"
    parts = [
        f"# nmt {pair} model ({hf['architectures'][0]})",
        _origin(loaded, hf, transformers_version),
        "## Use\n\n" + SAMPLE_USE.format(path=out, text="How was your day?"),
        _decoding(generation),
        _shape(loaded),
        *_data(config),
        *_training(config),
        *_scores(config),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def _origin(loaded: LoadedModel, hf: dict[str, Any], transformers_version: str) -> str:
    lines = [
        f"Exported by `nmt export --format hf` (nmt {__version__}, transformers {transformers_version}) from "
        f"`{loaded.path}` ({MODEL_FILE} sha256 `{sha256_file(loaded.path / MODEL_FILE)}`).",
    ]
    if loaded.model.config.positions == "interleaved":
        lines.append(
            "The weights are the nmt model's own, reordered along d_model from nmt's interleaved sinusoid layout to "
            "transformers' (sines, then cosines): the network computes the same function."
        )
    init = loaded.config.get("init")  # nmt train --init: the model the run started from
    if isinstance(init, dict) and init.get("path"):
        digest = f" (model.safetensors sha256 `{init['model_sha256']}`)" if init.get("model_sha256") else ""
        lines.append(f"Fine-tuned from `{init['path']}`{digest}.")
    imported = loaded.config.get("imported_from")  # nmt import: the transformers directory it was read from
    if isinstance(imported, dict) and imported.get("path"):
        digest = f" (model.safetensors sha256 `{imported['model_sha256']}`)" if imported.get("model_sha256") else ""
        lines.append(f"Imported by `nmt import` from `{imported['path']}`{digest}.")
    return "\n".join(lines)


def _decoding(generation: dict[str, Any]) -> str:
    return (
        "## Decoding\n\n"
        f"generation_config.json holds nmt's decoding defaults where transformers can say them: num_beams "
        f"{generation['num_beams']}, early_stopping true (a sentence ends once num_beams hypotheses have), "
        "max_length the model's positions. Two differences remain. nmt divides a hypothesis' log-probability by "
        "((5 + length) / 6) ** alpha (GNMT), transformers by length ** length_penalty, which is the same only at 0: "
        f"length_penalty {generation['length_penalty']} is the closest (2/3 alpha: equal slopes at 10 tokens). "
        "And nmt limits each output to int(1.2 * source tokens + 10) tokens where transformers has one max_length."
    )


def _shape(loaded: LoadedModel) -> str:
    m = loaded.model.config
    norm = "pre-norm" if m.pre_norm else "post-norm"
    return (
        "## Model\n\n"
        f"Transformer, {norm}, {m.enc_layers} encoder and {m.dec_layers} decoder layers, d_model {m.d_model}, "
        f"{m.n_heads} heads, feed-forward {m.ffn_dim} ({m.activation}), vocabulary {m.src_vocab_size}"
        + ("" if m.src_vocab_size == m.tgt_vocab_size else f" / {m.tgt_vocab_size}")
        + f", {parameters_of(m):,} parameters."
    )


def _data(config: dict[str, Any]) -> list[str]:
    """The training data: prepare.json of the data directory the run names, when it is still readable."""
    data_dir = config.get("data_dir")
    if not isinstance(data_dir, str):
        return []
    try:
        summary = read_json(Path(data_dir) / PREPARE_JSON, NmtError)
    except NmtError:
        return [f"## Data\n\nPrepared data directory `{data_dir}` (no longer readable here: nothing more is known)."]
    lines = [f"## Data\n\nPrepared by `nmt prepare` into `{data_dir}` (fingerprint `{summary.get('fingerprint')}`)."]
    inputs = summary.get("inputs")
    if isinstance(inputs, dict) and inputs:
        lines += [
            "",
            "| file | sha256 |",
            "|---|---|",
            *(f"| {name} | `{digest}` |" for name, digest in inputs.items()),
        ]
    splits = summary.get("splits")
    if isinstance(splits, dict):
        lines.append("")
        for name, split in splits.items():
            if isinstance(split, dict):
                kept = split.get("kept", split.get("lines"))
                lines.append(f"- {name}: {kept} pairs" + (f" of {split['lines']}" if "kept" in split else ""))
    spm = summary.get("spm")
    if isinstance(spm, dict) and isinstance(spm.get("sha256"), dict):
        lines.append("")
        lines += [f"- SentencePiece `{name}`: sha256 `{digest}`" for name, digest in spm["sha256"].items()]
    return ["\n".join(lines)]


def _training(config: dict[str, Any]) -> list[str]:
    train, model = config.get("train"), config.get("model")
    if not isinstance(train, dict) or not isinstance(model, dict):
        return []
    where = f" on `{config['data_dir']}`" if isinstance(config.get("data_dir"), str) else ""
    when = f" for {config['step']} updates ({config.get('epoch')} epochs)" if "step" in config else ""
    text = (
        f"## Training\n\nTrained by `nmt train` (nmt {config.get('nmt_version')}){where}{when} with these settings, "
        "as config.json records them (the command line itself is not recorded):\n\n"
        f"```toml\n{to_toml({'model': model, 'train': train})}```"
    )
    if isinstance(config.get("averaged_from"), list):
        text += (
            "\n\nThe weights are the average of the checkpoints "
            + ", ".join(f"`{Path(str(p)).name}`" for p in config["averaged_from"])
            + " (`nmt average`)."
        )
    return [text]


def _scores(config: dict[str, Any]) -> list[str]:
    valid = config.get("valid")
    if not isinstance(valid, dict) or "averaged_from" in config:
        return []  # an average's config.json keeps its first checkpoint's scores, which are not its own
    rows = [f"| {key} | {value:.2f} |" for key, value in valid.items() if isinstance(value, int | float)]
    return [
        "## Scores\n\nOn the validation set at this checkpoint, greedy search, sacreBLEU's corpus BLEU and chrF with "
        "their default settings (13a tokenisation, mixed case), as `nmt train` measures them:\n\n"
        "| measure | value |\n|---|---|\n" + "\n".join(rows)
    ]
