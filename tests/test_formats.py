"""Frozen formats: directories written by nmt 0.1.0 at commit 81361cd (tests/fixtures; its README says how) are
read, resumed, translated and described by today's code, with the results recorded on the day they were made.

The fixtures are never regenerated: a change of format keeps these tests passing or adds a migration that does.
Nothing here writes into tests/fixtures (a command that writes runs on a copy in tmp_path, and a check at the
end of the module compares every fixture file with what it held at the start)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from nmt_cli.main import app
from typer.testing import CliRunner

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXPECTED = FIXTURES / "expected"
SENTENCES = FIXTURES / "sentences.en"
MADE_IN = "/tmp/nmt-frozen"  # where the fixtures were made: the run recorded its data directory there

runner = CliRunner()


def expected(name: str) -> Any:
    return json.loads((EXPECTED / name).read_text(encoding="utf-8"))


def log_records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]


def contents(root: Path) -> dict[str, str]:
    """Every file's SHA-256 and every link's target under root, by relative path."""
    found = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            found[name] = "-> " + os.readlink(path)
        elif path.is_file():
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture(scope="module", autouse=True)
def fixtures_stay_as_committed():
    before = contents(FIXTURES)
    yield
    assert contents(FIXTURES) == before, "a test wrote into tests/fixtures"


def copy(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / name, tmp_path / name, symlinks=True))


def run_copy(tmp_path: Path) -> tuple[Path, Path]:
    """The run and its prepared data, copied; the run's absolute data_dir pointed at the copy (as a user
    who moves both does by hand)."""
    data, run = copy("data", tmp_path), copy("run", tmp_path)
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert config["data_dir"] == f"{MADE_IN}/data"
    config["data_dir"] = str(data)
    (run / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return data, run


# ---------------------------------------------------------------------------------------------
# Translating: the model directory (PyTorch fp32 and int8) and its CTranslate2 export

TRANSLATIONS = expected("translations.json")


def translated(model: Path, beam: str, *flags: str) -> list[dict[str, Any]]:
    args = ["translate", "-m", str(model), "-i", str(SENTENCES), "--beam", beam, "--threads", "1", "-q"]
    result = runner.invoke(app, [*args, "--format", "jsonl", *flags])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize("case", list(TRANSLATIONS))
def test_translations_are_those_recorded(case):
    engine, precision, _, beam = case.split()  # e.g. "pytorch int8 beam 5"
    if engine == "ctranslate2":
        pytest.importorskip("ctranslate2")
    model = FIXTURES / ("ct2" if engine == "ctranslate2" else "model")
    got = translated(model, beam, *(["--int8"] if precision == "int8" else []))
    want = TRANSLATIONS[case]
    assert len(want) == len(SENTENCES.read_text(encoding="utf-8").splitlines()) == 6
    assert [g["text"] for g in got] == [w["text"] for w in want]
    assert [g["tokens"] for g in got] == [w["tokens"] for w in want]
    # printed to 4 decimals; the slack admits another CPU's order of float32 sums, not a changed model
    for key in ("score", "log_prob"):
        assert [g[key] for g in got] == pytest.approx([w[key] for w in want], abs=1e-3), key


@pytest.mark.parametrize("name", ["model", "ct2"])
def test_the_python_api_loads_both_and_gives_the_same_translations(name):
    if name == "ct2":
        pytest.importorskip("ctranslate2")
    import nmt

    loaded = nmt.load(FIXTURES / name, threads=1, beam_size=5)
    lines = SENTENCES.read_text(encoding="utf-8").splitlines()
    engine = "ctranslate2" if name == "ct2" else "pytorch"
    assert loaded.translate(lines) == [w["text"] for w in TRANSLATIONS[f"{engine} fp32 beam 5"]]


def test_the_averaged_model_of_today_loads_and_records_its_steps():
    """averaged/: `nmt average` of the run's two checkpoints after resuming it to step 8 (issue 28): its
    config.json names the checkpoints and their steps, and it translates."""
    import nmt
    from nmt.modeldir import load_model_dir

    loaded = load_model_dir(FIXTURES / "averaged")
    assert loaded.config["averaged_from"] == ["run/checkpoints/step_000004", "run/checkpoints/step_000008"]
    assert loaded.config["averaged_steps"] == [4, 8]
    assert loaded.model.config == load_model_dir(FIXTURES / "run" / "last").model.config
    lines = SENTENCES.read_text(encoding="utf-8").splitlines()
    assert len(nmt.load(FIXTURES / "averaged", threads=1, beam_size=2).translate(lines)) == len(lines)


def test_the_model_directory_loads_with_its_config_and_vocabulary():
    from nmt.modeldir import load_model_dir

    loaded = load_model_dir(FIXTURES / "model")
    config = json.loads((FIXTURES / "model" / "config.json").read_text(encoding="utf-8"))
    model = loaded.model.config
    assert (model.d_model, model.n_heads, model.enc_layers, model.dec_layers, model.ffn_dim) == (16, 2, 1, 1, 32)
    assert (model.src_vocab_size, model.tgt_vocab_size) == (400, 400) == (len(loaded.src_tokenizer), 400)
    assert loaded.config["step"] == config["step"] == 400 and loaded.config["averaged_from"] == config["averaged_from"]
    assert sum(p.numel() for p in loaded.model.parameters()) == expected("info-model.json")["parameters"]


# ---------------------------------------------------------------------------------------------
# Resuming the run's mid-run checkpoint (step 4 of 8, in the middle of the first epoch)


def test_the_mid_run_checkpoint_resumes_with_the_losses_of_the_uninterrupted_run(tmp_path):
    data, run = run_copy(tmp_path)
    before = log_records(run)
    assert [r["step"] for r in before] == [1, 2, 3, 4, 4] and os.readlink(run / "last") == "checkpoints/step_000004"
    result = runner.invoke(
        app, ["train", "--resume", str(run), "--max-steps", "8", "--threads", "1", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert f"resumed from {run / 'checkpoints' / 'step_000004'} (step 4)" in result.stderr
    records = log_records(run)
    assert records[: len(before)] == before  # the log up to the checkpoint is kept as it was
    after = [{k: r[k] for k in ("kind", "step", "epoch")} for r in records[len(before) :]]
    want = expected("resume.json")["after_checkpoint"]
    assert after == [{k: w[k] for k in ("kind", "step", "epoch")} for w in want]
    for got, recorded in zip(records[len(before) :], want):
        for key in recorded.keys() - {"kind", "step", "epoch"}:  # exact where recorded; see the second run below
            assert got[key] == pytest.approx(recorded[key], rel=1e-6, abs=1e-9), (got["step"], key)
    assert os.readlink(run / "last") == "checkpoints/step_000008"
    assert json.loads((run / "last" / "trainer.json").read_text(encoding="utf-8"))["step"] == 8

    # and exactly as an uninterrupted run of the same settings on this machine (what test_train checks for runs
    # made by today's code)
    import nmt.train as training
    from nmt.config import TrainConfig, from_dict

    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    train_cfg = from_dict(TrainConfig, {**config["train"], "max_steps": 8}, where="test")
    trainer = training.start(data, tmp_path / "full", config["model"], train_cfg, threads=1, device="cpu")
    trainer.train()
    trainer.close()
    losses = [(r["step"], r.get("loss"), r.get("valid_loss")) for r in log_records(tmp_path / "full")]
    assert losses == [(r["step"], r.get("loss"), r.get("valid_loss")) for r in records]


# ---------------------------------------------------------------------------------------------
# The prepared data: prepare.json read, ids that decode to the text, one training step


def test_prepared_data_is_read_and_its_ids_are_its_text():
    from nmt.data import ParallelIds
    from nmt.layout import load_summary
    from nmt.tokenizer import Tokenizer

    data = FIXTURES / "data"
    summary = load_summary(data)
    assert summary["vocab_size"] == {"src": 400, "tgt": 400} and summary["spm"]["src"] == "spm.model"
    assert summary["special_ids"] == {"pad": 0, "unk": 1, "bos": 2, "eos": 3}
    assert {name: split["lines"] for name, split in summary["splits"].items()} == {
        "train": 300,
        "valid": 20,
        "test": 20,
    }
    tokenizer = Tokenizer.load(data / summary["spm"]["src"])
    assert tokenizer.sha256 == summary["spm"]["sha256"]["spm.model"]
    for split, n in (("train", 300), ("valid", 20), ("test", 20)):
        ids = ParallelIds.load(data / f"{split}.ids.safetensors")
        src = (data / f"{split}.en").read_text(encoding="utf-8").splitlines()
        tgt = (data / f"{split}.fr").read_text(encoding="utf-8").splitlines()
        assert len(ids) == len(src) == len(tgt) == n
        for i in (0, n // 2, n - 1):
            assert tokenizer.decode(ids.src(i).tolist()) == src[i] and tokenizer.decode(ids.tgt(i).tolist()) == tgt[i]


def test_prepared_data_trains_with_the_first_loss_the_run_logged(tmp_path):
    import nmt.train as training
    from nmt.config import TrainConfig, from_dict

    data = copy("data", tmp_path)
    config = json.loads((FIXTURES / "run" / "config.json").read_text(encoding="utf-8"))
    train_cfg = from_dict(TrainConfig, {**config["train"], "max_steps": 1}, where="test")
    trainer = training.start(data, tmp_path / "r", config["model"], train_cfg, threads=1, device="cpu")
    trainer.train()
    trainer.close()
    first, recorded = log_records(tmp_path / "r")[0], log_records(FIXTURES / "run")[0]
    assert (first["kind"], first["step"], first["epoch"]) == (recorded["kind"], recorded["step"], recorded["epoch"])
    assert first["loss"] == pytest.approx(recorded["loss"], rel=1e-6)


# ---------------------------------------------------------------------------------------------
# Describing: `nmt info --json` says the same facts of each directory as on the day it was made


def facts(value: Any) -> Any:
    """The description without where it was read (paths) or what reads it (the environment's versions)."""
    if isinstance(value, dict):
        return {k: facts(v) for k, v in value.items() if k not in ("path", "environment")}
    if isinstance(value, list):
        return [facts(v) for v in value]
    return value


ADDED_OPTIONS = {"positions": "interleaved", "scale_embedding": True, "output_bias": False}  # issue 30, at defaults


def with_options_added(value: Any) -> Any:
    """A recorded description with the model options added since (issue 30) where a model config is described: at
    their defaults, which are what every model made before them computes (a run's "config" is its file as it is)."""
    if isinstance(value, dict):
        found = {k: v if k == "config" else with_options_added(v) for k, v in value.items()}
        if "arch" in found and "d_model" in found:
            assert not ADDED_OPTIONS.keys() & value.keys()
            found.update(ADDED_OPTIONS)
        return found
    if isinstance(value, list):
        return [with_options_added(v) for v in value]
    return value


def described_today(name: str) -> Any:
    """expected/info-NAME.json, with what the description of an average changed since it was recorded
    (issue 28): the step, epoch and validation that model/'s config.json keeps are those of the first
    checkpoint averaged, not the average's, so they are described as null, and the average as what it is
    (nmt average did not record the steps then). The files themselves still hold them (see the loading test)."""
    recorded = with_options_added(expected(f"info-{name}.json"))
    if name != "model":
        return recorded
    assert (recorded["step"], recorded["epoch"]) == (400, 39) and recorded["valid"]["valid_bleu"] > 0
    return {
        **recorded,
        "step": None,
        "epoch": None,
        "valid": None,
        "averaged": {"checkpoints": 2, "steps": None, "validated": False},
        "averaged_from": recorded["averaged_from"],  # last, as before
    }


@pytest.mark.parametrize("name", ["data", "run", "model", "averaged", "ct2"])
def test_info_describes_each_as_recorded(name):
    result = runner.invoke(app, ["info", "--json", str(FIXTURES / name)])
    assert result.exit_code == 0, result.output
    desc = json.loads(result.stdout)
    assert desc["path"] == str(FIXTURES / name)
    assert facts(desc) == described_today(name)


@pytest.mark.parametrize(
    ("name", "step"),
    [
        ("model", "averaged from 2 checkpoints; steps not recorded"),
        ("averaged", "averaged from 2 checkpoints, steps 4–8"),
    ],
)
def test_an_average_is_described_as_one_old_or_new(name, step):
    """Never the first checkpoint's step and validation as if they were the average's."""
    result = runner.invoke(app, ["info", str(FIXTURES / name)])
    assert result.exit_code == 0, result.output
    rows = dict(line.split(None, 1) for line in result.stdout.splitlines() if line[:1].strip())
    assert rows["step"] == step
    assert rows["valid"].startswith("not validated")
    config = json.loads((FIXTURES / name / "config.json").read_text(encoding="utf-8"))
    assert f"{config['step']:,} (epoch" not in result.stdout and "BLEU" not in result.stdout
