"""Parallel text → cleaned sentence pairs → id arrays on disk → token-budgeted `Batch`es, in three rooms:
`corpus` (reading text files and parallel corpora), `store` (the id arrays of a prepared split, in
safetensors) and `batches` (token-budgeted batches and the padded tensors of one). Their public names are
imported here, so that `from nmt.data import ...` reaches each.

Knows nothing about models or search: text files in, padded id tensors out. Carving held-out sets out of
one corpus lives beside the recipes that do it (recipes/carve.py)."""

from nmt.data.batches import Batch, TrainingData, collate, iterate_batches, token_batches
from nmt.data.corpus import (
    ParallelText,
    corpus_files,
    count_lines,
    iter_line_blocks,
    iter_lines,
    iter_parallel,
    iter_side_blocks,
    misaligned,
    read_lines,
    read_parallel,
)
from nmt.data.store import IDS_TENSORS, ParallelIds, write_ids

__all__ = [
    "IDS_TENSORS",
    "Batch",
    "ParallelIds",
    "ParallelText",
    "TrainingData",
    "collate",
    "corpus_files",
    "count_lines",
    "iter_line_blocks",
    "iter_lines",
    "iter_parallel",
    "iter_side_blocks",
    "iterate_batches",
    "misaligned",
    "read_lines",
    "read_parallel",
    "token_batches",
    "write_ids",
]
