"""Help and shell completion of the real `nmt` command (the installed console script, in its own process, as a
shell runs it): `nmt train --help` in sections named after the TOML tables, every choice shown as `[a|b]` and
completed, completion scripts for the shell named."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import typing
from dataclasses import fields
from pathlib import Path
from typing import Literal

import pytest
from nmt_cli.settings import flag_of

from nmt.config import DecodeConfig, ModelConfig, TrainConfig
from nmt.layout import ATTENTION_KINDS, ENGINES, QUANTIZATIONS

pytestmark = pytest.mark.system

NMT = Path(sys.executable).with_name("nmt")  # the console script pip installed beside this Python


def nmt(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if not NMT.exists():
        pytest.skip(f"no console script at {NMT} (pip install -e . makes it)")
    environ = {**os.environ, "COLUMNS": "100", **(env or {})}
    return subprocess.run([str(NMT), *args], capture_output=True, text=True, env=environ, timeout=60)


def completed(line: str) -> list[str]:
    """What bash completion offers for the last word of `line` (as the script `nmt --show-completion bash` asks)."""
    words = line.split(" ")
    run = nmt(env={"_NMT_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)})
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def sections(text: str) -> dict[str, str]:
    """The sections of a help text by heading ('Options', '[model] options'): their lines, joined."""
    found: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = found.setdefault(line[:-1], [])
        elif current is not None:
            current.append(line)
    return {heading: "\n".join(lines) for heading, lines in found.items()}


def test_train_help_has_the_commands_options_then_one_section_per_table():
    run = nmt("train", "--help")
    assert run.returncode == 0, run.stderr
    shown = sections(run.stdout)
    assert list(shown)[-3:] == ["Options", "[model] options", "[train] options"]
    assert "--out PATH" in shown["Options"] and "--config PATH" in shown["Options"]
    for table, cls in (("model", ModelConfig), ("train", TrainConfig)):
        section = shown[f"[{table}] options"]
        for f in fields(cls):
            others = [s for heading, s in shown.items() if heading != f"[{table}] options"]
            if f.metadata["command_line"]:
                assert f"  {flag_of(f)} " in section, (table, f.name)  # whole, not cut at a hyphen
                assert not any(f"  {flag_of(f)} " in other for other in others), (table, f.name)
                assert f.metadata["help"].split()[0] in section, (table, f.name)


def test_options_of_a_table_are_aligned_as_one_list():
    """The description column is the same in every section."""
    lines = [line for line in nmt("train", "--help").stdout.splitlines() if line.startswith("  --")]
    starts = {len(line) - len(line.split("  ", 2)[-1].lstrip()) for line in lines if "  " in line.strip()}
    assert len(starts) == 1, starts


CHOICES = [
    ("translate", "--format", ("text", "jsonl")),
    ("translate", "--engine", ENGINES),
    ("translate", "--normalize", typing.get_args(typing.get_type_hints(DecodeConfig)["normalize"])),
    ("export", "--quantization", QUANTIZATIONS),
    ("export", "--format", ("ctranslate2", "hf")),
    ("attention", "--kind", ATTENTION_KINDS),
    ("score", "--metrics", ("bleu", "chrf", "ter")),
    *(
        ("train", flag_of(f), typing.get_args(hint))
        for cls in (ModelConfig, TrainConfig)
        for f in fields(cls)
        if typing.get_origin(hint := typing.get_type_hints(cls)[f.name]) is Literal
    ),
]


@pytest.mark.parametrize(("command", "flag", "choices"), CHOICES, ids=lambda x: x if isinstance(x, str) else "")
def test_a_choice_shows_its_words_and_completes_them(command, flag, choices):
    help_text = nmt(command, "--help").stdout
    assert f"{flag} [{'|'.join(choices)}]" in help_text, (command, flag)
    assert completed(f"nmt {command} {flag} ") == list(choices)
    last = choices[-1]
    assert completed(f"nmt {command} {flag} {last[:2]}") == [c for c in choices if c.startswith(last[:2])]


@pytest.mark.parametrize("command", ["prepare", "train", "translate", "score", "export", "attention", "serve", "plot"])
def test_one_metavar_style_everywhere(command):
    """Types as click writes them (INTEGER, PATH) and choices in brackets: no Typer-style '<int>' and no choice
    hidden behind TEXT."""
    text = "\n".join(line for line in nmt(command, "--help").stdout.splitlines() if line.startswith("  -"))
    for odd in ("<int>", "<path>", "<str>", "<float>", "<list", "METRIC", "{"):
        assert odd not in text, (command, odd)
    for _, flag, _choices in (c for c in CHOICES if c[0] == command):
        assert f"{flag} TEXT" not in text, (command, flag)


def test_completion_offers_the_train_options():
    offered = completed("nmt train --d")
    assert {"--d-model", "--dec-layers", "--dropout", "--device", "--dump-config"} <= set(offered)
    assert all(word.startswith("--d") for word in offered)
    assert completed("nmt train --max-p") == ["--max-positions"]
    assert {"--quiet", "--valid-bleu", "--no-valid-bleu", "--early-stop-metric"} <= set(completed("nmt train --"))


@pytest.mark.parametrize(
    ("shell", "says"),
    [
        ("bash", "complete -o default -F _nmt_completion nmt"),
        ("zsh", "compdef _nmt_completion nmt"),
        ("fish", "complete --command nmt"),
        ("powershell", "Register-ArgumentCompleter"),
    ],
)
def test_show_completion_prints_the_named_shells_script(shell, says):
    run = nmt("--show-completion", shell)
    assert run.returncode == 0, run.stderr
    assert says in run.stdout
    others = {"bash": "complete -o default", "zsh": "compdef", "fish": "--command nmt", "powershell": "PSReadLine"}
    assert not any(mark in run.stdout for name, mark in others.items() if name != shell), shell


def test_zsh_script_differs_from_bash():
    zsh, bash = nmt("--show-completion", "zsh").stdout, nmt("--show-completion", "bash").stdout
    assert zsh != bash and zsh.startswith("#compdef nmt") and "compdef" not in bash
    assert nmt("--show-completion=zsh").stdout == zsh


def test_install_completion_installs_the_named_shells_script(tmp_path):
    run = nmt("--install-completion", "zsh", env={"HOME": str(tmp_path), "SHELL": "/bin/bash"})
    assert run.returncode == 0, run.stderr
    assert "compdef _nmt_completion nmt" in (tmp_path / ".zfunc" / "_nmt").read_text()
    assert not (tmp_path / ".bashrc").exists()


def test_an_unknown_shell_is_one_line():
    run = nmt("--show-completion", "tcsh")
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip().count("\n") == 0
    assert "--show-completion tcsh: name a shell: bash, zsh" in run.stderr


def test_help_names_the_shells():
    shown = " ".join(nmt("--help").stdout.split())
    assert "--show-completion" in shown and "bash, zsh, fish" in shown


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash here")
def test_the_bash_script_completes_in_bash(tmp_path):
    """The printed script, sourced into a real bash, fills COMPREPLY from the real command."""
    script = tmp_path / "nmt.bash"
    script.write_text(nmt("--show-completion", "bash").stdout)
    probe = (
        f'PATH="{NMT.parent}:$PATH"; source "{script}"; COMP_WORDS=(nmt translate --form); COMP_CWORD=2; '
        '_nmt_completion nmt; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    run = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=60)
    assert run.stdout.split() == ["--format"], run.stderr
