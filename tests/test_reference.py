"""docs/commands.md is generated from the commands (nmt_cli.reference): it must say what they say."""

from __future__ import annotations

from pathlib import Path

import pytest
from nmt_cli import reference
from nmt_cli.main import COMMANDS, app
from typer.testing import CliRunner

pytestmark = pytest.mark.integration  # the committed page against every command's --help

PAGE = Path(__file__).resolve().parent.parent / reference.PAGE


def test_the_committed_command_reference_is_current():
    assert PAGE.read_text(encoding="utf-8") == reference.render(), (
        f"{reference.PAGE} is stale (a command's options or help changed): run `{reference.REGENERATE}` "
        "(or `.venv/bin/python -m nmt_cli.reference`) and commit the page"
    )


def test_the_reference_holds_every_command_as_its_help_prints_it():
    page = reference.render()
    for name in COMMANDS:
        printed = CliRunner().invoke(app, [name, "--help"], terminal_width=reference.WIDTH, color=False)
        assert printed.exit_code == 0, printed.output
        section = page.split(f"## nmt {name}\n", 1)[1].split("```text\n", 1)[1].split("\n```", 1)[0]
        assert section == printed.output.rstrip(), name


def test_the_reference_does_not_depend_on_the_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    wide = reference.render()
    monkeypatch.setenv("COLUMNS", "40")
    assert reference.render() == wide


def test_check_mode_reports_a_stale_page(tmp_path, capsys):
    page = tmp_path / "commands.md"
    page.write_text("# an old page\n", encoding="utf-8")
    assert reference.main([str(page), "--check"]) == 1
    assert reference.REGENERATE in capsys.readouterr().err
    assert reference.main([str(page)]) == 0
    assert reference.main([str(page), "--check"]) == 0
