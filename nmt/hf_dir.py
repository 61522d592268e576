"""Hugging Face transformers directories in and out: `nmt export --format hf` writes a model as a directory
that transformers loads with its own classes (no custom code), `nmt import` reads a MarianMT directory (as
OPUS-MT publishes them) or one of our exports back into an ordinary nmt model directory. What maps onto what is
nmt.hf's (one map, read both ways); the model card nmt.hf_card's.

    HF_DIR/{config.json, generation_config.json, model.safetensors,
            source.spm, target.spm, vocab.json (target_vocab.json), tokenizer_config.json, README.md}

The tokenizer files are MarianTokenizer's, so that AutoTokenizer loads them: our SentencePiece model(s) and a
vocab.json giving each piece its id. An import takes SentencePiece's own ids where vocab.json gives them (our
exports), else the ids through vocab.json (OPUS-MT's, whose decoder starts from <pad>), and checks the special ids
of the model's config against the vocabulary's. transformers is imported inside the functions (the optional
extra nmt[hf]; never by `import nmt` or a translate path); weights are read from safetensors only, a pickle
(pytorch_model.bin) is refused."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nmt.config import DecodeConfig, ModelConfig
from nmt.errors import CheckpointError, ConfigError
from nmt.fileio import sha256_file, staged_dir, write_json, write_text
from nmt.hf import CLASSES, from_hf_state, hf_config, nmt_config, to_hf_state
from nmt.layout import JOINT_SPM
from nmt.model import Transformer, build_model
from nmt.modeldir import LoadedModel, load_model_dir, save_model_dir
from nmt.tokenizer import SPECIAL, SpecialIds, Tokenizer

INSTALL_HINT = "transformers is not installed; install it with: pip install 'nmt[hf]'"
HF_WEIGHTS = "model.safetensors"
PICKLED = ("pytorch_model.bin", "pytorch_model.bin.index.json")
SOURCE_SPM, TARGET_SPM, VOCAB, TARGET_VOCAB = "source.spm", "target.spm", "vocab.json", "target_vocab.json"
TOKENIZER_CONFIG = "tokenizer_config.json"


def import_transformers() -> Any:
    """The transformers module, imported on first use: it is an optional dependency."""
    try:
        import transformers
    except ImportError as e:
        raise ConfigError(INSTALL_HINT) from e
    return transformers


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers without its progress bars and notices (the command line says what happened in one line);
    a missing transformers is left for the conversion to report."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")
        try:
            yield
        finally:
            hf_logging.set_verbosity(level)
            hf_logging.enable_progress_bar()


# ---------------------------------------------------------------------------------------------
# Export


def special_ids(loaded: LoadedModel) -> SpecialIds:
    """The special ids of a loaded model's target vocabulary (nmt's fixed ones unless its tokenizer says)."""
    return loaded.tgt_tokenizer.specials


def _tokenizer_files(loaded: LoadedModel, special: SpecialIds) -> tuple[dict[str, bytes], dict[str, Any]]:
    """MarianTokenizer's files (source.spm, target.spm, vocab.json and, for two vocabularies,
    target_vocab.json) and its tokenizer_config.json, so that AutoTokenizer loads the directory."""
    src, tgt = loaded.src_tokenizer, loaded.tgt_tokenizer
    pieces, src_pieces = tgt.pieces(), src.pieces()  # in id order
    separate = src_pieces != pieces  # two vocabularies (two SentencePiece models over one are still one)

    def vocab_of(pieces: list[str]) -> bytes:
        return json.dumps({p: i for i, p in enumerate(pieces)}, ensure_ascii=False, indent=1).encode()

    files = {SOURCE_SPM: src.proto, TARGET_SPM: tgt.proto, VOCAB: vocab_of(src_pieces)}
    if separate:
        files[TARGET_VOCAB] = vocab_of(pieces)
    config = {
        "tokenizer_class": "MarianTokenizer",
        "source_lang": loaded.config.get("src_lang"),
        "target_lang": loaded.config.get("tgt_lang"),
        "unk_token": pieces[special.unk],
        "eos_token": pieces[special.eos],
        "pad_token": pieces[special.pad],
        # the decoder's start token (our <s>) is special too, so that decoding with skip_special_tokens drops it
        **({"bos_token": pieces[special.bos]} if special.bos != special.pad else {}),
        "separate_vocabs": separate,
        "model_max_length": loaded.model.config.max_positions,
        "clean_up_tokenization_spaces": False,  # French spaces before ? and ! are text, not tokenisation
    }
    return files, config


def generation_config(model: ModelConfig, special: SpecialIds, decode: DecodeConfig) -> dict[str, Any]:
    """generation_config.json: nmt's [decode] settings where transformers can say them. early_stopping=True is
    nmt's rule (a sentence ends once beam_size hypotheses have). The length limit is one number (max_length,
    decoder start included), not nmt's a * source length + b, so it is the model's positions. transformers
    divides a hypothesis' log-prob by length ** beta: nmt's normalize "length" is beta 1 exactly, but its GNMT
    ((5 + length) / 6) ** alpha is no beta (the same only at 0), so beta is the one whose log-derivative,
    beta / length, equals GNMT's, alpha / (5 + length), at 10 tokens: 2/3 alpha (on the sample model's test set,
    beam 5: 191 of 200 translations as nmt's, against 165 with beta = alpha = 1)."""
    return {
        "decoder_start_token_id": special.bos,
        "eos_token_id": special.eos,
        "pad_token_id": special.pad,
        "forced_eos_token_id": special.eos,  # nmt ends a hypothesis at the length limit with EOS
        "bad_words_ids": [[special.pad]],  # nmt's search never emits pad (nmt.search.never_pad)
        "num_beams": decode.beam_size,
        "length_penalty": round(decode.length_penalty * 2 / 3, 4) if decode.normalize == "gnmt" else 1.0,
        "early_stopping": True,
        "max_length": model.max_positions,
        **({"no_repeat_ngram_size": decode.no_repeat_ngram} if decode.no_repeat_ngram else {}),
        **({"min_new_tokens": decode.min_len} if decode.min_len else {}),
    }


def _check_exportable(loaded: LoadedModel) -> None:
    """A one-line error for a model that no transformers class without custom code holds."""
    model, config = loaded.model, loaded.model.config
    if config.pre_norm and not config.share_all_embeddings:
        same = torch.equal(model.src_embed.weight, model.tgt_embed.weight) and torch.equal(
            model.tgt_embed.weight, model.output_proj.weight
        )
        if not same:
            raise ConfigError(
                f"{loaded.path}: a pre-norm model with separate embeddings; transformers' pre-norm class "
                "(Pegasus) has one matrix for source, target and output (train with --joint and "
                "share_all_embeddings, or a post-norm model, which exports to MarianMTModel)"
            )


def export_hf(model_dir: Path, out: Path, force: bool = False, decode: DecodeConfig | None = None) -> Path:
    """Write `model_dir` (a model or run directory) as a transformers directory `out`, atomically (a temporary
    directory renamed into place). Returns `out`."""
    transformers = import_transformers()
    out = Path(out)
    if out.exists() and not force:
        raise ConfigError(f"{out}: already exists; choose another --out or pass --force to replace it")
    from nmt.hf_card import model_card

    loaded = load_model_dir(Path(model_dir), "cpu")
    _check_exportable(loaded)
    config, special = loaded.model.config, special_ids(loaded)
    hf = hf_config(config, special)
    cls = getattr(transformers, CLASSES[hf["model_type"]])
    config_cls = transformers.AutoConfig.for_model(hf["model_type"]).__class__
    hf_model = cls(config_cls(**{k: v for k, v in hf.items() if k != "model_type"})).eval()
    state = to_hf_state(loaded.model, config)
    _load_hf(hf_model, state)
    gen = generation_config(config, special, decode or DecodeConfig())
    hf_model.generation_config = transformers.GenerationConfig(**gen)
    files, tok_config = _tokenizer_files(loaded, special)

    try:
        with staged_dir(out) as tmp:
            hf_model.save_pretrained(str(tmp))
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp / HF_WEIGHTS, 0o666 & ~umask)  # transformers writes it 0600; the other files are the user's
            for name, data in files.items():
                (tmp / name).write_bytes(data)
            write_json(tmp / TOKENIZER_CONFIG, tok_config)
            write_text(tmp / "README.md", model_card(loaded, out, hf, gen, transformers.__version__))
    except OSError as e:
        raise CheckpointError(
            f"{out}: could not write it: {e.strerror or e} ({e.filename}); nothing was written"
        ) from e
    return out


def _load_hf(hf_model: torch.nn.Module, state: dict[str, Tensor]) -> None:
    """Put `state` into a transformers model and check that every mapped tensor holds what was meant (tied
    names share one tensor: a conflict between two of them shows here)."""
    with torch.no_grad():
        own = hf_model.state_dict()
        for name, t in state.items():
            if own[name].shape != t.shape:
                raise ConfigError(f"{name}: shape {list(t.shape)} does not fit transformers' {list(own[name].shape)}")
            own[name].copy_(t)
        own = hf_model.state_dict()
        for name, t in state.items():
            if not torch.equal(own[name], t):
                raise ConfigError(f"{name}: tied to another tensor in transformers' model, which holds other values")


# ---------------------------------------------------------------------------------------------
# Import


def _read_hf_dir(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """config.json as written and resolved by transformers' config class (the class defaults filled in), after
    checking that the weights are a safetensors file."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: no config.json; nmt import reads a transformers MarianMT directory")
    if not (path / HF_WEIGHTS).is_file():
        pickled = next((name for name in PICKLED if (path / name).is_file()), None)
        if pickled:
            raise CheckpointError(
                f"{path / pickled}: a pickle, which nmt never loads; convert it to safetensors first: "
                f"MarianMTModel.from_pretrained(DIR).save_pretrained(DIR, safe_serialization=True)"
            )
        raise CheckpointError(f"{path / HF_WEIGHTS}: missing; nmt import reads the weights from safetensors only")
    try:
        raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path / 'config.json'}: not valid JSON ({e})") from e
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path / 'config.json'}: expected a JSON object")
    transformers = import_transformers()
    model_type = raw.get("model_type")
    if model_type not in CLASSES:
        raise ConfigError(
            f"model_type {model_type!r}: nmt imports {' and '.join(CLASSES.values())} directories, not this one"
        )
    config_cls = transformers.AutoConfig.for_model(model_type).__class__
    resolved = config_cls.from_pretrained(str(path), local_files_only=True).to_dict()
    return raw, resolved


def read_hf_model(path: Path) -> tuple[Any, ModelConfig]:
    """The transformers model of directory `path` (its own class, weights from safetensors) and our config."""
    raw, resolved = _read_hf_dir(path)
    transformers = import_transformers()
    cls = getattr(transformers, CLASSES[raw["model_type"]])
    hf_model = cls.from_pretrained(str(path), use_safetensors=True, local_files_only=True).eval()
    bias = hf_model.final_logits_bias
    config = nmt_config(resolved, raw, output_bias=bool(bias.abs().max() > 0))
    return hf_model, config


def convert_hf_model(hf_model: Any, config: ModelConfig) -> Transformer:
    """Our Transformer holding a transformers model's weights (checked: every tensor of ours is set, and ties
    the config declares hold equal values)."""
    model = build_model(config)
    ours = from_hf_state(hf_model.state_dict(), config)
    if config.share_all_embeddings or config.tie_output:
        tied = "src_embed.weight" if config.share_all_embeddings else "tgt_embed.weight"
        if not torch.equal(ours[tied], ours["output_proj.weight"]):
            raise CheckpointError("the output projection is tied in config.json but holds other values")
    missing, unexpected = model.load_state_dict(ours, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.eval()


@dataclass
class HfTokenizers:
    """What an import needs of a transformers directory's tokenizer: our two tokenizers, the files the model
    directory keeps, and what its config.json records of them."""

    src: Tokenizer
    tgt: Tokenizer
    spm_files: dict[str, bytes]
    vocab_files: dict[str, bytes]
    meta: dict[str, Any]


def _own_ids(proto: bytes, vocab: dict[str, int]) -> bool:
    """Whether `vocab` gives every piece of the SentencePiece model `proto` its own id, and the model has nmt's
    special ids (an `nmt export --format hf`): then nmt's plain tokenizer is the same one."""
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(proto)
    except Exception:  # not a SentencePiece model: the tokenizer made of it says so
        return False
    return (
        (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (SPECIAL.pad, SPECIAL.unk, SPECIAL.bos, SPECIAL.eos)
        and len(vocab) == sp.get_piece_size()
        and all(vocab.get(sp.id_to_piece(i)) == i for i in range(len(vocab)))
    )


def read_hf_tokenizers(path: Path) -> HfTokenizers:
    """MarianTokenizer's files of directory `path` as our tokenizers: SentencePiece's own ids where vocab.json
    gives them (our exports), else ids through vocab.json (Marian's, where the decoder starts from <pad>)."""
    tok_config = _json(path / TOKENIZER_CONFIG) if (path / TOKENIZER_CONFIG).is_file() else {}
    if tok_config.get("tokenizer_class", "MarianTokenizer") != "MarianTokenizer":
        raise ConfigError(
            f"{path / TOKENIZER_CONFIG}: tokenizer_class {tok_config['tokenizer_class']!r}; nmt reads "
            "MarianTokenizer's files (source.spm, target.spm, vocab.json)"
        )
    names = {"src": SOURCE_SPM, "tgt": TARGET_SPM}
    vocab_names = {"src": VOCAB, "tgt": TARGET_VOCAB if tok_config.get("separate_vocabs") else VOCAB}
    for name in {*names.values(), *vocab_names.values()}:
        if not (path / name).is_file():
            raise CheckpointError(f"{path / name}: missing; nmt import needs MarianTokenizer's files")
    protos = {side: (path / name).read_bytes() for side, name in names.items()}
    vocabs = {side: _json(path / name) for side, name in vocab_names.items()}
    # the model directory's names, as nmt names SentencePiece models (nmt.layout: "*.model", beside a "*.vocab")
    joint = protos["src"] == protos["tgt"]
    spm = {"src": JOINT_SPM, "tgt": JOINT_SPM} if joint else {"src": "spm.src.model", "tgt": "spm.tgt.model"}
    spm_files = {spm[s]: protos[s] for s in names}
    if all(_own_ids(protos[side], vocabs[side]) for side in names):
        plain = {side: Tokenizer(protos[side], str(path / names[side])) for side in names}
        return HfTokenizers(plain["src"], plain["tgt"], spm_files, {}, {"spm": spm})
    toks = {
        side: Tokenizer(
            protos[side], str(path / names[side]), vocab=vocabs[side], vocab_source=str(path / vocab_names[side])
        )
        for side in names
    }
    return HfTokenizers(
        toks["src"],
        toks["tgt"],
        spm_files,
        {vocab_names[s]: (path / vocab_names[s]).read_bytes() for s in names},
        {"spm": spm, "vocab": dict(vocab_names)},
    )


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def _check_specials(hf: dict[str, Any], config: ModelConfig, toks: HfTokenizers) -> None:
    """The special ids of transformers' config against those of the vocabulary, and its size against ours."""
    special = toks.tgt.specials
    for field, want in (
        ("decoder_start_token_id", special.bos),
        ("eos_token_id", special.eos),
        ("pad_token_id", special.pad),
    ):
        if hf.get(field) != want:
            raise ConfigError(
                f"{field} {hf.get(field)!r}: the vocabulary's is {want}; nmt takes its ids from the vocabulary"
            )
    for side, size in (("src", config.src_vocab_size), ("tgt", config.tgt_vocab_size)):
        tok = toks.src if side == "src" else toks.tgt
        if len(tok) != size:
            raise ConfigError(f"vocab_size {size}: the {side} vocabulary has {len(tok)} pieces")


def import_hf(hf_dir: Path, out: Path, force: bool = False) -> Path:
    """Write the transformers directory `hf_dir` (MarianMT, or our Pegasus export) as an nmt model directory
    `out`. Returns `out`."""
    import_transformers()
    hf_dir, out = Path(hf_dir), Path(out)
    if out.exists() and not force:
        raise ConfigError(f"{out}: already exists; choose another --out or pass --force to replace it")
    hf_model, config = read_hf_model(hf_dir)
    toks = read_hf_tokenizers(hf_dir)
    _check_specials(hf_model.config.to_dict(), config, toks)
    model = convert_hf_model(hf_model, config)
    tok_config = _json(hf_dir / TOKENIZER_CONFIG) if (hf_dir / TOKENIZER_CONFIG).is_file() else {}
    meta = {
        **toks.meta,
        "src_lang": tok_config.get("source_lang"),
        "tgt_lang": tok_config.get("target_lang"),
        "imported_from": {
            "path": str(hf_dir.resolve()),
            "class": type(hf_model).__name__,
            "model_sha256": sha256_file(hf_dir / HF_WEIGHTS),
            "config_sha256": sha256_file(hf_dir / "config.json"),
        },
    }
    return save_model_dir(out, model, meta, toks.spm_files, vocab_files=toks.vocab_files)
