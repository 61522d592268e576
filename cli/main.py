"""The `nmt` application: one sub-command per module in this package."""

from __future__ import annotations

import difflib
import enum
import os
import sys
import traceback
import typing
from pathlib import Path
from typing import Annotated, Any

import typer
from nmt_cli.settings import METAVARS, choices_metavar
from typer.completion import Shells, install_callback, show_callback
from typer.core import TyperArgument, TyperCommand, TyperGroup

import nmt
from nmt.errors import NmtError

# click's exception classes, whether Typer vendors click (0.2x) or depends on it
_CLICK = {cls.__name__: cls for cls in typer.BadParameter.__mro__}
UsageError, ClickException = _CLICK["UsageError"], _CLICK["ClickException"]


class Command(TyperCommand):
    """A command whose help reads as click's: `--beam INTEGER`, `--metrics [bleu|chrf|ter]...`, arguments by their
    upper-case name; the options read from a config file's tables come in a section per table, after the command's
    own: `[model] options:`, `[train] options:`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        hints = typing.get_type_hints(self.callback) if self.callback else {}
        self.choices: dict[str, set[str]] = {}  # options that take several choices: name → the choices
        for param in self.params:
            element = _element(hints.get(param.name or ""))
            is_enum = isinstance(element, type) and issubclass(element, enum.Enum)
            if is_enum and getattr(param, "multiple", False):
                self.choices[param.name or ""] = {str(member.value) for member in element}
            if is_enum and param.metavar is None:  # [bleu|chrf|ter], and '...' where it is repeated
                param.metavar = choices_metavar(str(m.value) for m in element) + ("..." if param.multiple else "")
            if isinstance(param, TyperArgument):
                param.metavar = param.metavar or (param.name or "").upper()
                param.display_type_rich = lambda ctx: None  # the name says it all: no '<list[Path]>' after it
                # the usage line as click writes it, under Typer 0.28 and 0.29 alike (0.28 writes '{RUN_DIR}' and
                # drops the '...' of a metavar'd list): `nmt average RUN_DIR`, `nmt plot RUN_DIR...`, `[HYP]...`
                piece = param.metavar if param.required else f"[{param.metavar}]"
                piece += "..." if param.nargs != 1 else ""
                param.get_usage_pieces = lambda ctx, piece=piece: [piece]
            elif param.metavar is None and not getattr(param, "is_flag", False):
                param.metavar = METAVARS.get(_element(hints.get(param.name or "")))

    def format_options(self, ctx: Any, formatter: Any) -> None:
        """Arguments, the command's own options, then a section per config table its options are read from
        (`[model] options:`), in the order the options come: `nmt train --help` reads as its TOML file does."""
        sections: dict[str, list[tuple[str, str]]] = {"Arguments": [], "Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            table = getattr(param, "rich_help_panel", None)  # nmt_cli.settings puts the table there: '[model]'
            if record is not None:
                heading = "Arguments" if param.param_type_name == "argument" else "Options"
                sections.setdefault(f"{table} options" if table else heading, []).append(record)
        # one column for the option names in every section (click fits each list to its own, up to 30)
        width = min(max((len(name) for rows in sections.values() for name, _ in rows), default=0), 30)
        for heading, rows in sections.items():
            if rows:
                with formatter.section(heading):
                    formatter.write_dl([(name.ljust(width), text) for name, text in rows])

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """An option that takes several choices also takes them space-separated, as sacreBLEU's
        `-m bleu chrf` does: `--metrics bleu chrf` is read as `--metrics bleu --metrics chrf`. A switch with an
        'off' flag also takes a word, as a TOML value reads: `--pre-norm false` (or `=false`) is `--no-pre-norm`.
        An option that takes one value, given twice, is an error (click would keep the last one silently)."""
        args = _switch_words(self.params, args)
        self._refuse_repeats(ctx, args)
        for param in self.params:
            choices = self.choices.get(param.name or "")
            if not choices:
                continue
            expanded: list[str] = []
            i = 0
            while i < len(args):
                arg = args[i]
                expanded.append(arg)
                i += 1
                if arg == "--":
                    expanded += args[i:]
                    break
                if arg in param.opts and i < len(args):
                    expanded.append(args[i])  # its own value
                    i += 1
                elif not any(arg.startswith(f"{opt}=") for opt in param.opts):
                    continue
                while i < len(args) and args[i] in choices:  # the choices after it
                    expanded += [param.opts[0], args[i]]
                    i += 1
            args = expanded
        return self._parse_in(ctx, args)

    def _refuse_repeats(self, ctx: Any, args: list[str]) -> None:
        """A one-line error for a repeated option (see `_repeated`) or a URL where a path goes; not while
        completing, nor when --help asks."""
        if ctx.resilient_parsing or any(arg in self.get_help_option_names(ctx) for arg in args):
            return
        valued, switches = _option_names(self.params)
        typed = _typed_options(args, valued, switches)
        problem = _repeated(valued, switches, [name for name, _ in typed]) or _url(valued, typed)
        if problem:
            raise Plain(problem, ctx)

    def _parse_in(self, ctx: Any, args: list[str]) -> list[str]:
        """click's parsing, its errors said as this command's: its parser raises some (`--resume` without its
        value) without a context, which would name `nmt` and `nmt --help` instead of `nmt train`."""
        try:
            return super().parse_args(ctx, args)
        except UsageError as e:
            if e.ctx is None:
                e.ctx, e.cmd = ctx, self
            raise


class Plain(UsageError):
    """A usage error that says all there is to say: no '; see `nmt COMMAND --help`' after it."""


# What to add when an option that takes one value is given twice, where the repetition is a habit from elsewhere
REPEATED_HINTS = {
    "model": "one model: nmt has no ensembles",  # fairseq, OpenNMT and Marian ensemble repeated models
    "input_file": "one input file: join several with cat",
}


def _option_names(params: list[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The options that take one value, and the switches (flags), by each of their names."""
    valued, switches = {}, {}
    for param in params:
        if getattr(param, "is_flag", False):
            switches.update({name: param for name in [*param.opts, *param.secondary_opts]})
        elif param.param_type_name == "option" and not param.multiple and not getattr(param, "count", False):
            valued.update({name: param for name in param.opts})
    return valued, switches


def _repeated(valued: dict[str, Any], switches: dict[str, Any], typed: list[str]) -> str | None:
    """What is wrong when an option that takes one value is given more than once (`-m A -m B`), or an on/off
    switch both ways (`--joint --separate`): the flags as typed. A switch repeated the same way
    (`--int8 --int8`) says the same thing twice, and passes."""
    by_param: dict[Any, list[str]] = {}  # parameter → its flags as typed, in order
    for name in typed:
        by_param.setdefault(valued.get(name) or switches[name], []).append(name)
    for param, names in by_param.items():
        shown = list(dict.fromkeys(names))
        if names[0] in valued and len(names) > 1:
            if not any(name.startswith("--") for name in shown):  # -m: say what it is
                shown += [next((o for o in param.opts if o.startswith("--")), param.opts[0])]
            times = "twice" if len(names) == 2 else f"{len(names)} times"
            return f"{'/'.join(shown)} given {times}; {REPEATED_HINTS.get(param.name, 'give it once')}"
        if {*names} & {*param.opts} and {*names} & {*param.secondary_opts}:
            return f"{' and '.join(shown)} both given; choose one"
    return None


def _url(valued: dict[str, Any], typed: list[tuple[str, str | None]]) -> str | None:
    """`-m hf://x/y`: a path option given a URL (or a hub name) that is no local path, said as typed (a Path
    would make it 'hf:/x/y')."""
    for name, value in typed:
        # by the type's name: click's Path, or Typer's TyperPath, whether Typer vendors click or not
        is_path = type(valued[name].type).__name__.endswith("Path") if name in valued else False
        if is_path and value and "://" in value and not Path(value).exists():
            return f"{name} {value}: a URL; nmt reads local files and directories (download it first)"
    return None


def _typed_options(args: list[str], valued: dict[str, Any], switches: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The options in `args` as typed, with their values (None for a switch): `--model A`, `--model=A`, `-m A`,
    `-mA`; `-qm A` is `-q` and `-m A`. Up to a `--`."""
    typed: list[tuple[str, str | None]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            break
        name, eq, value = arg.partition("=")
        if name in valued or name in switches:
            if name in valued and not eq:  # its value is the next argument
                value, i = (args[i] if i < len(args) else ""), i + 1
            typed.append((name, value if name in valued else None))
        elif arg.startswith("-") and not arg.startswith("--"):  # short options run together
            shorts, takes_next = _shorts(arg, args[i] if i < len(args) else "", valued, switches)
            typed, i = typed + shorts, i + takes_next
    return typed


def _shorts(
    arg: str, following: str, valued: dict[str, Any], switches: dict[str, Any]
) -> tuple[list[tuple[str, str | None]], bool]:
    """The short options run together in `arg` (`-qm`, `-mA`) with their values, and whether the last one takes
    `following` (the next argument) as its value."""
    typed: list[tuple[str, str | None]] = []
    for j, char in enumerate(arg[1:], start=2):
        short = f"-{char}"
        if short in switches:
            typed.append((short, None))
        elif short in valued:
            attached = arg[j:]
            typed.append((short, attached or following))
            return typed, not attached
        else:
            break
    return typed, False


SWITCH_WORDS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


def _switch_words(params: list[Any], args: list[str]) -> list[str]:
    """`--pre-norm false` → `--no-pre-norm`, `--joint=no` → `--separate`, for each on/off pair of flags."""
    switches = {}
    for param in params:
        if getattr(param, "is_flag", False) and param.secondary_opts:
            for name in param.opts:
                switches[name] = (name, param.secondary_opts[0])
    result: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            result += [arg, *args[i:]]
            break
        name, eq, word = arg.partition("=")
        if name in switches and not eq and i < len(args) and args[i].lower() in SWITCH_WORDS:
            word, i = args[i], i + 1
        if name in switches and word.lower() in SWITCH_WORDS:
            on, off = switches[name]
            result.append(on if SWITCH_WORDS[word.lower()] else off)
        else:
            result.append(arg)
    return result


def _element(hint: Any) -> Any:
    """X from Optional[X], list[X], Optional[list[X]]."""
    while typing.get_args(hint) and hint not in METAVARS:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


class Group(TyperGroup):
    """Usage errors in the house style: one `error: ...` line on stderr and exit code 2, instead of
    click's usage text in a box; a misspelt option gets a 'did you mean'."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """`nmt transalte`: 'no such command 'transalte'; did you mean 'translate'?', one sentence (Typer's
        own suggestion, 'No such command ... . Did you mean ...?', would come before a '; see ...')."""
        try:
            return super().resolve_command(ctx, args)
        except UsageError as e:
            if args and not hasattr(e, "possibilities"):
                e.message = f"No such command {args[0]!r}"
                e.possibilities = [repr(name) for name in difflib.get_close_matches(args[0], list(self.commands))]
            raise

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:  # Typer's --show-completion and --install-completion, which also take a shell's name
            param.help = COMPLETION_HELP.get(param.name, param.help)
        return params

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """`nmt --show-completion zsh` (or `=zsh`) prints zsh's script, whatever the shell running nmt (Typer's
        flags take no value: alone, they detect the shell); `--install-completion fish` installs fish's."""
        for i, arg in enumerate(args):
            if not arg.startswith("-"):
                break  # the command: what follows is its own
            name, eq, shell = arg.partition("=")
            if name in COMPLETION_OPTIONS and not eq and i + 1 < len(args) and not args[i + 1].startswith("-"):
                shell = args[i + 1]
                if shell in self.commands:
                    continue  # `nmt --show-completion translate`: the current shell's, as before
            if name in COMPLETION_OPTIONS and shell:
                if shell not in SHELLS:
                    raise UsageError(f"{name} {shell}: name a shell: {', '.join(SHELLS[:-1])} or {SHELLS[-1]}", ctx)
                param = next(p for p in self.get_params(ctx) if name in p.opts)
                COMPLETION_OPTIONS[name](ctx, param, shell)  # prints or installs, and exits
        return super().parse_args(ctx, args)

    def main(
        self,
        args: Any = None,
        prog_name: Any = None,
        complete_var: Any = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except UsageError as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # `nmt` alone: the help, as before
                e.show()
                sys.exit(e.exit_code)
            path = e.ctx.command_path if e.ctx is not None else "nmt"
            message = e.message.rstrip(".") if type(e).__name__ == "NoSuchOption" else e.format_message().rstrip(".")
            hint = "" if isinstance(e, Plain) else _hint(e, path)
            _error(f"{path}: {message[:1].lower()}{message[1:]}{hint}", e.exit_code)
        except ClickException as e:
            _error(e.format_message(), e.exit_code)
        except NmtError as e:  # a flag's value its setting refuses (nmt_cli.settings), while the line is parsed
            if os.environ.get("NMT_DEBUG") == "1":
                traceback.print_exc(file=sys.stderr)
            _error(str(e), e.exit_code)
        except typer.Abort:
            print("aborted", file=sys.stderr)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _hint(e: Any, path: str) -> str:
    """What follows a usage error: the command that takes an option this one lacks, else click's close
    spellings, else the command's help."""
    owners = _owners(e.option_name, e.ctx.info_name) if type(e).__name__ == "NoSuchOption" and e.ctx else []
    if owners:
        named = [f"`nmt {name}`" for name in owners]
        return f"; it is an option of {named[0] if len(named) == 1 else ', '.join(named[:-1]) + ' and ' + named[-1]}"
    close = sorted(getattr(e, "possibilities", None) or [])
    return f"; did you mean {' or '.join(close)}?" if close else f"; see `{path} --help`"


def _owners(option: str, here: str | None) -> list[str]:
    """The other commands that take `option` (`nmt train --beam 5`: translate and serve do), read from the
    commands themselves; only on this error path, where building every command costs nothing that matters."""
    import typer.main

    group = typer.main.get_command(make_app())
    commands = getattr(group, "commands", {})
    return [
        name
        for name, command in commands.items()
        if name != here and any(option in (*p.opts, *getattr(p, "secondary_opts", [])) for p in command.params)
    ]


SHELLS = tuple(shell.value for shell in Shells)  # the shells Typer writes completion scripts for
COMPLETION_OPTIONS = {"--show-completion": show_callback, "--install-completion": install_callback}
COMPLETION_HELP = {
    "show_completion": "Print the completion script of the current shell, or of the shell named after it "
    f"({', '.join(SHELLS)}), to copy it or customize the installation.",
    "install_completion": "Install completion for the current shell, or for the shell named after it.",
}


def _error(message: str, code: int) -> None:
    from nmt_cli.common import fail

    raise SystemExit(fail(message, code).exit_code)


def _version(value: bool) -> None:
    if value:
        print(f"nmt {nmt.__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Neural machine translation: prepare BPE data, train Transformers, translate, score."""


# The commands in the order of the work: name -> (module in this package, function, short help)
COMMANDS = {
    "prepare": ("prepare", "prepare", "Train BPE on parallel text and write a prepared data directory."),
    "train": ("train", "train", "Train a Transformer on a prepared data directory."),
    "average": ("train", "average", "Average the last checkpoints of a run into a model."),
    "translate": ("translate", "translate", "Translate stdin (or a file), one output line per input line."),
    "score": ("score", "score", "BLEU, chrF and TER (sacreBLEU) of hypothesis files."),
    "export": ("export", "export", "Write a model for CTranslate2 or Hugging Face transformers."),
    "import": ("importer", "import_model", "Read a Hugging Face MarianMT directory into an nmt model."),
    "info": ("info", "info", "Say what a model, run, data or export directory holds."),
    "plot": ("plot", "plot", "Plot the training curves of runs (PNG and/or CSV)."),
    "attention": ("attention", "attention", "Draw the attention behind a translation."),
    "serve": ("serve", "serve", "Serve a model over HTTP (a JSON API with batching)."),
}


def make_app(only: str | None = None) -> typer.Typer:
    """The `nmt` application with every command, or with the one command `only` (what `main` runs: a command
    then imports and builds only its own module and options, which is start-up time saved)."""
    import importlib

    app = typer.Typer(
        name="nmt",
        cls=Group,
        help="Neural machine translation: prepare BPE data, train Transformers, translate, score.",
        no_args_is_help=True,
        rich_markup_mode=None,  # help text is printed as written: '[model]' stays '[model]'
        pretty_exceptions_enable=False,
    )
    app.callback()(_root)
    for name, (module_name, function, short_help) in COMMANDS.items():
        if only is not None and name != only:
            continue
        module = importlib.import_module(f"nmt_cli.{module_name}")
        extra: dict[str, Any] = {}
        if name == "train":  # DATA_DIR is taken from the extra arguments, to say "one DATA_DIR expected" itself
            extra = {"context_settings": {"allow_extra_args": True}, "options_metavar": "DATA_DIR [OPTIONS]"}
        app.command(name, cls=Command, short_help=short_help, **extra)(getattr(module, function))
    return app


def __getattr__(name: str) -> Any:
    """`from nmt_cli.main import app`: the application with every command, made on first use."""
    if name == "app":
        made = globals()["app"] = make_app()
        return made
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    first = sys.argv[1] if len(sys.argv) > 1 else None  # a command only when it comes first (not after options)
    make_app(first if first in COMMANDS else None)()


if __name__ == "__main__":
    main()
