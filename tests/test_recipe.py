"""The shared recipe pipeline end to end on the bundled sample, with a tiny config, so CI keeps it working."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import TINY_MODEL_TOML

from nmt.fileio import sha256_file

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.system

# a model and schedule small enough to train in seconds, shared by the recipes below
TINY_TABLES = (
    "\n"
    + TINY_MODEL_TOML
    + """
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
)

TINY_RECIPE = (
    """
[recipe]
name = "sample tiny"
src = "en"
tgt = "fr"
valid = "val"
tests = ["test"]
optional_tests = ["test_2099_absent"]
vocab_size = 500
average_last = 2
"""
    + TINY_TABLES
)


def test_recipe_pipeline_runs_end_to_end_on_the_sample(tmp_path, sample_dir):
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / "config.toml").write_text(TINY_RECIPE, encoding="utf-8")
    work = tmp_path / "work"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "recipes" / "pipeline.py"),
            "--recipe",
            str(recipe),
            "--data",
            str(sample_dir),
            "--work",
            str(work),
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
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


# -- a corpus without an official split: downloaded as a zip, carved by the pipeline ----------

sys.path.insert(0, str(ROOT / "recipes"))
import pipeline  # noqa: E402  (recipes/ is not a package)
from carve import fold  # noqa: E402

CARVED_RECIPE = (
    """
[recipe]
name = "carved tiny"
src = "en"
tgt = "fr"
corpus = "pairs"
download = "{url}"
download_langs = ["en", "fr"]
carve = {{ valid = 60, test = 100, seed = 7 }}
samples = "samples.en"
vocab_size = 500
average_last = 2
"""
    + TINY_TABLES
)


def _sample_pairs(sample_dir: Path) -> list[tuple[str, str]]:
    pairs = []
    for split in ("train", "val", "test"):
        en = (sample_dir / f"{split}.en").read_text(encoding="utf-8").splitlines()
        fr = (sample_dir / f"{split}.fr").read_text(encoding="utf-8").splitlines()
        pairs += zip(en, fr)
    # every third English sentence again, with another translation: one group of two pairs
    return pairs + [(en, f"{fr} (bis)") for en, fr in pairs[::3]]


def _zip_corpus(path: Path, pairs: list[tuple[str, str]], attribution: bool) -> str:
    """A zip shaped like manythings.org's: one tab-separated file (2 columns, or 3 with attribution)
    beside an _about.txt."""
    rows = [
        f"{en}\t{fr}\tCC-BY 2.0 (France) Attribution: tatoeba.org #{i}" if attribution else f"{en}\t{fr}"
        for i, (en, fr) in enumerate(pairs)
    ]
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("_about.txt", "About this file.\tNot data.\n")
        z.writestr("fra.txt", "\r\n".join(rows) + "\r\n")
    return path.as_uri()


def _recipe(tmp_path: Path, url: str) -> Path:
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / "config.toml").write_text(CARVED_RECIPE.format(url=url), encoding="utf-8")
    return recipe


@pytest.mark.integration
@pytest.mark.parametrize("attribution", [False, True], ids=["2 columns", "3 columns"])
def test_download_reads_both_zip_formats_and_carves_the_same_split(tmp_path, sample_dir, attribution):
    pairs = _sample_pairs(sample_dir)
    url = _zip_corpus(tmp_path / "fra-eng.zip", pairs, attribution)
    recipe = _recipe(tmp_path, url)
    carved = []
    for attempt in ("first", "second"):
        work = tmp_path / attempt
        p = pipeline.Pipeline(recipe, None, work, threads=1, results=None)
        data = p.get_data()
        en = gzip.decompress((data / "pairs.en.gz").read_bytes()).decode().splitlines()
        fr = gzip.decompress((data / "pairs.fr.gz").read_bytes()).decode().splitlines()
        assert list(zip(en, fr)) == pairs  # all pairs, in order, attribution column dropped
        p.carve()
        assert p.carved["sizes"] == {"train": len(pairs) - 160, "valid": 60, "test": 100}
        carved.append(p.carved["sha256"])
        sides = {
            s: {fold(line) for line in (work / "split" / f"{s}.en").read_text(encoding="utf-8").splitlines()}
            for s in ("train", "valid", "test")
        }
        assert not sides["train"] & (sides["valid"] | sides["test"]) and not sides["valid"] & sides["test"]
    assert carved[0] == carved[1]  # the same split, file for file


@pytest.mark.unit
def test_download_refuses_a_malformed_zip_line(tmp_path):
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as z:
        z.writestr("fra.txt", "Hello.\tBonjour.\nno tab on this line\n")
    p = pipeline.Pipeline(
        _recipe(tmp_path, (tmp_path / "bad.zip").as_uri()), None, tmp_path / "work", threads=1, results=None
    )
    with pytest.raises(SystemExit, match=r"bad.zip:fra.txt:2: expected 2 or 3 tab-separated columns, found 1"):
        p.get_data()


def test_carved_recipe_runs_end_to_end_with_its_samples(tmp_path, sample_dir):
    pairs = _sample_pairs(sample_dir)
    recipe = _recipe(tmp_path, _zip_corpus(tmp_path / "fra-eng.zip", pairs, attribution=True))
    seen = pairs[5][0]
    (recipe / "samples.en").write_text(f"A sentence that is in no corpus at all.\n{seen}\n", encoding="utf-8")
    work = tmp_path / "work"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "recipes" / "pipeline.py"),
            "--recipe",
            str(recipe),
            "--work",
            str(work),
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = (recipe / "RESULTS.md").read_text(encoding="utf-8")
    assert "| test | averaged |" in results and "## Data split" in results
    assert (
        f"train {len(pairs) - 160:,} pairs" in results and "valid 60 pairs" in results and "test 100 pairs" in results
    )
    for name in ("train.en", "valid.fr", "test.fr"):
        assert f"| {name} | `{sha256_file(work / 'split' / name)}` |" in results
    assert "1 of 2 do not occur" in results
    assert "| A sentence that is in no corpus at all. |" in results and f"| {seen} |" in results
    hyp = (work / "hyp" / "test.averaged.fr").read_text(encoding="utf-8")
    assert hyp.count("\n") == 100


# -- a recipe that fine-tunes: [recipe] init and general ----------------------------------------

ADAPT_RECIPE = """
[recipe]
name = "adapt tiny"
src = "en"
tgt = "fr"
valid = "val"
tests = ["test"]
init = "{init}"
general = {{ recipe = "{general}", data = "{general_data}", mix = {mix} }}
average_last = 2

[train]
batch_tokens = 1500
lr = 0.0005
warmup_steps = 2
schedule = "linear"
max_steps = 4
log_every = 2
valid_every = 2
valid_max_sentences = 10

[decode]
beam_size = 1
"""


def test_a_fine_tuning_recipe_scores_the_model_before_and_after_on_both_test_sets(tmp_path, sample_dir, tiny_model_dir):
    general_data = tmp_path / "general_data"
    general_data.mkdir()
    for lang in ("en", "fr"):  # the general corpus: the sample's test pairs, carved into train and test
        (general_data / f"pairs.{lang}").write_bytes((sample_dir / f"test.{lang}").read_bytes())
    general = tmp_path / "general"
    general.mkdir()
    (general / "config.toml").write_text(
        '[recipe]\nname = "general"\nsrc = "en"\ntgt = "fr"\ncorpus = "pairs"\n'
        "carve = { valid = 10, test = 30, seed = 2 }\n",
        encoding="utf-8",
    )
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    config = ADAPT_RECIPE.format(init=tiny_model_dir, general=general, general_data=general_data, mix=25)
    (recipe / "config.toml").write_text(config, encoding="utf-8")
    work = tmp_path / "work"
    args = ["--recipe", str(recipe), "--data", str(sample_dir), "--work", str(work), "--threads", "1"]
    result = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "pipeline.py"), *args], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"nmt prepare --src en --tgt fr --train {work / 'mixed' / 'train'}" in result.stdout
    assert f"--tokenizer {tiny_model_dir}" in result.stdout and f"--init {tiny_model_dir}" in result.stdout
    results = (recipe / "RESULTS.md").read_text(encoding="utf-8")
    for split in ("test", "pairs_test"):
        for model in ("before", "best", "averaged"):
            assert f"| {split} | {model} |" in results
    assert f"fine-tuned from `{tiny_model_dir.resolve()}`" in results
    train_en = (work / "mixed" / "train.en").read_text(encoding="utf-8").splitlines()
    carved_train = (work / "general" / "split" / "train.en").read_text(encoding="utf-8").splitlines()
    assert len(carved_train) == 200 - 40 and len(train_en) == 1971 + 25  # the sample's training pairs, then 25
    assert train_en[-25:] == [carved_train[i * 160 // 25] for i in range(25)]  # evenly spaced
    assert (work / "general" / "pairs_test.en").read_text(encoding="utf-8").count("\n") == 30
    config_json = json.loads((work / "run" / "config.json").read_text(encoding="utf-8"))
    assert config_json["init"]["path"] == str(tiny_model_dir.resolve())
