"""Configs: typed TOML and flag overrides with clear errors; the learning-rate schedule's shape."""

from __future__ import annotations

import pytest
from nmt_cli.main import app
from nmt_cli.train import parse_overrides
from typer.testing import CliRunner

from nmt.config import ModelConfig, TrainConfig, from_dict, load_toml
from nmt.errors import ConfigError
from nmt.optim import lr_at


def test_overrides_are_typed_and_sorted_into_tables():
    positional, flags = parse_overrides(
        [
            "--d-model",
            "512",
            "--no-pre-norm",
            "--lr=5e-4",
            "--valid-bleu",
            "data",
            "--max-steps",
            "10",
            "--betas",
            "[0.9, 0.99]",
            "--activation",
            "gelu",
            "--tie-output",
            "false",
        ]
    )
    assert positional == ["data"]
    assert flags["model"] == {"d_model": 512, "pre_norm": False, "activation": "gelu", "tie_output": False}
    assert flags["train"] == {"lr": 5e-4, "valid_bleu": True, "max_steps": 10, "betas": [0.9, 0.99]}
    assert from_dict(TrainConfig, flags["train"]).betas == (0.9, 0.99)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--d-modle", "512"], "unknown option --d-modle"),
        (["--lr"], "--lr needs a value"),
    ],
)
def test_bad_overrides(args, message):
    with pytest.raises(ConfigError, match=message):
        parse_overrides(args)


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
    assert result.exit_code == 2 and "unknown option --d-modle" in result.output
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "r"), "--d-model", "64"])
    assert result.exit_code == 2 and "--resume continues a run with its own data and config" in result.output
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "r"), str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "not a prepared data directory" in result.output
    result = runner.invoke(app, ["train", "a", "b", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "one DATA_DIR expected, got a b" in result.output
