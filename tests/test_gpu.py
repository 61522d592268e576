"""CUDA paths (`pytest -m gpu`, skipped without a GPU): training in fp32 and bf16, exact resumption with
deterministic algorithms, and translation that matches the CPU's."""

from __future__ import annotations

import pytest
import torch

pytestmark = [
    pytest.mark.integration,
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

MODEL = {"d_model": 64, "n_heads": 4, "enc_layers": 2, "dec_layers": 2, "ffn_dim": 128, "max_positions": 256}


def train_cfg(**changes):
    from nmt.config import TrainConfig

    values = dict(
        batch_tokens=1500,
        warmup_steps=10,
        lr=2e-3,
        log_every=10,
        valid_every=25,
        valid_max_sentences=20,
        seed=1,
        max_steps=50,
    )
    return TrainConfig(**{**values, **changes})


@pytest.fixture
def deterministic(monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fifty_steps_on_cuda(prepared_sample, tmp_path, precision):
    from faults.procs import log_records

    import nmt.train as training

    trainer = training.start(prepared_sample, tmp_path / "r", MODEL, train_cfg(precision=precision), device="cuda")
    assert trainer.device.type == "cuda" and trainer.ahead is not None  # pinned, collated ahead
    trainer.train()
    trainer.close()
    losses = [r["loss"] for r in log_records(tmp_path / "r") if r["kind"] == "train"]
    assert len(losses) == 5 and all(map(torch.isfinite, torch.tensor(losses)))
    assert losses[-1] < losses[0] - 0.5  # it learns


def test_resume_on_cuda_is_exact(prepared_sample, tmp_path, deterministic):
    from faults.procs import assert_same_run

    import nmt.train as training

    whole = training.start(prepared_sample, tmp_path / "whole", MODEL, train_cfg(), device="cuda")
    whole.train()
    whole.close()
    half = training.start(prepared_sample, tmp_path / "half", MODEL, train_cfg(max_steps=25), device="cuda")
    half.train()
    half.close()
    resumed = training.resume(tmp_path / "half", {"max_steps": 50}, device="cuda")
    resumed.train()
    resumed.close()
    assert_same_run(tmp_path / "half", tmp_path / "whole")


def test_translate_on_cuda_equals_cpu(tiny_model_dir, sample_dir):
    from nmt.config import DecodeConfig
    from nmt.translate import Translator

    lines = (sample_dir / "test.en").read_text(encoding="utf-8").splitlines()[:50]
    cpu = Translator.load(tiny_model_dir, DecodeConfig(beam_size=4), device="cpu", threads=1).translate_lines(lines)
    gpu = Translator.load(tiny_model_dir, DecodeConfig(beam_size=4), device="cuda").translate_lines(lines)
    assert [t.text for t in gpu] == [t.text for t in cpu]
