"""The shared recipe pipeline end to end on the bundled sample, with a tiny config, so CI keeps it working."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TINY_RECIPE = """
[recipe]
name = "sample tiny"
src = "en"
tgt = "fr"
valid = "val"
tests = ["test"]
optional_tests = ["test_2099_absent"]
vocab_size = 500
average_last = 2

[model]
d_model = 32
n_heads = 2
enc_layers = 1
dec_layers = 1
ffn_dim = 64

[train]
batch_tokens = 1500
lr = 0.003
warmup_steps = 10
max_steps = 30
log_every = 10
valid_every = 10
valid_max_sentences = 20

[decode]
beam_size = 2
"""


def test_recipe_pipeline_runs_end_to_end_on_the_sample(tmp_path, sample_dir):
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / "config.toml").write_text(TINY_RECIPE, encoding="utf-8")
    work = tmp_path / "work"
    result = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "pipeline.py"), "--recipe", str(recipe), "--data", str(sample_dir),
         "--work", str(work), "--threads", "1"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = (recipe / "RESULTS.md").read_text(encoding="utf-8")
    assert "| test | averaged |" in results and "| valid | best |" in results
    assert "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp" in results  # the sacreBLEU signature
    assert "nmt average" in results and "nmt translate" in results
    for split in ("valid", "test"):
        for model in ("best", "averaged"):
            hyp = (work / "hyp" / f"{split}.{model}.fr").read_text(encoding="utf-8")
            ref = (sample_dir / f"{'val' if split == 'valid' else split}.fr").read_text(encoding="utf-8")
            assert hyp.count("\n") == ref.count("\n")
    log = [json.loads(line) for line in (work / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["kind"] == "valid"] == [10, 20, 30]
    assert all("valid_chrf" in r for r in log if r["kind"] == "valid")
    assert (work / "averaged" / "model.safetensors").exists()
