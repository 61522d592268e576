"""One setting's declaration and its checks, for the config classes of nmt.config: `setting(...)` declares a
field (default, help sentence, flag, bounds), `check` enforces the bounds and a config's own rules when it is
made, and `SettingError` says what is wrong in the reader's words (`--beam 0` on the command line, `beam_size 0`
in TOML and the API). Knows no config in particular."""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Iterable
from dataclasses import MISSING, fields
from typing import Any, Literal

from nmt.errors import ConfigError

Spell = Callable[[str], str]  # a field's name as the reader wrote it: 'beam_size' in TOML, '--beam' on the command line


def setting(
    default: Any = MISSING,
    help: str = "",  # noqa: A002 - the word every command-line library uses
    *,
    flag: str | None = None,
    short: str | None = None,
    at_least: float | None = None,
    above: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
    command_line: bool = True,
) -> Any:
    """A config field with what a user needs to know of it: one help sentence, its bounds (checked when the
    config is made) and, where the flag is not --FIELD-NAME, the flag ('--beam', or '--joint/--separate' for a
    boolean whose 'off' has its own word). command_line=False: the field has no flag (the data sets it)."""
    bounds = {"at_least": at_least, "above": above, "below": below, "at_most": at_most}
    metadata = {
        "help": help,
        "flag": flag,
        "short": short,
        "bounds": {k: v for k, v in bounds.items() if v is not None},
        "command_line": command_line,
    }
    return dataclasses.field(default=default, metadata=metadata)


class SettingError(ConfigError):
    """A value its config refuses. The message is made by `say`, given how to name each field, so that the
    command line can say `--beam 0: ...` where TOML and the API say `beam_size 0: ...` (`str()` is the latter)."""

    def __init__(self, say: str | Callable[[Spell], str]) -> None:
        self.say = say
        super().__init__(self.spelt(str))

    def spelt(self, spell: Spell) -> str:
        return self.say if isinstance(self.say, str) else self.say(spell)


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def said(spell: Spell, name: str, value: Any) -> str:
    """A setting and its value as the reader writes them: `--schedule cosine`, or `schedule = 'cosine'`."""
    said = spell(name)
    return f"{said} {value}" if said.startswith("-") else f"{said} = {value!r}"


def _shown(value: Any) -> str:
    """A refused value as it was most likely written: `--lr 0`, not 0.0 (the float it became); a pair as a list."""
    if isinstance(value, tuple):
        return f"[{', '.join(map(_shown, value))}]"
    return _number(value) if isinstance(value, float) and math.isfinite(value) else str(value)


def _out_of_bounds(value: Any, bounds: dict[str, float]) -> str | None:
    """What is wrong with `value` (each item of a tuple) under `bounds`, or None."""
    if not bounds:
        return None
    low = bounds.get("at_least", bounds.get("above", -math.inf))
    high = bounds.get("at_most", bounds.get("below", math.inf))
    closed_low, closed_high = "at_least" in bounds, "at_most" in bounds
    items = value if isinstance(value, tuple) else (value,)
    if all((x >= low if closed_low else x > low) and (x <= high if closed_high else x < high) for x in items):
        return None
    if high == math.inf:
        return f"must be at least {_number(low)}" if closed_low else f"must be > {_number(low)}"
    if low == -math.inf:
        return f"must be at most {_number(high)}" if closed_high else f"must be < {_number(high)}"
    if closed_low and closed_high:
        return f"must be from {_number(low)} to {_number(high)}"
    return f"must be in {'[' if closed_low else '('}{_number(low)}, {_number(high)}{']' if closed_high else ')'}"


def _field_error(name: str, what: str) -> SettingError:
    """'NAME WHAT', the name spelt as the reader wrote it."""
    return SettingError(lambda k: f"{k(name)}{what}")


def check(config: Any, rules: Iterable[tuple[bool, str | Callable[[Spell], str]]] = ()) -> None:
    """Every config checks itself when it is made, in this one place: each Literal field holds one of its
    values, each field keeps to its declared bounds, then each rule (condition, what is wrong: a message, or
    one that names the fields through the speller it is given) holds. `from_dict` adds where the values came
    from."""
    hints = typing.get_type_hints(type(config))
    for f in fields(config):
        allowed = typing.get_args(hints[f.name]) if typing.get_origin(hints[f.name]) is Literal else ()
        value = getattr(config, f.name)
        if allowed and value not in allowed:
            raise _field_error(f.name, f" must be {' or '.join(map(repr, allowed))}, not {value!r}")
        problem = _out_of_bounds(value, f.metadata.get("bounds", {}))
        if problem:
            raise _field_error(f.name, f" {_shown(value)}: {problem}")
    for ok, say in rules:
        if not ok:
            raise SettingError(say)
