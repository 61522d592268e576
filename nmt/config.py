"""Typed, frozen settings for every stage, loaded from TOML and overridden by flags.
Each setting is declared once, here: its type, default, help sentence, bounds and (where it differs from the
field's name) its command-line flag; the commands' options and `--help` are generated from these fields
(nmt_cli.settings); how a declaration is made and checked is nmt.setting's. Knows nothing about torch or the
other modules: plain dataclasses in, plain dicts out."""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from nmt.errors import ConfigError
from nmt.setting import SettingError, Spell, check, said, setting

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

ConfigT = TypeVar("ConfigT", bound="DataclassInstance")  # a config dataclass
Architecture = Literal["transformer"]


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the encoder-decoder Transformer; saved beside the weights."""

    arch: Architecture = setting("transformer", "The model class (nmt.model.build_model); only one so far.")
    src_vocab_size: int = setting(8000, "Source vocabulary size (set from the prepared data).", command_line=False)
    tgt_vocab_size: int = setting(8000, "Target vocabulary size (set from the prepared data).", command_line=False)
    d_model: int = setting(256, "Width of the embeddings and of every layer's output.", at_least=1)
    n_heads: int = setting(4, "Attention heads per layer; d_model must be divisible by it.", at_least=1)
    enc_layers: int = setting(3, "Encoder layers.", at_least=1)
    dec_layers: int = setting(3, "Decoder layers.", at_least=1)
    ffn_dim: int = setting(1024, "Inner width of each feed-forward block.", at_least=1)
    dropout: float = setting(0.1, "Dropout on sublayer outputs and embeddings, as in the paper.", at_least=0, below=1)
    attn_dropout: float = setting(0.0, "Dropout on the attention weights.", at_least=0, below=1)
    act_dropout: float = setting(0.0, "Dropout inside the feed-forward, after the activation.", at_least=0, below=1)
    activation: Literal["relu", "gelu", "swish"] = setting(
        "relu", "Activation of the feed-forward blocks (swish: x * sigmoid(x), also called SiLU)."
    )
    # pre-norm: deep stacks train stably with a short warm-up
    pre_norm: bool = setting(True, "Layer norm before each sublayer (pre-norm) rather than after it (post-norm).")
    share_all_embeddings: bool = setting(
        True, "Source, target and output share one matrix (needs a joint vocabulary: nmt prepare --joint)."
    )
    tie_output: bool = setting(True, "The target embedding and the output projection share one matrix.")
    max_positions: int = setting(
        1024, "Longest sequence the positional encoding covers, in subword tokens.", at_least=1
    )
    positions: Literal["interleaved", "halves"] = setting(
        "interleaved",
        "Layout of the sinusoid table: sin and cos interleaved (the paper), or all sines then all cosines "
        "(tensor2tensor, Marian), over the same angles.",
    )
    scale_embedding: bool = setting(True, "Multiply the token embeddings by sqrt(d_model), as in the paper.")
    output_bias: bool = setting(False, "A bias on the output projection (its own parameter even when tied).")
    pad_id: int = setting(0, "Id of the padding token (set from the prepared data).", command_line=False)

    def __post_init__(self) -> None:
        check(
            self,
            [
                (
                    self.d_model % self.n_heads == 0,
                    lambda k: f"{k('d_model')} ({self.d_model}) must be divisible by {k('n_heads')} ({self.n_heads})",
                ),
                (
                    not self.share_all_embeddings or self.src_vocab_size == self.tgt_vocab_size,
                    lambda k: f"{k('share_all_embeddings')} needs a joint vocabulary (equal source and target sizes)",
                ),
            ],
        )


@dataclass(frozen=True)
class TrainConfig:
    """How to train: batching, optimisation, validation, stopping."""

    seed: int = setting(1, "Random seed (initialisation, batch order, dropout).")
    batch_tokens: int = setting(4096, "Target tokens per batch (before accumulation).", at_least=1)
    accum_steps: int = setting(1, "Batches whose gradients are summed into one update.", at_least=1)
    max_src_len: int = setting(256, "Longer training pairs are left out at load time (source tokens).", at_least=1)
    max_tgt_len: int = setting(256, "Longer training pairs are left out at load time (target tokens).", at_least=1)
    label_smoothing: float = setting(0.1, "Label smoothing of the cross-entropy.", at_least=0, below=1)
    optimizer: Literal["adam", "adamw"] = setting("adamw", "adamw decouples the weight decay from the gradient.")
    lr: float = setting(1e-3, "Peak learning rate, reached at the end of the warm-up.", above=0)
    betas: tuple[float, float] = setting((0.9, 0.98), "Adam's two moment decay rates.", at_least=0, below=1)
    eps: float = setting(1e-9, "Adam's epsilon.", above=0)
    weight_decay: float = setting(0.0, "Weight decay.", at_least=0)
    schedule: Literal["inverse_sqrt", "linear", "cosine"] = setting(
        "inverse_sqrt", "Learning-rate decay after a linear warm-up."
    )
    warmup_steps: int = setting(500, "Steps of linear warm-up from 0 to --lr.", at_least=0)
    min_lr: float = setting(0.0, "Floor of the linear and cosine decay.", at_least=0)
    clip_norm: float = setting(1.0, "Clip the gradient norm to this; 0 disables clipping.", at_least=0)
    skip_nonfinite: bool = setting(
        False, "Skip the update of a batch whose loss or gradient is NaN or inf instead of stopping."
    )
    max_steps: int = setting(2000, "Stop after this many updates; 0: no limit.", at_least=0)
    max_epochs: int = setting(0, "Stop after this many passes over the data; 0: no limit.", at_least=0)
    max_minutes: float = setting(0.0, "Stop after this many minutes of training; 0: no limit.", at_least=0)
    log_every: int = setting(20, "Log the training loss every this many steps.", at_least=1)
    valid_every: int = setting(200, "Validate (and checkpoint) every this many steps.", at_least=1)
    valid_bleu: bool = setting(True, "Greedy-decode the validation set and compute sacreBLEU.")
    valid_max_sentences: int = setting(0, "Validate on the first this many sentences; 0: all.", at_least=0)
    early_stop_metric: Literal["bleu", "loss", "ppl"] = setting(
        "bleu", "What the best checkpoint and early stopping go by; bleu needs --valid-bleu (without it: loss)."
    )
    patience: int = setting(0, "Validations without improvement before stopping; 0 disables.", at_least=0)
    keep_last: int = setting(5, "Checkpoints kept besides the best.", at_least=1)
    precision: Literal["fp32", "bf16"] = setting("fp32", "bf16: autocast to bfloat16 where it is safe.")

    def __post_init__(self) -> None:
        check(
            self,
            [
                (
                    self.schedule == "inverse_sqrt" or self.max_steps > 0,
                    lambda k: (
                        f"{said(k, 'schedule', self.schedule)} decays over {k('max_steps')}, which is 0 (no "
                        f"limit); set {k('max_steps')} or use {said(k, 'schedule', 'inverse_sqrt')}"
                    ),
                ),
                (
                    self.early_stop_metric != "bleu" or self.valid_bleu,
                    lambda k: (
                        "early_stop_metric = 'bleu' needs valid_bleu = true (BLEU is not measured without it); "
                        "set early_stop_metric = 'loss' (--early-stop-metric loss) or keep valid_bleu on"
                    ),
                ),
            ],
        )


@dataclass(frozen=True)
class DecodeConfig:
    """How to search: beam, length penalty, output length limits."""

    beam_size: int = setting(5, "Beam size; 1 is greedy search.", flag="--beam", at_least=1)
    max_len_a: float = setting(1.2, "Output length limit a * source_length + b: the a.", at_least=0)
    max_len_b: int = setting(10, "Output length limit a * source_length + b: the b.", at_least=0)
    length_penalty: float = setting(
        1.0,
        "GNMT length penalty alpha: score / ((5 + len) / 6) ** alpha; 0 is the raw sum.",
        flag="--lenpen",
        at_least=0,
    )
    normalize: Literal["gnmt", "length"] = setting("gnmt", "gnmt: uses --lenpen; length: score / length.")
    nbest: int = setting(
        1,
        "Print the K best in Moses n-best format, 'i ||| translation ||| F0= log-prob ||| score' "
        "(fewer when the beam finds fewer; an empty line gives one empty entry).",
        at_least=1,
    )
    no_repeat_ngram: int = setting(0, "Never repeat an n-gram of this size; 0 allows repeats.", at_least=0)
    unk_penalty: float = setting(0.0, "Subtract this from the log-probability of <unk>.", at_least=0)
    min_len: int = setting(
        0, "No end of sentence before this many subword tokens (the length limit still ends one).", at_least=0
    )
    batch_tokens: int = setting(4096, "Source tokens per batch (times the beam).", at_least=1)
    split: Literal["sentence", "none"] = setting(
        "sentence",
        "sentence: translate each sentence of a line on its own (all in one batch) and join them back in the "
        "line's spacing; none: each line is one sentence (test sets, scoring). Either way a sentence longer "
        "than the model takes is cut at punctuation or between words, never truncated.",
    )

    def __post_init__(self) -> None:
        check(
            self,
            [
                (
                    self.nbest <= self.beam_size,
                    lambda k: f"{k('nbest')} {self.nbest} needs {k('beam_size')} of at least {self.nbest}",
                )
            ],
        )


@dataclass(frozen=True)
class SamplingConfig:
    """Random sampling instead of search: top-k and/or nucleus (top-p) with a temperature."""

    temperature: float = setting(1.0, "With --sampling: divide the logits by this.", above=0)
    top_k: int = setting(0, "With --sampling: draw from the k most probable tokens; 0 draws from all.", at_least=0)
    top_p: float = setting(
        1.0, "With --sampling: draw from the smallest set holding this much probability.", above=0, at_most=1
    )
    seed: int = setting(1, "With --sampling: random seed (the same seed gives the same output).")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class PrepareConfig:
    """How `nmt prepare` reads, filters and encodes a corpus; recorded in prepare.json."""

    src: str = setting(help="Source language suffix, e.g. en.", short="-s")
    tgt: str = setting(help="Target language suffix, e.g. fr.", short="-t")
    train: str = setting(help="Training corpus: PREFIX (PREFIX.SRC + PREFIX.TGT, optionally .gz) or a .tsv file.")
    valid: str = setting(help="Validation corpus, same forms as --train.")
    tests: tuple[str, ...] = setting(
        (), "Test corpus; repeat for several. Each split is named after its prefix.", flag="--test"
    )
    vocab_size: int = setting(8000, "SentencePiece BPE vocabulary size (per model).")
    joint: bool = setting(True, "One BPE model for both languages, or one per language.", flag="--joint/--separate")
    max_len: int = setting(
        256, "Drop training pairs with more BPE tokens than this on either side; 0 keeps all.", at_least=0
    )
    max_ratio: float = setting(
        0.0, "Drop training pairs whose token-length ratio exceeds this; 0 keeps all.", at_least=0
    )
    drop_empty: bool = setting(True, "Drop training pairs with an empty side.", flag="--drop-empty/--keep-empty")
    dedup: bool = setting(False, "Drop exact duplicate training pairs (the first stays; remembered by a 64-bit hash).")
    # SentencePiece's documentation: a few million sentences are plenty
    spm_sample: int = setting(
        2_000_000, "Train SentencePiece on at most this many sentences, a fixed random sample; 0 uses all."
    )

    def __post_init__(self) -> None:
        check(
            self,
            [
                (
                    self.src != self.tgt,
                    lambda k: f"{k('src')} and {k('tgt')} are both {self.src!r}; give two different languages",
                ),
                (
                    self.vocab_size >= 300,
                    lambda k: (
                        f"{k('vocab_size')} {self.vocab_size} is too small; use at least 300 (bytes and "
                        "specials need 260)"
                    ),
                ),
                (
                    self.spm_sample >= 0,
                    lambda k: f"{k('spm_sample')} {self.spm_sample}: give a number of sentences, or 0 for all",
                ),
            ],
        )


@dataclass(frozen=True)
class Limits:
    """What one request to `nmt serve` may hold and how requests are batched."""

    max_lines: int = setting(
        256,
        "Lines per request (more: 413); also the most lines of one batch, unless one request holds more.",
        at_least=1,
    )
    max_body_bytes: int = setting(1_000_000, "Request body size in bytes (more: 413).", at_least=1)
    max_wait_ms: float = setting(10.0, "Milliseconds to wait for more requests to batch with the first.", at_least=0)
    batch_tokens: int = setting(
        4096, "Source tokens of one batch (estimated: 1 + characters / 4 per line; times the beam).", at_least=1
    )

    def __post_init__(self) -> None:
        check(self)


# the plain field types: whether a value fits, and what the error says it must be
_PLAIN: dict[Any, tuple[Callable[[Any], bool], str]] = {
    bool: (lambda v: isinstance(v, bool), "true or false"),
    int: (lambda v: not isinstance(v, bool) and isinstance(v, int), "an integer"),
    float: (lambda v: not isinstance(v, bool) and isinstance(v, (int, float)), "a number"),
    str: (lambda v: isinstance(v, str), "a string"),
}


def _coerce(value: Any, annotation: Any, name: str) -> Any:
    """Check one value against its field type; ints are accepted where floats are expected."""
    hint = annotation
    origin = typing.get_origin(hint)
    if origin is tuple:
        return _coerce_tuple(value, hint, name)
    if origin in (typing.Union, types.UnionType):
        return value
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            said = str if name.startswith("-") else repr  # as written: `--normalize avg`, `normalize = "avg"`
            raise ConfigError(f"{name} must be {' or '.join(map(said, allowed))}, not {said(value)}")
        return value
    if isinstance(hint, type) and hint in _PLAIN:
        fits, what = _PLAIN[hint]
        if not fits(value):
            raise ConfigError(f"{name} must be {what}, got {value!r}")
        return float(value) if hint is float else value
    return value


def _coerce_tuple(value: Any, hint: Any, name: str) -> tuple[Any, ...]:
    """Check a list against a tuple field type: tuple[X, ...] takes any number of items, tuple[X, Y] exactly two."""
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name} must be a list, got {value!r}")
    args = typing.get_args(hint)
    if len(args) == 2 and args[1] is Ellipsis:  # tuple[str, ...]: any number of items
        return tuple(_coerce(v, args[0], name) for v in value)
    if len(value) != len(args):
        raise ConfigError(f"{name} must have {len(args)} items, got {len(value)}")
    return tuple(_coerce(v, a, name) for v, a in zip(value, args))


def from_dict(cls: type[ConfigT], data: dict[str, Any], where: str = "config", spell: Spell = str) -> ConfigT:
    """Build a config dataclass from a dict, rejecting unknown keys and wrong types; a value the config refuses
    is named by `spell` (the command line passes its flags) after `where` (none when empty)."""
    hints = typing.get_type_hints(cls)
    known = sorted(f.name for f in fields(cls))
    unknown = sorted(set(data) - set(known))
    prefix = f"{where}: " if where else ""
    if unknown:  # a flag's word ('beam' for --beam) is pointed at its field: one name per setting
        flags = {f.name: f.metadata.get("flag") for f in fields(cls)}
        aliases = {flag.split("/")[0].lstrip("-").replace("-", "_"): name for name, flag in flags.items() if flag}
        raise ConfigError(prefix + "; ".join(_unknown(key, known, str, aliases=aliases) for key in unknown))
    values = {k: _coerce(v, hints[k], f"{prefix}{spell(k)}") for k, v in data.items()}
    try:
        return cls(**values)
    except SettingError as e:
        raise ConfigError(prefix + e.spelt(spell)) from e


def parse_flag(cls: type, name: str, text: str, flag: str) -> Any:
    """The text of flag `flag` as a value of field `name`: a TOML value ('5', '1e-3', '[0.9, 0.98]'; a tuple
    also as '0.9,0.98'), a string or choice as written. A wrong type is an error naming the flag."""
    hint = typing.get_type_hints(cls)[name]
    if hint is str or typing.get_origin(hint) is Literal:
        return _coerce(text, hint, flag)
    value = parse_value(text)
    if typing.get_origin(hint) is tuple and isinstance(value, str):
        value = [parse_value(item) for item in value.split(",")]
    return _coerce(value, hint, flag)


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON/TOML-friendly dict (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


TABLES: dict[str, type] = {"model": ModelConfig, "train": TrainConfig, "decode": DecodeConfig}  # of a TOML config


def table_of(cls: type) -> str | None:
    """The TOML table a config is read from ('model' for ModelConfig), or None for one that has none."""
    return next((table for table, of in TABLES.items() if of is cls), None)


def to_toml(
    tables: Mapping[str, Mapping[str, Any]], commented: Mapping[str, Mapping[str, Any]] | None = None, note: str = ""
) -> str:
    """TOML text of plain values (bool, int, float, str and lists of them), one table each; `commented` keys are
    written commented out at the end of their table, with `note` after them (values a reader cannot set)."""
    blocks = []
    for table, values in tables.items():
        lines = [f"[{table}]", *(f"{key} = {_toml_value(value)}" for key, value in values.items())]
        lines += [f"# {key} = {_toml_value(value)}{note}" for key, value in (commented or {}).get(table, {}).items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # Python writes floats as TOML reads them: 0.001, 1e-09, inf
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, (list, tuple)):
        return f"[{', '.join(map(_toml_value, value))}]"
    raise TypeError(f"no TOML for {value!r}")


def parse_value(text: str) -> Any:
    """Parse a command-line override value as a TOML value, falling back to a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def load_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file with `[model]`, `[train]` and `[decode]` tables (and `[recipe]`, which only the
    recipe pipeline reads)."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: no such config file") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from e
    unknown = sorted(set(data) - {"model", "train", "decode", "recipe"})
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {', '.join(unknown)}; use [model], [train] and [decode]")
    return data


def section_of(key: str) -> str:
    """Which table ('model', 'train' or 'decode') an option name belongs to."""
    for section, cls in TABLES.items():
        if key in {f.name for f in fields(cls)}:
            return section
    known = [f.name for cls in TABLES.values() for f in fields(cls)]
    raise ConfigError(_unknown(key, known, lambda k: f"--{k.replace('_', '-')}", list_known=False))


def _unknown(
    key: str,
    known: list[str],
    spell: Callable[[str], str],
    list_known: bool = True,
    aliases: dict[str, str] | None = None,
) -> str:
    """'unknown option KEY; did you mean CLOSE?' (or the known ones), spelt as the user writes them. `aliases`:
    names that mean a known one (a flag's word for its field), suggested before any close spelling."""
    aliases = aliases or {}
    close = [aliases.get(name, name) for name in difflib.get_close_matches(key, [*aliases, *known], n=1)]
    hint = (
        f"; did you mean {spell(close[0])}?"
        if close
        else (f"; known: {', '.join(sorted(map(spell, known)))}" if list_known else "")
    )
    return f"unknown option {spell(key)}{hint}"


def check_table(cls: type, data: dict[str, Any], where: str, spell: Callable[[str], str] = str) -> None:
    """Unknown keys and wrong types of one TOML table or one set of flags, named as the user wrote them:
    check_table(ModelConfig, flags, "", flag_name) says `--d-model must be an integer, got 'abc'`;
    check_table(ModelConfig, toml["model"], "run.toml [model]") says `run.toml [model]: d_model must be ...`."""
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    prefix = f"{where}: " if where else ""
    for key, value in data.items():
        if key not in known:
            raise ConfigError(prefix + _unknown(key, known, spell))
        _coerce(value, hints[key], f"{prefix}{spell(key)}")
