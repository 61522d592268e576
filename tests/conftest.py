"""Shared fixtures (the bundled sample, prepared once per session; a tiny model trained once on it) and the
layers of the test pyramid. Every test is in exactly one layer, named by a marker (`pytest -m unit`):

- unit: one module on its own, no training and no files beyond tmp_path; milliseconds to a second.
- integration: several modules together (the CLI in-process among them), or the session's prepared sample or
  trained tiny model.
- system: the whole pipeline end to end (the `nmt` command in subprocesses, the slow quality gate) and the
  fault-injection tests of tests/faults.

A module names its layer with `pytestmark = pytest.mark.unit` (or integration, system), and a test may name
its own instead. A test that uses one of the SESSION fixtures below is at least an integration test, whatever
its module says, so a unit module's few tests of the trained model need no marker. Collection fails on a test
without a layer, with two, or whose own marker is below what its fixtures make it. The session ends with the
number of tests passed in each layer, just above pytest's own closing line.

Helpers that test modules share live in tests/helpers.py; no test module imports another."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from helpers import SAMPLE, TINY_MODEL

pytest_plugins = ["pytester"]  # test_layers.py runs pytest on small made-up test modules

LAYERS = ("unit", "integration", "system")  # bottom to top
SESSION = frozenset({"sample_dir", "prepared_sample", "tiny_model_dir"})  # data beyond tmp_path: integration
LAYER_OF = pytest.StashKey[dict[str, str]]()  # test id -> its layer


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


# ---------------------------------------------------------------------------------------------
# Layers


def layer_of(item: pytest.Item) -> str:
    """The layer `item` is in, or a UsageError saying why it has none."""
    named = None
    for node in reversed(item.listchain()):  # the test first, then its class, then its module: the nearest names it
        found = [mark.name for mark in node.own_markers if mark.name in LAYERS]
        if len(found) > 1:
            raise pytest.UsageError(f"{item.nodeid}: two layers ({', '.join(found)}); a test is in one")
        if found:
            named = found[0]
            break
    if named is None:
        raise pytest.UsageError(
            f"{item.nodeid}: no layer; add `pytestmark = pytest.mark.unit` (or integration, system) to its module "
            "(tests/conftest.py says which is which)"
        )
    floor = "integration" if SESSION & set(item.fixturenames) else "unit"
    if LAYERS.index(named) >= LAYERS.index(floor):
        return named
    if node is item:
        raise pytest.UsageError(
            f"{item.nodeid}: marked {named}, but it uses {', '.join(sorted(SESSION & set(item.fixturenames)))}"
        )
    return floor


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects, so that it sees the one layer each test ends with
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    layers = {item.nodeid: layer_of(item) for item in items}
    # A module's marker is shared by its tests, some of which the rule above may have moved up: take the layer
    # markers off every node and give each test its own one.
    for item in items:
        for node in item.listchain():
            node.own_markers[:] = [mark for mark in node.own_markers if mark.name not in LAYERS]
    for item in items:
        item.add_marker(layers[item.nodeid])
    config.stash[LAYER_OF] = layers


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    """'passed per layer: 210 unit, 240 integration, 90 system'; pytest's own summary line still comes last."""
    layers = config.stash.get(LAYER_OF, {})
    passed = Counter(layers.get(report.nodeid) for report in terminalreporter.stats.get("passed", []))
    if layers and not config.option.collectonly:
        terminalreporter.write_line("passed per layer: " + ", ".join(f"{passed[name]} {name}" for name in LAYERS))
