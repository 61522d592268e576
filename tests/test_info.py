"""`nmt info`: what a model, run, prepared data or CTranslate2 export directory holds, from its JSON files and
safetensors headers; --json agrees with the files themselves."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from helpers import one_error_line
from nmt_cli.main import app
from typer.testing import CliRunner

import nmt
from nmt import export, info
from nmt.config import ModelConfig
from nmt.model import build_model
from nmt.modeldir import load_model_dir

runner = CliRunner()

pytestmark = pytest.mark.integration


def described(path) -> dict:
    result = runner.invoke(app, ["info", "--json", str(path)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"{c} in --json"))


def read(path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_a_model_agrees_with_its_config_and_trainer_state(tiny_model_dir):
    desc = described(tiny_model_dir)
    config, trainer = read(tiny_model_dir / "config.json"), read(tiny_model_dir / "trainer.json")
    assert desc["kind"] == "model" and desc["path"] == str(tiny_model_dir.resolve())
    assert desc["model"] == config["model"]
    for key in ("d_model", "n_heads", "enc_layers", "dec_layers", "ffn_dim", "src_vocab_size", "tgt_vocab_size"):
        assert desc["model"][key] == config["model"][key]
    assert (desc["vocab"]["src"], desc["vocab"]["tgt"]) == (config["model"]["src_vocab_size"], 1000)
    assert desc["vocab"]["spm"] == config["spm"] and desc["vocab"]["joint"]
    assert (desc["src_lang"], desc["tgt_lang"]) == (config["src_lang"], config["tgt_lang"]) == ("en", "fr")
    model = load_model_dir(tiny_model_dir).model
    assert desc["parameters"] == sum(p.numel() for p in model.parameters())
    assert desc["weights"]["dtype"] == "float32"
    assert desc["weights"]["bytes"] == (tiny_model_dir / "model.safetensors").stat().st_size
    assert (desc["step"], desc["epoch"], desc["valid"]) == (config["step"], config["epoch"], config["valid"])
    assert desc["train"] == config["train"]
    assert desc["step"] == trainer["step"] == 40
    assert desc["train_minutes"] == pytest.approx(trainer["train_seconds"] / 60)
    assert desc["best"] == {
        "step": trainer["best_step"],
        "metric": config["train"]["early_stop_metric"],
        "value": trainer["best_metric"],
    }
    assert "optimizer" not in desc["trainer"]
    assert {k: v for k, v in trainer.items() if k != "optimizer"} == desc["trainer"]
    assert desc["checksums"] == {"spm_sha256": config["spm_sha256"], "spm_ok": True}
    assert desc["versions"]["recorded"] == {"nmt": config["nmt_version"]}
    environment = desc["versions"]["environment"]
    assert environment["nmt"] == nmt.__version__ and environment["torch"] and environment["sentencepiece"]
    sizes = {f["name"]: f["bytes"] for f in desc["files"]}
    assert sizes == {p.name: p.stat().st_size for p in tiny_model_dir.iterdir()}


def test_a_run_says_its_steps_best_checkpoints_and_best_model(tiny_model_dir):
    run = tiny_model_dir.parent
    desc = described(run)
    last = (run / "last").resolve()
    trainer, config = read(last / "trainer.json"), read(run / "config.json")
    assert desc["kind"] == "run" and desc["config"] == config
    assert (desc["step"], desc["epoch"]) == (trainer["step"], trainer["epoch"])
    assert desc["train_minutes"] == pytest.approx(trainer["train_seconds"] / 60)
    assert desc["best"] == {
        "step": trainer["best_step"],
        "metric": config["train"]["early_stop_metric"],
        "value": trainer["best_metric"],
        "checkpoint": tiny_model_dir.resolve().name,
    }
    assert desc["last"] == {"step": trainer["step"], "checkpoint": last.name}
    assert [c["name"] for c in desc["checkpoints"]] == sorted(p.name for p in (run / "checkpoints").iterdir())
    assert desc["last_valid"] == trainer["last_valid"]
    assert desc["log"]["last_step"] == trainer["step"]
    assert desc["model"] == info.describe(tiny_model_dir)
    assert desc["model"]["path"] == str(tiny_model_dir.resolve()) and desc["warnings"] == []
    entries = {f["name"]: f for f in desc["files"]}
    assert entries["best"] == {"name": "best", "type": "link", "target": f"checkpoints/{tiny_model_dir.resolve().name}"}
    assert entries["checkpoints"]["bytes"] == sum(c["bytes"] for c in desc["checkpoints"]) > 0
    assert ".lock" not in entries


def test_the_text_of_a_run_is_an_aligned_list(tiny_model_dir):
    result = runner.invoke(app, ["info", str(tiny_model_dir.parent)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["run", "dir", str(tiny_model_dir.parent.resolve())]
    labels = {line[:15].strip(): line[15:] for line in lines if line[:1].strip()}
    assert labels["languages"] == "en → fr"
    assert labels["steps"].startswith("40 (epoch ")
    assert labels["best"].startswith("step 40, BLEU ")
    assert labels["checkpoints"].startswith("1: step_000040")
    assert labels["best model"] == str(tiny_model_dir.resolve())
    assert "  parameters   " in result.stdout and "KiB" in result.stdout
    assert "model.safetensors" not in result.stdout  # the best model's files are in --json only


def test_prepared_data_agrees_with_prepare_json(prepared_sample):
    desc = described(prepared_sample)
    summary = read(prepared_sample / "prepare.json")
    assert desc["kind"] == "data" and (desc["src_lang"], desc["tgt_lang"]) == ("en", "fr")
    assert (desc["vocab"]["src"], desc["vocab"]["tgt"]) == (summary["vocab_size"]["src"], summary["vocab_size"]["tgt"])
    assert desc["vocab"]["joint"] and desc["vocab"]["spm"] == {"src": "spm.model", "tgt": "spm.model"}
    assert set(desc["splits"]) == set(summary["splits"]) == {"train", "valid", "test"}
    assert desc["splits"]["train"]["pairs"] == summary["splits"]["train"]["kept"]
    for name in ("valid", "test"):
        assert desc["splits"][name]["pairs"] == summary["splits"][name]["lines"]
    assert desc["checksums"]["fingerprint"] == summary["fingerprint"]
    assert desc["checksums"]["inputs"] == summary["inputs"] and desc["checksums"]["spm_ok"] is True
    assert desc["versions"]["recorded"] == {"nmt": summary["nmt_version"]}
    assert {f["name"]: f["bytes"] for f in desc["files"]} == {
        p.name: p.stat().st_size for p in prepared_sample.iterdir()
    }
    text = runner.invoke(app, ["info", str(prepared_sample)])
    assert text.exit_code == 0 and "prepared data" in text.stdout and "1,971 pairs" in text.stdout


def test_a_ctranslate2_export(tiny_model_dir, tmp_path):
    pytest.importorskip("ctranslate2")
    out = export.export_ctranslate2(tiny_model_dir, tmp_path / "ct2")
    desc = described(out)
    assert desc["kind"] == "ctranslate2" and desc["quantization"] == "float32"
    assert desc["model"] == read(tiny_model_dir / "config.json")["model"]
    assert desc["parameters"] == described(tiny_model_dir)["parameters"]
    assert (desc["src_lang"], desc["tgt_lang"]) == ("en", "fr")
    assert desc["versions"]["recorded"]["ctranslate2"] == read(out / "nmt.json")["ctranslate2_version"]
    assert desc["checksums"]["spm_ok"] is True and "model.bin" in {f["name"] for f in desc["files"]}


def test_what_is_none_of_them_is_one_error_line(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n", encoding="utf-8")
    one_error_line(runner.invoke(app, ["info", str(tmp_path)]), str(tmp_path), "prepare.json", "nmt.json", "run")
    one_error_line(runner.invoke(app, ["info", str(tmp_path / "missing")]), "no such file")
    one_error_line(runner.invoke(app, ["info", str(tmp_path / "notes.txt")]), "a file, not a directory")


def test_a_damaged_model_is_one_error_line_and_nan_is_null(tiny_model_dir, tmp_path):
    damaged = shutil.copytree(tiny_model_dir, tmp_path / "model")
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    one_error_line(runner.invoke(app, ["info", str(damaged)]), "model.safetensors", "truncated or corrupted")
    (damaged / "model.safetensors").unlink()
    one_error_line(runner.invoke(app, ["info", str(damaged)]), "model.safetensors: missing")

    diverged = shutil.copytree(tiny_model_dir, tmp_path / "diverged")
    config = read(diverged / "config.json")
    config["valid"]["valid_loss"] = float("nan")
    (diverged / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert described(diverged)["valid"]["valid_loss"] is None  # strict JSON: described() refuses NaN


@pytest.mark.parametrize(
    "shape",
    [
        {},
        {"share_all_embeddings": False},
        {"share_all_embeddings": False, "tie_output": False, "tgt_vocab_size": 700},
        {"pre_norm": False, "activation": "gelu", "enc_layers": 2, "dec_layers": 3},
        {"output_bias": True, "positions": "halves", "scale_embedding": False, "activation": "swish"},
        {"output_bias": True, "share_all_embeddings": False, "tie_output": False, "tgt_vocab_size": 700},
    ],
)
def test_the_parameters_of_a_config_are_those_of_the_model(shape):
    config = ModelConfig(**{"src_vocab_size": 500, "tgt_vocab_size": 500, "d_model": 16, "n_heads": 2, **shape})
    assert info.parameters_of(config) == sum(p.numel() for p in build_model(config).parameters())


def test_describing_imports_neither_torch_nor_sentencepiece(tiny_model_dir):
    code = (
        "import sys; from nmt.info import describe; describe(sys.argv[1]); "
        "print(sorted(m for m in ('torch', 'sentencepiece') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tiny_model_dir.parent)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_an_imported_models_options_and_vocabulary_are_described(tmp_path):
    from helpers import save_marian

    model = save_marian(tmp_path / "m")
    desc = described(model)
    assert desc["model"]["positions"] == "halves" and desc["model"]["output_bias"] is True
    assert desc["vocab"]["maps"] == {"src": "vocab.json", "tgt": "vocab.json"}
    assert desc["parameters"] == info.parameters_of(ModelConfig(**desc["model"]))
    assert desc["checksums"]["spm_ok"] is True
    text = runner.invoke(app, ["info", str(model)]).stdout
    assert "post-norm, swish, 64 positions, sinusoids in halves, output bias" in text
    assert "source.spm + target.spm through vocab.json" in text
    export_dir = export.export_ctranslate2(model, tmp_path / "ct2")
    exported = described(export_dir)
    assert exported["parameters"] == desc["parameters"] and exported["vocab"] == desc["vocab"]
    assert exported["checksums"]["spm_ok"] is True
    (model / "vocab.json").write_text("{}")
    assert described(model)["checksums"]["spm_ok"] is False
