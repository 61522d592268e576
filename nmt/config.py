"""Typed, frozen settings for every stage, loaded from TOML and overridden by flags.
Knows nothing about torch or the other modules: plain dataclasses in, plain dicts out."""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from nmt.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

ConfigT = TypeVar("ConfigT", bound="DataclassInstance")  # a config dataclass


def _check(config: Any, rules: Iterable[tuple[bool, str]] = ()) -> None:
    """Every config checks itself when it is made: each Literal field holds one of its values, then each rule
    (condition, what is wrong, naming the TOML key) holds. `from_dict` adds where the values came from."""
    hints = typing.get_type_hints(type(config))
    for f in fields(config):
        allowed = typing.get_args(hints[f.name]) if typing.get_origin(hints[f.name]) is Literal else ()
        value = getattr(config, f.name)
        if allowed and value not in allowed:
            raise ConfigError(f"{f.name} must be {' or '.join(map(repr, allowed))}, not {value!r}")
    for ok, message in rules:
        if not ok:
            raise ConfigError(message)


Architecture = Literal["transformer"]


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the encoder-decoder Transformer; saved beside the weights."""

    arch: Architecture = "transformer"  # the model class (nmt.model.build_model); only one so far
    src_vocab_size: int = 8000
    tgt_vocab_size: int = 8000
    d_model: int = 256
    n_heads: int = 4
    enc_layers: int = 3
    dec_layers: int = 3
    ffn_dim: int = 1024
    dropout: float = 0.1  # on sublayer outputs and embeddings, as in the paper
    attn_dropout: float = 0.0  # on attention weights
    act_dropout: float = 0.0  # inside the feed-forward, after the activation
    activation: Literal["relu", "gelu"] = "relu"
    pre_norm: bool = True  # pre-norm: deep stacks train stably with a short warm-up
    share_all_embeddings: bool = True  # source, target and output share one matrix (joint vocab)
    tie_output: bool = True  # target embedding and output projection share one matrix
    max_positions: int = 1024
    pad_id: int = 0

    def __post_init__(self) -> None:
        _check(
            self,
            [
                (
                    min(
                        self.src_vocab_size,
                        self.tgt_vocab_size,
                        self.d_model,
                        self.n_heads,
                        self.enc_layers,
                        self.dec_layers,
                        self.ffn_dim,
                        self.max_positions,
                    )
                    >= 1,
                    "vocabulary sizes, d_model, n_heads, enc_layers, dec_layers, ffn_dim and max_positions must be "
                    ">= 1",
                ),
                (
                    self.d_model % self.n_heads == 0,
                    f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})",
                ),
                (
                    all(0.0 <= p < 1.0 for p in (self.dropout, self.attn_dropout, self.act_dropout)),
                    "dropout, attn_dropout and act_dropout must be in [0, 1)",
                ),
                (
                    not self.share_all_embeddings or self.src_vocab_size == self.tgt_vocab_size,
                    "share_all_embeddings needs a joint vocabulary (equal source and target sizes)",
                ),
            ],
        )


@dataclass(frozen=True)
class TrainConfig:
    """How to train: batching, optimisation, validation, stopping."""

    seed: int = 1
    batch_tokens: int = 4096  # target tokens per batch (before accumulation)
    accum_steps: int = 1
    max_src_len: int = 256  # longer training pairs are filtered out at load time
    max_tgt_len: int = 256
    label_smoothing: float = 0.1
    optimizer: Literal["adam", "adamw"] = "adamw"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-9
    weight_decay: float = 0.0
    schedule: Literal["inverse_sqrt", "linear", "cosine"] = "inverse_sqrt"  # after a linear warm-up
    warmup_steps: int = 500
    min_lr: float = 0.0  # floor for linear/cosine decay
    clip_norm: float = 1.0  # 0 disables clipping
    skip_nonfinite: bool = False  # skip the update of a batch whose loss or gradient is NaN/inf instead of stopping
    max_steps: int = 2000
    max_epochs: int = 0  # 0: no limit
    max_minutes: float = 0.0  # 0: no limit
    log_every: int = 20
    valid_every: int = 200
    valid_bleu: bool = True  # greedy-decode the validation set and compute sacreBLEU
    valid_max_sentences: int = 0  # 0: the whole validation set
    early_stop_metric: Literal["bleu", "loss", "ppl"] = "bleu"  # bleu needs valid_bleu
    patience: int = 0  # validations without improvement before stopping; 0 disables
    keep_last: int = 5
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast

    def __post_init__(self) -> None:
        _check(
            self,
            [
                (
                    min(
                        self.batch_tokens,
                        self.accum_steps,
                        self.max_src_len,
                        self.max_tgt_len,
                        self.log_every,
                        self.valid_every,
                        self.keep_last,
                    )
                    >= 1,
                    "batch_tokens, accum_steps, max_src_len, max_tgt_len, log_every, valid_every and keep_last must "
                    "be >= 1",
                ),
                (
                    min(
                        self.warmup_steps,
                        self.max_steps,
                        self.max_epochs,
                        self.max_minutes,
                        self.valid_max_sentences,
                        self.patience,
                        self.weight_decay,
                        self.min_lr,
                        self.clip_norm,
                    )
                    >= 0,
                    "warmup_steps, max_steps, max_epochs, max_minutes, valid_max_sentences, patience, weight_decay, "
                    "min_lr and clip_norm must be >= 0",
                ),
                (0.0 <= self.label_smoothing < 1.0, f"label_smoothing must be in [0, 1), not {self.label_smoothing}"),
                (self.lr > 0 and self.eps > 0, "lr and eps must be > 0"),
                (all(0.0 <= b < 1.0 for b in self.betas), f"betas must be in [0, 1), not {list(self.betas)}"),
                (
                    self.schedule == "inverse_sqrt" or self.max_steps > 0,
                    f"schedule = {self.schedule!r} decays over max_steps, which is 0 (no limit); set max_steps "
                    "(--max-steps N) or use schedule = 'inverse_sqrt'",
                ),
                (
                    self.early_stop_metric != "bleu" or self.valid_bleu,
                    "early_stop_metric = 'bleu' needs valid_bleu = true (BLEU is not measured without it); set "
                    "early_stop_metric = 'loss' (--early-stop-metric loss) or keep valid_bleu on",
                ),
            ],
        )


@dataclass(frozen=True)
class DecodeConfig:
    """How to search: beam, length penalty, output length limits."""

    beam_size: int = 5
    max_len_a: float = 1.2  # max output length = a * src_len + b
    max_len_b: int = 10
    length_penalty: float = 1.0  # GNMT alpha; 0 disables
    normalize: Literal["gnmt", "length"] = "gnmt"  # gnmt: length penalty alpha; length: plain average
    nbest: int = 1
    no_repeat_ngram: int = 0  # forbid repeating any n-gram of this size (0: off)
    unk_penalty: float = 0.0  # subtracted from the log-probability of <unk>
    min_len: int = 0  # no end of sentence before this many tokens
    batch_tokens: int = 4096

    def __post_init__(self) -> None:
        _check(
            self,
            [
                (self.beam_size >= 1 and self.batch_tokens >= 1, "beam_size and batch_tokens must be >= 1"),
                (
                    1 <= self.nbest <= self.beam_size,
                    f"need 1 <= nbest <= beam_size, got nbest={self.nbest}, beam_size={self.beam_size}",
                ),
                (
                    min(
                        self.max_len_a,
                        self.max_len_b,
                        self.length_penalty,
                        self.no_repeat_ngram,
                        self.unk_penalty,
                        self.min_len,
                    )
                    >= 0,
                    "max_len_a, max_len_b, length_penalty, no_repeat_ngram, unk_penalty and min_len must be >= 0",
                ),
            ],
        )


@dataclass(frozen=True)
class SamplingConfig:
    """Random sampling instead of search: top-k and/or nucleus (top-p) with a temperature."""

    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k cut
    top_p: float = 1.0  # 1.0: no nucleus cut
    seed: int = 1

    def __post_init__(self) -> None:
        _check(
            self,
            [
                (self.temperature > 0, f"temperature must be > 0, not {self.temperature}"),
                (
                    self.top_k >= 0 and 0.0 < self.top_p <= 1.0,
                    f"top_k must be >= 0 and top_p in (0, 1], not {self.top_k} and {self.top_p}",
                ),
            ],
        )


def _coerce(value: Any, annotation: Any, name: str) -> Any:
    """Check one value against its field type; ints are accepted where floats are expected."""
    hint = annotation
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        args = typing.get_args(hint)
        if len(value) != len(args):
            raise ConfigError(f"{name} must have {len(args)} items, got {len(value)}")
        return tuple(_coerce(v, a, name) for v, a in zip(value, args))
    if origin in (typing.Union, types.UnionType):
        return value
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{name} must be {' or '.join(map(repr, allowed))}, not {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[ConfigT], data: dict[str, Any], where: str = "config") -> ConfigT:
    """Build a config dataclass from a dict, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    values = {k: _coerce(v, hints[k], f"{where}: {k}") for k, v in data.items()}
    try:
        return cls(**values)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON/TOML-friendly dict (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


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
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    unknown = sorted(set(data) - {"model", "train", "decode", "recipe"})
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {', '.join(unknown)}; use [model], [train] and [decode]")
    return data


def section_of(key: str) -> str:
    """Which table ('model', 'train' or 'decode') an option name belongs to."""
    for section, cls in (("model", ModelConfig), ("train", TrainConfig), ("decode", DecodeConfig)):
        if key in {f.name for f in fields(cls)}:
            return section
    known = [f.name for cls in (ModelConfig, TrainConfig, DecodeConfig) for f in fields(cls)]
    raise ConfigError(_unknown(key, known, lambda k: f"--{k.replace('_', '-')}", list_known=False))


def _unknown(key: str, known: list[str], spell: Callable[[str], str], list_known: bool = True) -> str:
    """'unknown option KEY; did you mean CLOSE?' (or the known ones), spelt as the user writes them."""
    close = difflib.get_close_matches(key, known, n=1)
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
