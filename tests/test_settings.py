"""One declaration per setting: every config field has its flag, with its help and default, on each command that
takes that config; no command spells a config's flag by hand; a refused value is named as the user wrote it."""

from __future__ import annotations

import re
from dataclasses import MISSING, fields

import pytest
from nmt_cli.main import app
from nmt_cli.settings import flag_of
from typer.main import get_command
from typer.testing import CliRunner

from nmt.config import DecodeConfig, Limits, ModelConfig, PrepareConfig, SamplingConfig, TrainConfig, from_dict
from nmt.errors import ConfigError

runner = CliRunner()

pytestmark = pytest.mark.integration  # the commands in-process, over the configs

CONFIGS = (ModelConfig, TrainConfig, DecodeConfig, SamplingConfig, PrepareConfig, Limits)
# the configs each command takes, and the fields it offers where it offers only some
COMMANDS = {
    "train": {ModelConfig: None, TrainConfig: None},
    "translate": {DecodeConfig: None, SamplingConfig: None},
    "serve": {Limits: None, DecodeConfig: {"beam_size", "split"}},
    "prepare": {PrepareConfig: None},
    "score": {DecodeConfig: {"beam_size", "length_penalty", "batch_tokens"}},
    "attention": {DecodeConfig: {"beam_size"}},
}


def command(name: str):
    return get_command(app).get_command(None, name)  # type: ignore[union-attr]


def offered(name: str):
    """(config, field) for each field the command must have a flag for."""
    return [
        (cls, f)
        for cls, names in COMMANDS[name].items()
        for f in fields(cls)
        if f.metadata["command_line"] and (names is None or f.name in names)
    ]


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda cls: cls.__name__)
def test_every_field_has_one_help_sentence(cls):
    for f in fields(cls):
        help_text = f.metadata.get("help", "")
        assert len(help_text) > 10 and help_text.endswith(".") and "\n" not in help_text, (cls.__name__, f.name)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_field_has_its_flag_and_every_flag_its_field(name):
    params = {opt: param for param in command(name).params for opt in param.opts}
    expected = offered(name)
    for cls, f in expected:
        param = params.get(flag_of(f))
        assert param is not None, (name, cls.__name__, f.name)
        assert param.name == f.name and param.help == f.metadata["help"], (name, f.name, param.help)
        if f.default is MISSING:
            assert param.required, (name, f.name)
        elif f.default != ():  # a repeatable option's default is none given
            assert param.default == f.default, (name, f.name, param.default)
        assert (f.metadata["short"] in param.opts) if f.metadata["short"] else len(param.opts) == 1
    # no option is a hand-kept copy: a flag spelt like a field of these configs is that field's
    fields_by_flag = {flag: f.name for cls in COMMANDS[name] for f in fields(cls) for flag in _spellings(f)}
    for opt, param in params.items():
        if opt in fields_by_flag:
            assert param.name == fields_by_flag[opt] and any(f.name == param.name for _, f in expected), (name, opt)


def _spellings(f) -> set[str]:
    return {f"--{f.name.replace('_', '-')}", flag_of(f)}


@pytest.mark.parametrize("name", ["train", "translate", "serve", "prepare"])
def test_help_documents_every_option_with_its_sentence(name):
    shown = " ".join(runner.invoke(app, [name, "--help"], env={"COLUMNS": "100"}).stdout.split())
    for _, f in offered(name):
        assert flag_of(f) in shown and " ".join(f.metadata["help"].split()) in shown, (name, f.name)


@pytest.mark.parametrize(
    "args, message",
    [
        (["translate", "-m", "x", "--beam", "2", "--nbest", "3"], "--nbest 3 needs --beam of at least 3"),
        (["translate", "-m", "x", "--lenpen", "-1"], "--lenpen -1: must be at least 0"),
        (["translate", "-m", "x", "--normalize", "avg"], "--normalize must be gnmt or length, not avg"),
        (["translate", "-m", "x", "--sampling", "--top-p", "0"], "--top-p 0: must be in (0, 1]"),
        (["train", "DATA", "--out", "RUN", "--lr", "0"], "--lr 0: must be > 0"),
        (["train", "DATA", "--out", "RUN", "--d-model", "100", "--n-heads", "3"], "--d-model (100) must be divisible"),
        (["train", "DATA", "--out", "RUN", "--betas", "0.9,1"], "--betas [0.9, 1]: must be in [0, 1)"),
        (["serve", "-m", "x", "--max-wait-ms", "-1"], "--max-wait-ms -1: must be at least 0"),
        (["serve", "-m", "x", "--beam", "0"], "--beam 0: must be at least 1"),
        (["prepare", "-s", "en", "-t", "en", "--train", "T", "--valid", "V", "-o", "OUT"], "--src and --tgt are both"),
        (["score", "-r", "R", "-m", "x", "--src", "S", "--lenpen", "-1"], "--lenpen -1: must be at least 0"),
    ],
)
def test_a_refused_value_is_one_line_naming_the_flag(args, message, tmp_path):
    if args[0] == "serve":
        pytest.importorskip("starlette")  # without it, serve says how to install it before anything else
    swap = {"RUN": str(tmp_path / "run"), "OUT": str(tmp_path / "out"), "R": str(tmp_path / "ref")}
    (tmp_path / "ref").write_text("a\n", encoding="utf-8")
    result = runner.invoke(app, [swap.get(a, a) for a in args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), lines


def test_a_value_from_a_config_file_is_named_by_its_key(tmp_path):
    config = tmp_path / "recipe.toml"
    config.write_text("[decode]\nbeam_size = 0\n[train]\nwarmup_steps = -1\n", encoding="utf-8")
    result = runner.invoke(app, ["translate", "-m", "x", "--config", str(config)])
    assert result.exit_code == 2 and "error: beam_size 0: must be at least 1" in result.stderr
    result = runner.invoke(app, ["train", "DATA", "--out", str(tmp_path / "r"), "--config", str(config)])
    assert result.exit_code == 2 and "error: warmup_steps -1: must be at least 0" in result.stderr
    result = runner.invoke(app, ["translate", "-m", "x", "--config", str(config), "--beam", "-2"])
    assert result.exit_code == 2 and "error: --beam -2: must be at least 1" in result.stderr


def test_a_repeated_option_gives_a_tuple_of_any_length():
    for tests in ([], ["a"], ["a", "b", "c"]):
        made = from_dict(PrepareConfig, {"src": "en", "tgt": "fr", "train": "t", "valid": "v", "tests": tests})
        assert made.tests == tuple(tests)
    with pytest.raises(ConfigError, match="tests must be a string"):
        from_dict(PrepareConfig, {"src": "en", "tgt": "fr", "train": "t", "valid": "v", "tests": [1]})


def test_the_library_names_keys():
    with pytest.raises(ConfigError, match=re.escape("nmt.load: nbest 3 needs beam_size of at least 3")):
        from_dict(DecodeConfig, {"beam_size": 2, "nbest": 3}, where="nmt.load")
    with pytest.raises(ConfigError, match=re.escape("[model]: dropout 1.5: must be in [0, 1)")):
        from_dict(ModelConfig, {"dropout": 1.5}, where="[model]")
