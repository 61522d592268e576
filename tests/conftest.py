"""Shared fixtures: the bundled sample corpus and one preparation of it per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import SAMPLE, TINY_MODEL


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def prepared_sample(tmp_path_factory) -> Path:
    """The bundled sample prepared once (small joint vocabulary), shared read-only by tests."""
    from nmt.prepare import PrepareConfig, prepare

    out = tmp_path_factory.mktemp("prepared") / "sample"
    cfg = PrepareConfig(
        src="en",
        tgt="fr",
        train=str(SAMPLE / "train"),
        valid=str(SAMPLE / "val"),
        tests=(str(SAMPLE / "test"),),
        vocab_size=1000,
    )
    prepare(cfg, out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(prepared_sample, tmp_path_factory) -> Path:
    """A tiny model trained for a few dozen steps on the sample: enough to emit real tokens."""
    import nmt.train as training
    from nmt.config import TrainConfig

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = TrainConfig(
        batch_tokens=1500,
        max_steps=40,
        warmup_steps=10,
        lr=3e-3,
        log_every=20,
        valid_every=40,
        valid_max_sentences=10,
        seed=1,
    )
    trainer = training.start(prepared_sample, run_dir, {**TINY_MODEL, "max_positions": 256}, cfg, threads=1)
    trainer.train()
    trainer.close()
    return run_dir / "best"
