"""Configs: typed TOML and flag overrides with clear errors; the learning-rate schedule's shape."""

from __future__ import annotations

import math
import re
import tomllib

import pytest
from nmt_cli.main import app
from typer.main import get_command
from typer.testing import CliRunner

from nmt.config import DecodeConfig, ModelConfig, TrainConfig, from_dict, load_toml, to_dict, to_toml
from nmt.errors import ConfigError
from nmt.optim import lr_at

pytestmark = pytest.mark.unit


def parsed(*args: str):
    """The click context of `nmt train ARGS`, parsed but not run."""
    return get_command(app).get_command(None, "train").make_context("train", list(args))  # type: ignore[union-attr]


def test_train_flags_are_typed_and_given_ones_known():
    ctx = parsed(
        *["--d-model", "512", "--no-pre-norm", "--lr=5e-4", "--valid-bleu", "data", "--max-steps", "10"],
        *["--betas", "[0.9, 0.99]", "--activation", "gelu", "--tie-output", "false", "--share-all-embeddings=no"],
    )
    assert ctx.args == ["data"]
    p = ctx.params
    assert (p["d_model"], p["pre_norm"], p["activation"], p["tie_output"], p["share_all_embeddings"]) == (
        512,
        False,
        "gelu",
        False,
        False,
    )
    assert (p["lr"], p["valid_bleu"], p["max_steps"], p["betas"]) == (5e-4, True, 10, (0.9, 0.99))
    assert from_dict(TrainConfig, {"betas": p["betas"]}).betas == (0.9, 0.99)
    assert parsed("--betas", "0.8,0.9").params["betas"] == (0.8, 0.9)
    given = {name for name in ctx.params if ctx.get_parameter_source(name).name == "COMMANDLINE"}
    assert "warmup_steps" not in given and {"d_model", "lr", "betas"} <= given


@pytest.mark.parametrize(
    "args, message",
    [
        (["--d-model", "abc"], "--d-model must be an integer, got 'abc'"),
        (["--activation", "tanh"], "--activation must be relu or gelu or swish, not tanh"),
        (["--betas", "0.9"], "--betas must be a list"),
    ],
)
def test_a_wrong_type_names_the_flag(args, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parsed(*args)


def test_wrong_types_and_unknown_keys_are_rejected():
    with pytest.raises(ConfigError, match="d_model must be an integer"):
        from_dict(ModelConfig, {"d_model": 1.5})
    with pytest.raises(ConfigError, match="unknown option"):
        from_dict(TrainConfig, {"learning_rate": 1e-3})
    with pytest.raises(ConfigError, match="divisible by n_heads"):
        ModelConfig(d_model=100, n_heads=3)


def test_toml_errors(tmp_path):
    (tmp_path / "bad.toml").write_text("[model\n")
    with pytest.raises(ConfigError, match="bad.toml: invalid TOML"):
        load_toml(tmp_path / "bad.toml")
    (tmp_path / "extra.toml").write_text("[optimizer]\nlr = 1\n")
    with pytest.raises(ConfigError, match="unknown table"):
        load_toml(tmp_path / "extra.toml")


@pytest.mark.parametrize("cls", [ModelConfig, TrainConfig, DecodeConfig])
def test_to_toml_reads_back_as_the_same_config(cls):
    values = to_dict(cls())
    assert from_dict(cls, tomllib.loads(to_toml({"t": values}))["t"]) == cls()


def test_to_toml_writes_strings_numbers_and_comments_toml_reads():
    values = {
        "s": 'a "quoted" \\ back\nline é \x01',
        "f": 1e-9,
        "big": 1e300,
        "inf": math.inf,
        "b": False,
        "xs": [1, 2.5],
    }
    text = to_toml({"one": values, "two": {"n": 3}}, {"one": {"hidden": 7}}, "  # why")
    assert "# hidden = 7  # why\n\n[two]" in text
    assert tomllib.loads(text) == {"one": values, "two": {"n": 3}}


def test_warmup_then_inverse_sqrt():
    cfg = TrainConfig(lr=1e-3, warmup_steps=100)
    assert lr_at(50, cfg) == pytest.approx(5e-4)
    assert lr_at(100, cfg) == pytest.approx(1e-3)
    assert lr_at(400, cfg) == pytest.approx(5e-4)
    cosine = TrainConfig(lr=1e-3, warmup_steps=10, schedule="cosine", max_steps=110, min_lr=1e-5)
    assert lr_at(60, cosine) == pytest.approx((1e-3 + 1e-5) / 2)
    assert lr_at(110, cosine) == pytest.approx(1e-5)


def test_train_cli_errors_exit_2(prepared_sample, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(prepared_sample), "--out", str(tmp_path / "r"), "--d-modle", "8"])
    assert result.exit_code == 2 and "no such option: --d-modle; did you mean --d-model?" in result.output
    result = runner.invoke(app, ["train", str(prepared_sample), "--out", str(tmp_path / "r"), "--lr"])
    assert result.exit_code == 2 and "'--lr' requires an argument" in result.output
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "r"), "--d-model", "64"])
    assert result.exit_code == 2 and "--resume continues a run with its own data and config" in result.output
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "r"), str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "not a prepared data directory" in result.output
    result = runner.invoke(app, ["train", "a", "b", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "one DATA_DIR expected, got a b" in result.output
