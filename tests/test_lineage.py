"""Starting from a model that exists: `nmt prepare --tokenizer MODEL` encodes with the model's own tokenizers (no
new vocabulary; pairs it cannot cover counted and shown), `nmt train --init MODEL` starts from its weights and shape
with a fresh optimizer, resumes exactly, and the run, its checkpoints and their average say where they started
(`nmt info`); the settings that contradict the model are one-line errors."""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece as spm
import torch
from helpers import TINY_MODEL, one_error_line, tiny_config
from nmt_cli.main import app
from typer.testing import CliRunner

import nmt.prepare
import nmt.train as training
from nmt.checkpoint import average_checkpoints
from nmt.config import PrepareConfig, TrainConfig
from nmt.data import ParallelIds, read_lines
from nmt.errors import ConfigError
from nmt.fileio import sha256_file
from nmt.model import build_model
from nmt.modeldir import load_model_dir, save_model_dir
from nmt.optim import lr_at
from nmt.prepare import prepare
from nmt.tokenizer import SPECIAL
from nmt.update import TrainingLoss

pytestmark = pytest.mark.integration

runner = CliRunner()


def tiny_train(**changes) -> TrainConfig:
    base = dict(
        batch_tokens=600,
        max_steps=6,
        warmup_steps=2,
        log_every=1,
        valid_every=3,
        valid_max_sentences=8,
        keep_last=2,
        seed=3,
        lr=1e-3,
    )
    return TrainConfig(**{**base, **changes})


def losses(run_dir: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if r["kind"] == "train"]


def corpus(tmp_path: Path, sample_dir: Path, n: int = 120, extra: dict[int, str] | None = None) -> tuple[Path, Path]:
    """The first `n` training pairs of the sample as a prefix corpus (and 20 for validation); `extra` appends a
    text to the source line of the pairs it names (0-based)."""
    for lang in ("en", "fr"):
        lines = (sample_dir / f"train.{lang}").read_text(encoding="utf-8").splitlines()[:n]
        if lang == "en":
            lines = [line + (extra or {}).get(i, "") for i, line in enumerate(lines)]
        (tmp_path / f"c.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (tmp_path / f"v.{lang}").write_text("\n".join(lines[:20]) + "\n", encoding="utf-8")
    return tmp_path / "c", tmp_path / "v"


def prepare_config(train: Path, valid: Path, **changes) -> PrepareConfig:
    return PrepareConfig(src="en", tgt="fr", train=str(train), valid=str(valid), **changes)


# ---------------------------------------------------------------------------------------------
# nmt prepare --tokenizer MODEL


def test_prepare_with_a_models_tokenizer_gives_its_ids_and_trains_no_sentencepiece(
    tiny_model_dir, sample_dir, tmp_path, monkeypatch
):
    def no_training(*args, **kwargs):
        raise AssertionError("prepare --tokenizer trained a SentencePiece model")

    monkeypatch.setattr(nmt.prepare, "train_bpe", no_training)
    train, valid = corpus(tmp_path, sample_dir)
    out = prepare(prepare_config(train, valid), tmp_path / "data", tokenizer=tiny_model_dir).out
    model = load_model_dir(tiny_model_dir)
    summary = json.loads((out / "prepare.json").read_text(encoding="utf-8"))
    config = model.config
    assert (out / "spm.model").read_bytes() == (tiny_model_dir / "spm.model").read_bytes()
    assert summary["spm"]["sha256"] == config["spm_sha256"] and summary["spm"]["src"] == config["spm"]["src"]
    assert summary["vocab_size"] == {"src": len(model.src_tokenizer), "tgt": len(model.tgt_tokenizer)}
    assert summary["special_ids"] == {"pad": SPECIAL.pad, "unk": SPECIAL.unk, "bos": SPECIAL.bos, "eos": SPECIAL.eos}
    assert summary["tokenizer"] == {"path": str(tiny_model_dir.resolve()), "sha256": config["spm_sha256"]}
    assert "vocab_size" not in summary["settings"] and "joint" not in summary["settings"]
    for split in ("train", "valid"):
        ids = ParallelIds.load(out / f"{split}.ids.safetensors")
        src, tgt = read_lines(out / f"{split}.en"), read_lines(out / f"{split}.fr")
        assert len(ids) == len(src) > 0
        for i in range(len(ids)):
            assert ids.src(i).tolist() == model.src_tokenizer.encode(src[i])
            assert ids.tgt(i).tolist() == model.tgt_tokenizer.encode(tgt[i])
        assert summary["splits"][split]["unk"] == {"pairs": 0, "kept": 0, "examples": []}


@pytest.mark.parametrize("separate_vocabs", [False, True])
def test_prepare_and_init_with_an_imported_models_vocabulary_keep_its_ids_and_specials(
    sample_dir, tmp_path, separate_vocabs
):
    from helpers import save_marian

    model_dir = save_marian(tmp_path / "marian", separate_vocabs=separate_vocabs)
    model = load_model_dir(model_dir)
    train, valid = corpus(tmp_path, sample_dir, n=60)
    out = prepare(prepare_config(train, valid), tmp_path / "data", tokenizer=model_dir).out
    summary = json.loads((out / "prepare.json").read_text(encoding="utf-8"))
    specials = model.tgt_tokenizer.specials
    assert specials.bos == specials.pad != SPECIAL.pad  # Marian's: the decoder starts from <pad>, the last id
    assert summary["special_ids"] == {
        "pad": specials.pad,
        "unk": specials.unk,
        "bos": specials.bos,
        "eos": specials.eos,
    }
    assert summary["vocab"]["sha256"] == model.config["vocab_sha256"]
    assert {k: summary["vocab"][k] for k in ("src", "tgt")} == model.config["vocab"]
    for name in model.config["vocab_sha256"]:
        assert (out / name).read_bytes() == (model_dir / name).read_bytes()
    ids = ParallelIds.load(out / "train.ids.safetensors")
    src, tgt = read_lines(out / "train.en"), read_lines(out / "train.fr")
    assert [ids.src(i).tolist() for i in range(len(ids))] == model.src_tokenizer.encode_batch(src)
    assert [ids.tgt(i).tolist() for i in range(len(ids))] == model.tgt_tokenizer.encode_batch(tgt)
    # a run started from the model trains on these ids and its checkpoints carry the vocabulary
    trainer = training.start(
        out,
        tmp_path / "r",
        {},
        tiny_train(max_steps=1, valid_bleu=False, early_stop_metric="loss"),
        threads=1,
        init=model_dir,
    )
    trainer.train()
    trainer.close()
    last = load_model_dir(tmp_path / "r" / "last")
    assert last.tgt_tokenizer.specials == specials and last.config["vocab_sha256"] == model.config["vocab_sha256"]


def test_the_same_preparation_is_reused_and_another_model_is_another_preparation(tiny_model_dir, sample_dir, tmp_path):
    train, valid = corpus(tmp_path, sample_dir)
    cfg = prepare_config(train, valid)
    assert not prepare(cfg, tmp_path / "data", tokenizer=tiny_model_dir).reused
    assert prepare(cfg, tmp_path / "data", tokenizer=tiny_model_dir).reused
    with pytest.raises(Exception, match="already holds a different preparation"):
        prepare(cfg, tmp_path / "data")  # a vocabulary of its own: not the same preparation


def test_every_tokenizer_file_the_model_records_is_copied_and_checked(tiny_model_dir, sample_dir, tmp_path):
    """A tokenizer may be more than its SentencePiece model (an id map beside it): whatever the model's config.json
    records a sha256 for is copied into the data, checked on the way."""
    loaded = load_model_dir(tiny_model_dir)
    files = {"spm.model": (tiny_model_dir / "spm.model").read_bytes(), "vocab.json": b'{"<pad>": 0}'}
    model = save_model_dir(tmp_path / "m", loaded.model, {"spm": loaded.config["spm"]}, files)
    train, valid = corpus(tmp_path, sample_dir)
    out = prepare(prepare_config(train, valid), tmp_path / "data", tokenizer=model).out
    assert (out / "vocab.json").read_bytes() == files["vocab.json"]
    assert set(json.loads((out / "prepare.json").read_text())["spm"]["sha256"]) == {"spm.model", "vocab.json"}
    (model / "vocab.json").write_bytes(b'{"<pad>": 1}')
    with pytest.raises(Exception, match="vocab.json: does not match the sha256 the model records"):
        prepare(prepare_config(train, valid), tmp_path / "data2", tokenizer=model)


@pytest.mark.parametrize("flag", [["--vocab-size", "400"], ["--separate"]], ids=["vocab-size", "separate"])
def test_a_vocabulary_setting_conflicts_with_tokenizer(tiny_model_dir, sample_dir, tmp_path, flag):
    train, valid = corpus(tmp_path, sample_dir)
    args = ["prepare", "-s", "en", "-t", "fr", "--train", str(train), "--valid", str(valid)]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "d"), "--tokenizer", str(tiny_model_dir), *flag])
    one_error_line(result, flag[0].split("/")[0] if flag[0] != "--separate" else "--joint/--separate", "--tokenizer")
    assert not (tmp_path / "d").exists()


def model_without_byte_fallback(tmp_path: Path, sample_dir: Path) -> Path:
    """A model directory whose SentencePiece model has no byte fallback (as models made elsewhere may have): a
    character it never saw becomes <unk>. Its weights are random: only its tokenizer is used."""
    text = (sample_dir / "train.en").read_text(encoding="utf-8").splitlines()[:300]
    text += (sample_dir / "train.fr").read_text(encoding="utf-8").splitlines()[:300]
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text),
        model_writer=proto,
        model_type="bpe",
        vocab_size=300,
        hard_vocab_limit=False,
        character_coverage=1.0,
        byte_fallback=False,
        pad_id=SPECIAL.pad,
        unk_id=SPECIAL.unk,
        bos_id=SPECIAL.bos,
        eos_id=SPECIAL.eos,
        minloglevel=2,
    )
    data = proto.getvalue()
    size = spm.SentencePieceProcessor(model_proto=data).get_piece_size()
    model = build_model(tiny_config(vocab=size))
    names = {"src": "spm.model", "tgt": "spm.model"}
    return save_model_dir(tmp_path / "foreign", model, {"spm": names}, {"spm.model": data})


def test_pairs_the_vocabulary_cannot_cover_are_counted_and_shown(sample_dir, tmp_path):
    model = model_without_byte_fallback(tmp_path, sample_dir)
    snowman = {4: " ☃", 9: " ☃☃", 50: " ☃"}  # a character the tokenizer never saw, on lines 5, 10 and 51
    train, valid = corpus(tmp_path, sample_dir, extra=snowman)
    args = ["prepare", "-s", "en", "-t", "fr", "--train", str(train), "--valid", str(valid)]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "d"), "--tokenizer", str(model)])
    assert result.exit_code == 0, result.output
    assert "pairs holding <unk> (the vocabulary cannot cover them): train 3 (3 kept, 0 dropped" in result.stdout
    for line in (5, 10, 51):
        assert f"{train}.en:{line}\n" in result.stdout
    summary = json.loads((tmp_path / "d" / "prepare.json").read_text(encoding="utf-8"))
    assert summary["splits"]["train"]["unk"] == {
        "pairs": 3,
        "kept": 3,
        "examples": [f"{train}.en:{n}" for n in (5, 10, 51)],
    }
    assert summary["splits"]["valid"]["unk"]["pairs"] == 2  # the validation pairs are the first 20 lines
    ids = ParallelIds.load(tmp_path / "d" / "train.ids.safetensors")
    assert [i for i in range(len(ids)) if SPECIAL.unk in ids.src(i).tolist()] == [4, 9, 50]  # kept, as encoded


def test_pairs_with_unk_that_a_filter_drops_are_counted_as_dropped(sample_dir, tmp_path):
    model = model_without_byte_fallback(tmp_path, sample_dir)
    train, valid = corpus(tmp_path, sample_dir, extra={4: " ☃", 9: " ☃ " + "word " * 300})  # line 10: too long
    cfg = prepare_config(train, valid, max_len=200)
    summary = prepare(cfg, tmp_path / "d", tokenizer=model).summary
    assert summary["splits"]["train"]["unk"]["pairs"] == 2 and summary["splits"]["train"]["unk"]["kept"] == 1
    assert summary["splits"]["train"]["filtered"]["too_long"] == 1


# ---------------------------------------------------------------------------------------------
# nmt train --init MODEL (the prepared sample is encoded with the tiny model's tokenizer: the model was trained on it)


def test_init_starts_from_the_models_weights_and_its_loss_with_a_fresh_optimizer(
    prepared_sample, tiny_model_dir, tmp_path
):
    cfg = tiny_train(max_steps=1)
    trainer = training.start(prepared_sample, tmp_path / "r", {}, cfg, threads=1, init=tiny_model_dir)
    model = load_model_dir(tiny_model_dir)
    assert trainer.model.config == model.model.config
    for (name, ours), (_, theirs) in zip(trainer.model.state_dict().items(), model.model.state_dict().items()):
        assert torch.equal(ours, theirs), name
    assert not trainer.optimizer.state  # fresh: no moments yet
    # the loss of the first update is the model's own loss on that batch (the same dropout draws: the same RNG)
    first = trainer.data.epoch(0)[0]
    batch = trainer.data.batch(first, SPECIAL.pad, SPECIAL.bos, SPECIAL.eos)
    tokens = trainer.data.target_tokens(first)
    with torch.random.fork_rng():
        _, loss_sum, _ = TrainingLoss(model.model.train(), cfg, torch.device("cpu"))(batch, tokens)
    trainer.train()
    trainer.close()
    record = json.loads((tmp_path / "r" / "train_log.jsonl").read_text().splitlines()[0])
    assert record["step"] == 1 and record["loss"] == pytest.approx(loss_sum.item() / tokens, rel=1e-6)
    assert record["lr"] == lr_at(1, cfg)  # the schedule starts over
    weights = tiny_model_dir / "model.safetensors"
    init = json.loads((tmp_path / "r" / "config.json").read_text())["init"]
    assert init == {
        "path": str(tiny_model_dir.resolve()),
        "model_sha256": sha256_file(weights),
        "config_sha256": sha256_file(tiny_model_dir / "config.json"),
    }
    assert json.loads((tmp_path / "r" / "last" / "config.json").read_text())["init"] == init


def test_resume_of_an_init_run_gives_the_uninterrupted_losses_without_reading_the_model_again(
    prepared_sample, tiny_model_dir, tmp_path
):
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    full = training.start(prepared_sample, tmp_path / "full", {}, tiny_train(), threads=1, init=model)
    full.train()
    full.close()
    half = training.start(prepared_sample, tmp_path / "half", {}, tiny_train(max_steps=4), threads=1, init=model)
    half.train()  # checkpoints at step 3 and stops at 4, as a kill after step 4 leaves it: resumed from step 4
    half.close()
    shutil.rmtree(model)  # its weights are in the checkpoint
    resumed = training.resume(tmp_path / "half", {"max_steps": 6}, threads=1)
    assert resumed.state.step == 4
    resumed.train()
    resumed.close()
    assert losses(tmp_path / "half") == losses(tmp_path / "full")
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    last = json.loads((tmp_path / "half" / "last" / "config.json").read_text())
    assert last["init"]["path"] == str(model)  # the lineage goes on in the checkpoints after the resume


def test_an_init_run_killed_before_its_first_checkpoint_starts_over_from_the_model(
    prepared_sample, tiny_model_dir, tmp_path
):
    full = training.start(prepared_sample, tmp_path / "full", {}, tiny_train(), threads=1, init=tiny_model_dir)
    full.train()
    full.close()
    killed = training.start(prepared_sample, tmp_path / "k", {}, tiny_train(), threads=1, init=tiny_model_dir)
    killed.close()  # no checkpoint yet
    resumed = training.resume(tmp_path / "k", threads=1)
    resumed.train()
    resumed.close()
    assert losses(tmp_path / "k") == losses(tmp_path / "full")


def test_a_changed_model_is_refused_when_a_run_must_start_over_from_it(prepared_sample, tiny_model_dir, tmp_path):
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    training.start(prepared_sample, tmp_path / "k", {}, tiny_train(), threads=1, init=model).close()
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "note": "edited"}))
    with pytest.raises(Exception, match="which has changed since"):
        training.resume(tmp_path / "k", threads=1)


def test_a_model_setting_that_agrees_with_the_model_is_accepted(prepared_sample, tiny_model_dir, tmp_path):
    trainer = training.start(
        prepared_sample, tmp_path / "r", dict(TINY_MODEL), tiny_train(), threads=1, init=tiny_model_dir
    )
    trainer.close()
    with pytest.raises(ConfigError, match="d_model 64 conflicts with --init .*, whose d_model is 32"):
        training.start(prepared_sample, tmp_path / "r2", {"d_model": 64}, tiny_train(), threads=1, init=tiny_model_dir)


# -- the command line: one-line errors, and what nmt info shows --------------------------------


def train_args(data: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return ["train", str(data), "--out", str(out), "--init", str(model), "--threads", "1", *extra]


def test_a_conflicting_model_flag_is_a_one_line_error(prepared_sample, tiny_model_dir, tmp_path):
    result = runner.invoke(app, train_args(prepared_sample, tmp_path / "r", tiny_model_dir, "--d-model", "64"))
    one_error_line(result, f"--d-model 64 conflicts with --init {tiny_model_dir}", "d_model is 32")
    assert not (tmp_path / "r").exists()


def test_a_conflicting_model_table_is_a_one_line_error(prepared_sample, tiny_model_dir, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[model]\nn_heads = 4\n", encoding="utf-8")
    result = runner.invoke(app, train_args(prepared_sample, tmp_path / "r", tiny_model_dir, "--config", str(config)))
    one_error_line(result, f"{config} [model] n_heads 4", "n_heads is 2")


def test_data_with_another_vocabulary_is_a_one_line_error(sample_dir, tiny_model_dir, tmp_path):
    train, valid = corpus(tmp_path, sample_dir)
    data = prepare(prepare_config(train, valid, vocab_size=400), tmp_path / "data").out
    result = runner.invoke(app, train_args(data, tmp_path / "r", tiny_model_dir))
    one_error_line(result, "vocabulary is not that of", f"nmt prepare ... --tokenizer {tiny_model_dir}`")
    assert not (tmp_path / "r").exists()


def test_data_in_the_other_direction_is_a_one_line_error(sample_dir, tiny_model_dir, tmp_path):
    train, valid = corpus(tmp_path, sample_dir)
    cfg = PrepareConfig(src="fr", tgt="en", train=str(train), valid=str(valid))
    data = prepare(cfg, tmp_path / "data", tokenizer=tiny_model_dir).out  # one vocabulary: it encodes either way
    result = runner.invoke(app, train_args(data, tmp_path / "r", tiny_model_dir))
    one_error_line(result, "prepared for fr→en", "translates en→fr", "--src en --tgt fr")


def test_dump_config_with_init_shows_the_models_settings(prepared_sample, tiny_model_dir, tmp_path):
    result = runner.invoke(app, [*train_args(prepared_sample, tmp_path / "r", tiny_model_dir), "--dump-config"])
    assert result.exit_code == 0, result.output
    model = load_model_dir(tiny_model_dir).model.config
    for key in ("d_model", "n_heads", "enc_layers", "ffn_dim", "max_positions"):
        assert f"\n{key} = {getattr(model, key)}\n" in result.stdout
    assert not (tmp_path / "r").exists()


def test_init_with_resume_is_a_one_line_error(tiny_model_dir):
    result = runner.invoke(app, ["train", "--resume", str(tiny_model_dir.parent), "--init", str(tiny_model_dir)])
    one_error_line(result, "--init", "--resume")


def test_info_shows_where_a_run_its_checkpoints_and_their_average_started(prepared_sample, tiny_model_dir, tmp_path):
    run = tmp_path / "r"
    result = runner.invoke(
        app, train_args(prepared_sample, run, tiny_model_dir, "--max-steps", "4", "--valid-every", "2", "-q")
    )
    assert result.exit_code == 0, result.output
    assert f"note: starting from {tiny_model_dir.resolve()}" in result.stderr
    average_checkpoints(sorted((run / "checkpoints").iterdir()), tmp_path / "avg")
    digest = sha256_file(tiny_model_dir / "model.safetensors")
    shown = f"initialised from {tiny_model_dir.resolve()} (sha256 {digest[:16]}…)"
    for path in (run, run / "last", tmp_path / "avg"):
        described = runner.invoke(app, ["info", str(path)])
        assert described.exit_code == 0, described.output
        assert shown in described.stdout, (path, described.stdout)
        as_json = json.loads(runner.invoke(app, ["info", "--json", str(path)]).stdout)
        assert as_json["init"]["model_sha256"] == digest
    data = runner.invoke(app, ["info", str(prepared_sample)])
    assert "initialised from" not in data.stdout and "tokenizer" not in data.stdout  # a data's own vocabulary


@pytest.mark.system
def test_an_init_run_killed_by_sigterm_resumes_with_the_losses_of_the_uninterrupted_run(
    prepared_sample, tiny_model_dir, tmp_path
):
    def command(run: Path, *extra: str) -> list[str]:
        limits = ["--max-steps", "12", "--valid-every", "4", "--valid-max-sentences", "8", "--log-every", "1"]
        limits += ["--batch-tokens", "400"]
        return [sys.executable, "-m", "nmt_cli.main", *train_args(prepared_sample, run, tiny_model_dir, *limits)]

    subprocess.run(command(tmp_path / "full"), check=True, capture_output=True, timeout=300)
    proc = subprocess.Popen(command(tmp_path / "k"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # progress lines are on stderr
        if line.startswith("step"):
            break
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    stopped = json.loads((tmp_path / "k" / "last" / "trainer.json").read_text())["step"]
    assert 1 <= stopped < 12
    resumed = runner.invoke(app, ["train", "--resume", str(tmp_path / "k"), "--threads", "1", "-q"])
    assert resumed.exit_code == 0, resumed.output
    assert losses(tmp_path / "k") == losses(tmp_path / "full")
