"""Shared fixtures: the bundled sample corpus and one preparation of it per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def prepared_sample(tmp_path_factory) -> Path:
    """The bundled sample prepared once (small joint vocabulary), shared read-only by tests."""
    from nmt.prepare import PrepareConfig, prepare

    out = tmp_path_factory.mktemp("prepared") / "sample"
    cfg = PrepareConfig(
        src="en", tgt="fr", train=str(SAMPLE / "train"), valid=str(SAMPLE / "val"),
        tests=(str(SAMPLE / "test"),), vocab_size=1000,
    )
    prepare(cfg, out)
    return out
