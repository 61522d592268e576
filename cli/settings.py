"""Command-line options made from config fields: a setting is declared once, in nmt.config (type, default,
help sentence, bounds, flag), and `@settings(DecodeConfig, ...)` gives a command one option per field.

Typer reads a command's options from its signature, so the decorator writes that signature: the command's
own parameters, with its `settings` parameter replaced by the generated options. The command then receives a
`Settings`: the values given on the command line, and how to make a config from them (checked by the config
itself; a refused value is named by the flag the user typed). Knows no config in particular, and no model."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer

from nmt.config import from_dict, parse_flag, table_of

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C")
Spec = type | tuple[type, tuple[str, ...]]  # a config class (every field), or a class and the fields to offer
# Help metavars, for every command (nmt_cli.main uses these too): a type as click has always written it (Typer 0.2x
# writes <int>, <path>, <list[Path]>...), and a choice as click writes one: [text|jsonl]
METAVARS = {int: "INTEGER", float: "FLOAT", str: "TEXT", Path: "PATH"}
_CONTEXT = "settings_context"  # the parameter through which Typer hands over the click context, if the command has none


def flag_of(field: Field) -> str:
    """The field's flag as users type it: its declared flag (the first name of '--joint/--separate'), or
    --FIELD-NAME."""
    return (field.metadata.get("flag") or f"--{field.name.replace('_', '-')}").split("/")[0]


def offered(spec: Spec) -> tuple[type, list[Field]]:
    """The config class of a spec and the fields a command offers as options (those that have a flag)."""
    cls, names = spec if isinstance(spec, tuple) else (spec, None)
    return cls, [f for f in fields(cls) if f.metadata.get("command_line", True) and (names is None or f.name in names)]


class Settings:
    """What a command was given for its configs: `given(cls)` holds only the values typed on the command line
    (a --config file or a run's own config fills the rest); `make(cls, base)` builds the config."""

    def __init__(self, given: dict[type, dict[str, Any]], flags: dict[type, dict[str, str]]) -> None:
        self._given, self._flags = given, flags

    def given(self, cls: type) -> dict[str, Any]:
        return dict(self._given.get(cls, {}))

    def flag(self, cls: type) -> Callable[[str], str]:
        """Each field of `cls` by its flag (a field without one by its name), for the library's messages."""
        flags = self._flags.get(cls, {})
        return lambda key: flags.get(key, key)

    def make(self, cls: type[C], base: Mapping[str, Any] | None = None) -> C:
        """`cls` from `base` (a checked TOML table) overridden by the flags given. A value the config refuses
        is named as the user wrote it: by its flag, or by its key where it came from `base`."""
        base = dict(base or {})
        given = self.given(cls)
        flags = self._flags.get(cls, {})

        def spell(key: str) -> str:
            return flags[key] if key in flags and (key in given or key not in base) else key

        return typing.cast(C, from_dict(cls, {**base, **given}, where="", spell=spell))  # type: ignore[type-var]


FROM_FLAGS = Settings({}, {})  # the default of a command's `settings` parameter, which @settings fills in


def _option(cls: type, field: Field, hint: Any) -> inspect.Parameter:
    """One field as a keyword parameter whose Annotated type carries its typer.Option."""
    meta = field.metadata
    flag = flag_of(field)
    names = meta.get("flag") or flag
    if hint is bool and "/" not in names:
        names = f"{flag}/--no-{flag[2:]}"
    declared = [names, *([meta["short"]] if meta.get("short") else [])]
    # the help section: the TOML table the field is read from ('[model]'), none for a config without one
    table = table_of(cls)
    options: dict[str, Any] = {"help": meta.get("help") or None, "rich_help_panel": table and f"[{table}]"}
    default = field.default
    annotation: Any
    if hint is bool or hint is str:
        annotation = hint
    elif typing.get_origin(hint) is tuple and typing.get_args(hint)[-1] is Ellipsis:  # repeated: --test a --test b
        annotation, default = list[str] | None, None
        options["show_default"] = False
    else:
        choices = typing.get_args(hint) if typing.get_origin(hint) is Literal else ()
        items = typing.get_args(hint) if typing.get_origin(hint) is tuple else ()
        annotation = str
        options["parser"] = functools.partial(_parse, cls, field.name, flag)
        if choices:  # [relu|gelu], completed; a pair: FLOAT,FLOAT; else as click writes a type: INTEGER, FLOAT
            options.update(choice(choices))
        elif items:
            options["metavar"] = ",".join(METAVARS[t] for t in items)
        else:
            options["metavar"] = METAVARS[hint]
    return inspect.Parameter(
        field.name,
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[annotation, typer.Option(*declared, **options)],
        default=inspect.Parameter.empty if default is MISSING else default,
    )


def choices_metavar(choices: Iterable[str]) -> str:
    """'[text|jsonl]': how help shows an option that takes one of a few words."""
    return f"[{'|'.join(choices)}]"


def choice(choices: Iterable[str]) -> dict[str, Any]:
    """The typer.Option arguments of a text option that takes one of `choices` (the command checks the value,
    in its own words): help shows them, `[text|jsonl]`, and shell completion offers them."""
    words = tuple(choices)
    return {"metavar": choices_metavar(words), "autocompletion": _completer(words)}


def _completer(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    """Shell completion of a choice: the choices that start as typed."""

    def complete(incomplete: str) -> list[str]:
        return [word for word in choices if word.startswith(incomplete)]

    return complete


def _parse(cls: type, name: str, flag: str, text: Any) -> Any:
    """click hands over the typed text, and the default (already a value) when the flag is not given."""
    return parse_flag(cls, name, text, flag) if isinstance(text, str) else text


def settings(*specs: Spec) -> Callable[[F], F]:
    """Give the decorated command one option per field of each config (or of the fields named), in place
    of its `settings: Settings` parameter, which then receives what was given."""

    def decorate(func: F) -> F:
        signature = inspect.signature(func, eval_str=True)
        parameters, generated, flags = _parameters(func.__name__, signature, specs)
        context = next((p.name for p in parameters if p.annotation is typer.Context), None)
        if context is None:
            parameters.insert(0, inspect.Parameter(_CONTEXT, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context))

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            ctx = kwargs[context] if context else kwargs.pop(_CONTEXT)
            given = _given(kwargs, ctx, generated)
            return func(**kwargs, settings=Settings(given, flags))

        command.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        return typing.cast(F, command)

    return decorate


def _parameters(
    command: str, signature: inspect.Signature, specs: tuple[Spec, ...]
) -> tuple[list[inspect.Parameter], dict[str, tuple[type, Field]], dict[type, dict[str, str]]]:
    """The command's parameters (keyword-only) with `settings` replaced by one option per field; which config
    each generated option belongs to; and each config's flags by field name."""
    generated: dict[str, tuple[type, Field]] = {}
    flags: dict[type, dict[str, str]] = {}
    parameters: list[inspect.Parameter] = []
    for parameter in signature.parameters.values():
        if parameter.name != "settings":
            parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))
            continue
        for spec in specs:
            cls, chosen = offered(spec)
            hints = typing.get_type_hints(cls)
            for field in chosen:
                if field.name in generated or field.name in signature.parameters:
                    raise TypeError(f"{command}: two options named {field.name}")
                generated[field.name] = (cls, field)
                flags.setdefault(cls, {})[field.name] = flag_of(field)
                parameters.append(_option(cls, field, hints[field.name]))
    return parameters, generated, flags


def _given(
    kwargs: dict[str, Any], ctx: typer.Context, generated: dict[str, tuple[type, Field]]
) -> dict[type, dict[str, Any]]:
    """Take the generated options out of `kwargs`; those given on the command line (not defaults), by config."""
    given: dict[type, dict[str, Any]] = {}
    for name, (cls, _) in generated.items():
        value = kwargs.pop(name)
        source = ctx.get_parameter_source(name)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            given.setdefault(cls, {})[name] = tuple(value) if isinstance(value, list) else value
    return given
