"""Carving held-out sets out of one corpus (recipes/carve.py): grouped by folded source sentence, the same for
the same seed, exact sizes or a clear error."""

from __future__ import annotations

import random

import pytest
from carve import fold, grouped_split

from nmt.errors import DataError

pytestmark = pytest.mark.unit


def _corpus_with_repeated_sources(n_groups: int = 400, seed: int = 0) -> list[str]:
    """Source sentences where many appear several times, in several spellings ('Hi.', 'hi !'), shuffled."""
    rng = random.Random(seed)
    sources = []
    for g in range(n_groups):
        for _ in range(rng.choice([1, 1, 1, 2, 3, 7])):
            sources.append(rng.choice([f"Sentence number {g}.", f"sentence  number {g} !", f"SENTENCE number {g}?"]))
    rng.shuffle(sources)
    return sources


def test_grouped_split_never_puts_one_source_on_two_sides():
    sources = _corpus_with_repeated_sources()
    keys = [fold(s) for s in sources]
    split = grouped_split(keys, {"valid": 60, "test": 150}, seed=1)
    assert {name: len(idx) for name, idx in split.items()} == {"train": len(sources) - 210, "valid": 60, "test": 150}
    assert sorted(i for idx in split.values() for i in idx) == list(range(len(sources)))  # each pair once
    sides = {name: {keys[i] for i in idx} for name, idx in split.items()}
    assert (
        not sides["train"] & sides["valid"]
        and not sides["train"] & sides["test"]
        and not sides["valid"] & sides["test"]
    )
    # the corpus has groups of several pairs, and some of them were held out whole
    held_out_groups = [k for k in sides["test"] if keys.count(k) > 1]
    assert held_out_groups


def test_grouped_split_is_the_same_every_time_and_depends_on_the_seed():
    keys = [fold(s) for s in _corpus_with_repeated_sources()]
    sizes = {"valid": 50, "test": 100}
    first = grouped_split(keys, sizes, seed=1)
    assert grouped_split(list(keys), dict(sizes), seed=1) == first
    assert grouped_split(keys, sizes, seed=2)["test"] != first["test"]
    # a group's side depends on its key, not on where the pairs sit in the file
    order = list(range(len(keys)))
    random.Random(3).shuffle(order)
    shuffled = grouped_split([keys[i] for i in order], sizes, seed=1)
    assert sorted(keys[order[i]] for i in shuffled["test"]) == sorted(keys[i] for i in first["test"])


def test_fold_groups_spellings_of_one_sentence():
    assert fold("How was your day?") == fold("how  was your DAY ?") == "how was your day"
    assert fold("Tom's here.") != fold("Tom is here.")


def test_grouped_split_refuses_impossible_sizes():
    with pytest.raises(DataError, match="cannot carve"):
        grouped_split(["a", "b", "c"], {"valid": 2, "test": 2}, seed=1)
    with pytest.raises(DataError, match="could not fill"):
        grouped_split(["a", "a", "a", "b"], {"valid": 2}, seed=1)
