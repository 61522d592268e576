"""Training and checkpoints: exact save/load, exact resume, clear errors for damaged checkpoints,
run-directory safety (no silent overwrite, a lock), NaN detection, averaging, signals."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import TINY_MODEL

import nmt.runtime
import nmt.train as training
from nmt.checkpoint import average_checkpoints
from nmt.config import TrainConfig
from nmt.errors import CheckpointError, ConfigError
from nmt.modeldir import load_model_dir, save_model_dir
from nmt.train import TrainingError
from nmt.trainer import Trainer

pytestmark = pytest.mark.integration

TINY = {**TINY_MODEL, "dropout": 0.1}


def tiny_train(**changes) -> TrainConfig:
    base = dict(
        batch_tokens=600,
        max_steps=8,
        warmup_steps=4,
        log_every=1,
        valid_every=4,
        valid_max_sentences=8,
        keep_last=2,
        seed=3,
        lr=2e-3,
    )
    return TrainConfig(**{**base, **changes})


def losses(run_dir) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if r["kind"] == "train"]


def run(prepared, run_dir, **changes) -> Trainer:
    trainer = training.start(prepared, run_dir, TINY, tiny_train(**changes), threads=1)
    trainer.train()
    trainer.close()
    return trainer


def test_resumed_training_equals_uninterrupted(prepared_sample, tmp_path):
    full = run(prepared_sample, tmp_path / "full", max_steps=10, accum_steps=2)
    run(prepared_sample, tmp_path / "half", max_steps=5, accum_steps=2)  # stops mid-epoch at step 5
    resumed = training.resume(tmp_path / "half", {"max_steps": 10}, threads=1)
    assert resumed.state.step == 5
    resumed.train()
    resumed.close()
    assert losses(tmp_path / "half") == losses(tmp_path / "full")
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_run_dir_is_never_overwritten_silently(prepared_sample, tmp_path):
    run(prepared_sample, tmp_path / "r", max_steps=2, valid_every=2)
    with pytest.raises(
        ConfigError, match="already holds a run; continue it with `nmt train --resume .*`, or add --overwrite"
    ):
        training.start(prepared_sample, tmp_path / "r", TINY, tiny_train(), threads=1)
    trainer = training.start(prepared_sample, tmp_path / "r", TINY, tiny_train(max_steps=1), overwrite=True, threads=1)
    trainer.close()
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_second_trainer_on_the_same_run_dir_is_refused(prepared_sample, tmp_path):
    first = training.start(prepared_sample, tmp_path / "r", TINY, tiny_train(), threads=1)
    try:
        with pytest.raises(ConfigError, match="another `nmt train` is using this run directory"):
            training.resume(tmp_path / "r", threads=1)
    finally:
        first.close()


def test_checkpoints_keep_last_k_plus_best(prepared_sample, tmp_path):
    trainer = run(prepared_sample, tmp_path / "r", max_steps=12, valid_every=2, keep_last=2, early_stop_metric="loss")
    names = sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir())
    best = os.readlink(tmp_path / "r" / "best")
    assert os.readlink(tmp_path / "r" / "last").endswith("step_000012")
    assert set(names) == {"step_000010", "step_000012"} | {os.path.basename(best)}
    assert trainer.early.best_step is not None


def test_save_load_gives_identical_outputs(prepared_sample, tmp_path):
    trainer = run(prepared_sample, tmp_path / "r", max_steps=2, valid_every=2)
    loaded = load_model_dir(tmp_path / "r")  # a run directory means its best checkpoint
    trainer.model.eval()
    src = torch.tensor([[5, 6, 7, 3], [8, 9, 3, 0]])
    src_len = torch.tensor([4, 3])
    tgt = torch.tensor([[2, 10, 11], [2, 12, 0]])
    torch.testing.assert_close(loaded.model(src, src_len, tgt), trainer.model(src, src_len, tgt), rtol=0, atol=0)
    assert loaded.config["step"] == 2 and loaded.config["train"]["seed"] == 3


@pytest.fixture
def checkpoint(prepared_sample, tmp_path):
    run(prepared_sample, tmp_path / "r", max_steps=2, valid_every=2)
    return (tmp_path / "r" / "last").resolve()


def test_truncated_weights_are_a_clear_error(checkpoint):
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(
        CheckpointError, match="model.safetensors: unreadable safetensors file .* truncated or corrupted"
    ):
        load_model_dir(checkpoint)


def test_garbage_weights_are_a_clear_error(checkpoint):
    (checkpoint / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}     ")
    with pytest.raises(CheckpointError, match="unreadable safetensors file"):
        load_model_dir(checkpoint)


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "spm.model"])
def test_missing_file_is_a_clear_error(checkpoint, name):
    (checkpoint / name).unlink()
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        load_model_dir(checkpoint)


def test_mismatched_sentencepiece_model_is_refused(checkpoint, tmp_path):
    from nmt.tokenizer import train_bpe

    (checkpoint / "spm.model").write_bytes(train_bpe([f"sentence number {i}" for i in range(200)], 300))
    with pytest.raises(CheckpointError, match="spm.model: SentencePiece model does not match the checkpoint"):
        load_model_dir(checkpoint)


def test_config_with_wrong_types_is_a_clear_error(checkpoint):
    config = json.loads((checkpoint / "config.json").read_text())
    config["model"]["d_model"] = "wide"
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="invalid model config: .*d_model must be an integer"):
        load_model_dir(checkpoint)


def test_nan_loss_stops_without_a_poisoned_checkpoint(prepared_sample, tmp_path, monkeypatch):
    import nmt.loss

    trainer = training.start(prepared_sample, tmp_path / "r", TINY, tiny_train(max_steps=6), threads=1)
    real = nmt.loss._smoothed_loss_and_gradient  # what a training step's loss comes from

    def poisoned(logits, *args):
        loss, nll, grad = real(logits, *args)
        return (loss * float("nan") if trainer.state.step >= 4 else loss), nll, grad

    monkeypatch.setattr(nmt.loss, "_smoothed_loss_and_gradient", poisoned)
    with pytest.raises(TrainingError, match="step 5: the loss became nan"):
        trainer.train()
    trainer.close()
    assert os.readlink(tmp_path / "r" / "last").endswith("step_000004")
    load_model_dir(tmp_path / "r" / "last")  # the last checkpoint is intact and finite


def test_average_of_checkpoints_is_the_mean(prepared_sample, tmp_path):
    run(prepared_sample, tmp_path / "r", max_steps=4, valid_every=2)
    ckpts = sorted((tmp_path / "r" / "checkpoints").iterdir())
    average_checkpoints(ckpts, tmp_path / "avg")
    a, b = (load_model_dir(p).model.state_dict() for p in ckpts)
    avg = load_model_dir(tmp_path / "avg")
    for name, value in avg.model.state_dict().items():
        torch.testing.assert_close(value, (a[name] + b[name]) / 2)
    assert not (tmp_path / "avg" / "trainer.safetensors").exists()
    # it records what it averaged, and `nmt info` describes it so (not as its first checkpoint)
    assert avg.config["averaged_from"] == [str(p) for p in ckpts] and avg.config["averaged_steps"] == [2, 4]
    from nmt.info import describe

    desc = describe(tmp_path / "avg")
    assert (desc["step"], desc["valid"]) == (None, None) and avg.config["step"] == 2 and avg.config["valid"]
    assert desc["averaged"] == {"checkpoints": 2, "steps": [2, 4], "validated": False}


def test_save_model_dir_leaves_no_partial_directory_on_failure(prepared_sample, tmp_path, monkeypatch):
    trainer = run(prepared_sample, tmp_path / "r", max_steps=2, valid_every=2)
    import nmt.modeldir

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nmt.modeldir, "save_file", full_disk)
    with pytest.raises(OSError):
        save_model_dir(
            tmp_path / "r" / "checkpoints" / "step_000099", trainer.model, {"spm": {}}, {}, {"x": torch.zeros(1)}, {}
        )
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir()) == ["step_000002"]


@pytest.mark.system
def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(prepared_sample, tmp_path):
    args = [
        sys.executable,
        "-m",
        "nmt_cli.main",
        "train",
        str(prepared_sample),
        "--out",
        str(tmp_path / "r"),
        "--d-model",
        "32",
        "--n-heads",
        "2",
        "--enc-layers",
        "1",
        "--dec-layers",
        "1",
        "--ffn-dim",
        "64",
        "--batch-tokens",
        "400",
        "--max-steps",
        "100000",
        "--valid-every",
        "100000",
        "--log-every",
        "1",
        "--threads",
        "1",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # progress lines are on stderr
        if line.startswith("step"):
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert f"resume with: nmt train --resume {tmp_path / 'r'}" in stderr
    assert (tmp_path / "r" / "last" / "trainer.json").exists()
    step = json.loads((tmp_path / "r" / "last" / "trainer.json").read_text())["step"]
    assert step >= 1


def test_same_seed_same_losses_other_seed_other_losses(prepared_sample, tmp_path):
    a = losses(run(prepared_sample, tmp_path / "a", max_steps=4).run.path)
    b = losses(run(prepared_sample, tmp_path / "b", max_steps=4).run.path)
    c = losses(run(prepared_sample, tmp_path / "c", max_steps=4, seed=4).run.path)
    assert a == b and a != c


def test_bf16_training_tracks_fp32_and_keeps_fp32_weights(prepared_sample, tmp_path):
    """--precision bf16 autocasts the matmuls only: the weights, optimizer state and checkpoints
    stay float32, and the losses follow the fp32 run's (same seed, same batches). Measured on this
    tiny model: the bf16 losses within 0.01% of fp32's over 8 updates; the bound is 0.5%."""
    fp32 = run(prepared_sample, tmp_path / "fp32")
    bf16 = run(prepared_sample, tmp_path / "bf16", precision="bf16")
    a, b = losses(tmp_path / "fp32"), losses(tmp_path / "bf16")
    assert [s for s, _ in a] == [s for s, _ in b]
    assert all(abs(y / x - 1) < 0.005 for (_, x), (_, y) in zip(a, b)), (a, b)
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())
    loaded = load_model_dir(tmp_path / "bf16" / "last")
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    # and it did compute in bf16: the weights differ from the fp32 run's
    assert any(not torch.equal(p, q) for p, q in zip(fp32.model.parameters(), bf16.model.parameters()))


def test_loss_in_chunks_gives_the_whole_batch_gradients(prepared_sample, tmp_path, monkeypatch):
    """A step makes the logits a few target tokens at a time (bounded memory); its loss and gradients are
    those of the loss over the whole batch's logits at once."""
    import nmt.loss
    from nmt.loss import label_smoothed_loss
    from nmt.tokenizer import SPECIAL

    trainer = training.start(prepared_sample, tmp_path / "r", {**TINY, "dropout": 0.0}, tiny_train(), threads=1)
    batches = (trainer.data.batch(index, SPECIAL.pad, SPECIAL.bos, SPECIAL.eos) for index in trainer.data.epoch(0))
    batch = next(b for b in batches if (b.tgt_out == SPECIAL.pad).any())  # with padding, which gets no logits in chunks
    model = trainer.model
    loss, nll = label_smoothed_loss(model(batch.src, batch.src_len, batch.tgt_in), batch.tgt_out, 0.1, SPECIAL.pad)
    (loss / batch.n_tokens).backward()
    whole = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    monkeypatch.setattr(nmt.loss, "LOSS_CHUNK", 7)  # many chunks, the last one short
    states = model.decode_states(batch.tgt_in, model.encode(batch.src, batch.src_len))
    scaled, loss_sum, nll_sum = nmt.loss.chunked_loss(
        states, model.output_proj.weight, batch.tgt_out, batch.rows, 0.1, batch.n_tokens
    )
    scaled.backward()  # one backward pass (what DistributedDataParallel needs)
    trainer.close()
    assert len(batch.rows) == batch.n_tokens
    assert (float(scaled.detach()) * batch.n_tokens, float(loss_sum), float(nll_sum)) == pytest.approx(
        (float(loss.detach()), float(loss.detach()), float(nll)), rel=1e-5
    )
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, whole[name], rtol=1e-4, atol=1e-6, msg=name)


def test_batches_collated_ahead_on_a_thread_give_the_same_run(prepared_sample, tmp_path):
    """What a GPU run does (the next update's batches made on a background thread while this one runs), here on
    the CPU: the same losses, step by step, as making them in turn."""
    from concurrent.futures import ThreadPoolExecutor

    plain = run(prepared_sample, tmp_path / "plain", max_steps=8, accum_steps=2)
    trainer = training.start(
        prepared_sample, tmp_path / "ahead", TINY, tiny_train(max_steps=8, accum_steps=2), threads=1
    )
    assert trainer.ahead is None  # on the CPU it is off by default
    trainer.ahead = ThreadPoolExecutor(1)
    trainer.train()
    trainer.close()
    assert losses(tmp_path / "ahead") == losses(plain.run.path)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_release_freed_memory_gives_back_what_keep_freed_memory_keeps():
    from nmt.runtime import keep_freed_memory, release_freed_memory

    keep_freed_memory()
    held = bytearray(64 << 20)  # on the heap, not mmap'd, once the thresholds are up
    del held
    assert release_freed_memory() is True  # 64 MB of freed heap to hand back
    assert isinstance(release_freed_memory(), bool)


def test_training_releases_freed_memory_every_so_often_and_after_each_validation(
    prepared_sample, tmp_path, monkeypatch
):
    calls: list[int] = []  # the step at each call
    trainer: Trainer | None = None

    def release() -> bool:
        calls.append(trainer.state.step if trainer else -1)
        return True

    monkeypatch.setattr(nmt.runtime, "RELEASE_EVERY", 3)
    monkeypatch.setattr(nmt.runtime, "release_freed_memory", release)
    trainer = training.start(prepared_sample, tmp_path / "r", TINY, tiny_train(max_steps=8, valid_every=4), threads=1)
    trainer.train()
    trainer.close()
    assert calls == [3, 4, 6, 8]  # every 3 updates, and after the validations at steps 4 and 8
