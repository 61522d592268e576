"""Start-up: which modules each command path imports (what makes `nmt --help` and a CTranslate2 translation
start in a blink, and keeps the PyTorch path from loading what it does not use). The times themselves are
measured by benchmarks/translate_speed.py, not asserted here."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parent.parent
# never needed to translate: training, data preparation, scoring, pictures, the server, the exporters (and
# transformers, which only `nmt import` and `nmt export --format hf` load)
NOT_FOR_TRANSLATING = {
    "nmt.train",
    "nmt.trainer",
    "nmt.update",
    "nmt.checkpointer",
    "nmt.prepare",
    "nmt.prepare_clean",
    "nmt.prepare_encode",
    "nmt.export",
    "nmt.hf",
    "nmt.hf_dir",
    "transformers",
    "sacrebleu",
    "matplotlib",
    "starlette",
    "uvicorn",
    "torch.distributed.run",
    "pydantic",  # typer 0.29 validates every option with it (~0.15 s of start-up): pyproject keeps typer < 0.29
    # the training state: translating reads a model directory (nmt.modeldir), never these
    "nmt.checkpoint",
    "nmt.rundir",
    "nmt.distributed",
    "nmt.optim",
    "nmt.loss",
}
TORCH_FREE_TOO = {"numpy", "sentencepiece", "safetensors.torch"}  # nor what only the model, data or tokenizer need
# no other command's module (nmt_cli.settings makes every command's config options)
CLI_FOR_TRANSLATING = {"nmt_cli", "nmt_cli.main", "nmt_cli.common", "nmt_cli.settings", "nmt_cli.translate"}


def imported(args: list[str], stdin: str = "") -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The modules loaded by the time `nmt ARGS` exits (its own process), and the process."""
    code = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: sys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules)) + '\\n'))\n"
        "from nmt_cli.main import main\n"
        f"sys.argv = ['nmt', *{args!r}]\n"
        "main()\n"
    )
    run = subprocess.run([sys.executable, "-c", code], input=stdin, capture_output=True, text=True, cwd=ROOT)
    line = next(line for line in run.stderr.splitlines() if line.startswith("MODULES "))
    return set(json.loads(line[len("MODULES ") :])), run


def test_help_imports_neither_torch_nor_numpy() -> None:
    modules, run = imported(["--help"])
    assert run.returncode == 0, run.stderr
    assert "torch" not in modules and "numpy" not in modules and "sentencepiece" not in modules


def test_ctranslate2_path_never_imports_torch(tiny_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("ctranslate2")
    from nmt.export import export_ctranslate2

    export = export_ctranslate2(tiny_model_dir, tmp_path / "ct2")
    modules, run = imported(["translate", "-m", str(export), "--threads", "1"], "How was your day?\n\nGood.\n")
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.split("\n")) == 4  # three lines out, for three in
    assert "ctranslate2" in modules and "nmt.ct2" in modules
    assert not {m for m in modules if m == "torch" or m.startswith("torch.")}, "the CTranslate2 path imported torch"
    assert "numpy" not in modules  # nor numpy (CTranslate2 does not need it; nmt.data does)
    assert not modules & NOT_FOR_TRANSLATING
    assert {m for m in modules if m.startswith("nmt_cli")} == CLI_FOR_TRANSLATING


def test_pytorch_path_imports_only_what_translating_needs(tiny_model_dir: Path) -> None:
    modules, run = imported(["translate", "-m", str(tiny_model_dir), "--threads", "1"], "How was your day?\n")
    assert run.returncode == 0, run.stderr
    assert "torch" in modules and "nmt.translate" in modules
    assert not modules & NOT_FOR_TRANSLATING, sorted(modules & NOT_FOR_TRANSLATING)
    assert "ctranslate2" not in modules
    assert {m for m in modules if m.startswith("nmt_cli")} == CLI_FOR_TRANSLATING


def test_plot_csv_imports_no_torch(tiny_model_dir: Path) -> None:
    run_dir = tiny_model_dir.parent
    modules, run = imported(["plot", "--csv", "-", str(run_dir)])
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("run,run_dir,kind,step") and len(run.stdout.splitlines()) > 1
    assert "nmt.plot" in modules
    assert not {m for m in modules if m == "torch" or m.startswith("torch.")}, "nmt plot --csv imported torch"
    assert not modules & (TORCH_FREE_TOO | {"matplotlib", "nmt.rundir", "nmt.checkpoint"})


@pytest.mark.parametrize("which", ["run", "model", "data"])
def test_info_imports_no_torch(which: str, tiny_model_dir: Path, prepared_sample: Path) -> None:
    path = {"run": tiny_model_dir.parent, "model": tiny_model_dir, "data": prepared_sample}[which]
    modules, run = imported(["info", str(path)])
    assert run.returncode == 0, run.stderr
    assert "nmt.info" in modules
    assert not {m for m in modules if m == "torch" or m.startswith("torch.")}, f"nmt info on a {which} imported torch"
    assert not modules & (TORCH_FREE_TOO - {"numpy"})  # safetensors reads the weights' header through numpy


def test_only_nmt_distributed_imports_torch_distributed() -> None:
    """import-linter cannot name a part of an external package; this finds every import of torch.distributed
    in nmt/ (the contracts in pyproject.toml keep inference, info and plot away from nmt.distributed)."""
    importers = set()
    for path in sorted((ROOT / "nmt").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            if any(name == "torch.distributed" or name.startswith("torch.distributed.") for name in names):
                importers.add(path.relative_to(ROOT).as_posix())
    assert importers == {"nmt/distributed.py"}
