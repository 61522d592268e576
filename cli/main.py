"""The `nmt` application: one sub-command per module in this package."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

import nmt

app = typer.Typer(
    name="nmt",
    help="Neural machine translation: prepare BPE data, train Transformers, translate, score.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"nmt {nmt.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Neural machine translation: prepare BPE data, train Transformers, translate, score."""


def _register() -> None:
    from nmt_cli import export, prepare, score, train, translate

    extra_args = {"allow_extra_args": True, "ignore_unknown_options": True}

    app.command("prepare")(prepare.prepare)
    app.command("score")(score.score)
    app.command("train", context_settings=extra_args, epilog=train._config_help())(train.train)
    app.command("average")(train.average)
    app.command("translate")(translate.translate)
    app.command("export")(export.export)


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
