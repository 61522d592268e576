"""Carving held-out sets out of one corpus, for recipes whose corpus has no official split (see pipeline.py's
`carve`): validation and test pairs chosen deterministically, grouped so that no source sentence sits on two
sides.

Knows nothing about files or nmt: sentences and sizes in, indices out. Imported as `carve` (pipeline.py
runs with this directory on its path; the tests get it from pytest's `pythonpath`)."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence

from nmt.errors import DataError


def fold(sentence: str) -> str:
    """The key under which near-identical sentences meet: case folded, punctuation and spacing ignored
    ('How was your day?' and 'how was your day ?' share one key)."""
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in sentence.casefold())
    return " ".join(text.split())


def grouped_split(keys: Sequence[str], sizes: dict[str, int], seed: int) -> dict[str, list[int]]:
    """Carve held-out sets of exactly `sizes[name]` items out of `keys`, never splitting a group.

    Items with the same key (for parallel text: the folded source sentence) always land on the same
    side, so a test set cannot be answered from memory of a training pair. Groups are visited in the
    order of sha256(seed, key), which depends on nothing but the key and the seed; each goes whole into
    the first held-out set that still has room for it, everything else into 'train'. Returns the
    indices of each set in corpus order.
    """
    if "train" in sizes or any(n < 0 for n in sizes.values()):
        raise DataError(f"held-out sizes must be non-negative and not named 'train', got {sizes}")
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    if sum(sizes.values()) > len(keys):
        raise DataError(f"cannot carve {sum(sizes.values()):,} held-out pairs out of a corpus of {len(keys):,}")
    order = sorted(groups, key=lambda k: hashlib.sha256(f"{seed}\t{k}".encode()).digest())
    room = dict(sizes)
    out: dict[str, list[int]] = {"train": [], **{name: [] for name in sizes}}
    for key in order:
        members = groups[key]
        name = next((n for n, left in room.items() if len(members) <= left), "train")
        if name != "train":
            room[name] -= len(members)
        out[name].extend(members)
    short = {n: left for n, left in room.items() if left}
    if short:
        raise DataError(f"could not fill the held-out sets exactly (missing {short}); choose smaller sizes")
    return {name: sorted(idx) for name, idx in out.items()}
