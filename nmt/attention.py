"""What the model looked at: the attention weights behind a translation, word alignments made from them, and
pictures of them.

The weights come from the model's own forward pass (`nmt.layers.recording_attention`), teacher-forced on the
translation the search found: source + EOS into the encoder, BOS + the output into the decoder. Row i of a
cross-attention map is the step that produced target piece i (the last row produced EOS); column j is source
piece j (the last column is the source's EOS). A test checks these rows against the ones the cached decoder
used while searching."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nmt.errors import ConfigError
from nmt.layers import recording_attention
from nmt.layout import ATTENTION_KINDS
from nmt.model import Transformer

KINDS = ATTENTION_KINDS
EOS_PIECE = "</s>"


@dataclass
class AttentionMaps:
    """One sentence's attention: for each kind, weights (layers, heads, queries, keys), and the pieces that
    label them: the source's (+ EOS) and the output's (+ EOS)."""

    src_pieces: list[str]
    tgt_pieces: list[str]
    cross: Tensor  # (layers, heads, len(tgt_pieces), len(src_pieces))
    encoder: Tensor  # (layers, heads, len(src_pieces), len(src_pieces))
    decoder: Tensor  # (layers, heads, len(tgt_pieces), len(tgt_pieces))

    def of(self, kind: str) -> Tensor:
        return {"cross": self.cross, "encoder": self.encoder, "decoder": self.decoder}[kind]

    def axes(self, kind: str) -> tuple[list[str], list[str]]:
        """(query labels, key labels) of a kind: rows, columns."""
        if kind == "cross":
            return self.tgt_pieces, self.src_pieces
        return (self.src_pieces, self.src_pieces) if kind == "encoder" else (self.tgt_pieces, self.tgt_pieces)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: the pieces and, per kind, weights[layer][head][row][column]."""
        return {
            "src_pieces": self.src_pieces,
            "tgt_pieces": self.tgt_pieces,
            **{kind: self.of(kind).tolist() for kind in KINDS},
        }


@torch.inference_mode()
def attention_maps(
    model: Transformer,
    src_ids: list[int],
    out_ids: list[int],
    src_pieces: list[str],
    out_pieces: list[str],
    *,
    bos_id: int,
    eos_id: int,
) -> AttentionMaps:
    """The attention of `model` translating `src_ids` into `out_ids` (ids without BOS/EOS; pieces label them)."""
    device = next(model.parameters()).device
    src = torch.tensor([[*src_ids, eos_id]], device=device)
    tgt_in = torch.tensor([[bos_id, *out_ids]], device=device)
    was_training = model.training
    model.eval()
    with recording_attention() as records:
        model(src, torch.tensor([src.size(1)], device=device), tgt_in)
    model.train(was_training)
    by_kind: dict[str, list[Tensor]] = {kind: [] for kind in KINDS}
    for name, weights in records:  # "encoder.0.self", "decoder.0.self", "decoder.0.cross", in layer order
        stack, _, what = name.split(".")
        by_kind["cross" if what == "cross" else stack].append(weights[0].float().cpu())  # (heads, q, k)
    return AttentionMaps(
        [*src_pieces, EOS_PIECE], [*out_pieces, EOS_PIECE], *(torch.stack(by_kind[kind]) for kind in KINDS)
    )


def alignment_layer(layers: int) -> int:
    """The decoder layer whose cross-attention aligns: the penultimate (the last when there is one). Garg et
    al. (2019, "Jointly Learning to Align and Translate with Transformer Models") found the penultimate layer's
    attention the best aligned in a 6-layer Transformer; the last layer attends more to what helps predict the
    next word than to its translation."""
    return max(layers - 2, 0)


def word_alignment(maps: AttentionMaps) -> list[tuple[int, int]]:
    """Source-target word pairs (Pharaoh `i-j`, 0-based), sorted: each target piece is aligned to the source
    piece it attends to most (EOS rows and columns left out; the heads of `alignment_layer` averaged), and
    pieces are merged into words (a word starts at a piece beginning with '▁')."""
    cross = maps.cross[alignment_layer(maps.cross.size(0))].mean(dim=0)  # (tgt + 1, src + 1)
    src_words, tgt_words = _word_index(maps.src_pieces[:-1]), _word_index(maps.tgt_pieces[:-1])
    if not src_words or not tgt_words:
        return []
    best = cross[: len(tgt_words), : len(src_words)].argmax(dim=1).tolist()
    return sorted({(src_words[s], tgt_words[t]) for t, s in enumerate(best)})


def _word_index(pieces: list[str]) -> list[int]:
    """The word each piece belongs to."""
    index, word = [], -1
    for i, piece in enumerate(pieces):
        if i == 0 or piece.startswith("▁"):
            word += 1
        index.append(word)
    return index


def pharaoh(pairs: list[tuple[int, int]]) -> str:
    return " ".join(f"{s}-{t}" for s, t in pairs)


# ---------------------------------------------------------------------------------------------
# Pictures (matplotlib, the optional extra nmt[plot])


def import_pyplot() -> Any:
    """matplotlib's pyplot on the headless Agg backend, or a one-line error saying how to install it."""
    try:
        import matplotlib
    except ImportError as e:
        raise ConfigError("pictures need matplotlib: pip install 'nmt[plot]' (or use --json)") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw(maps: AttentionMaps, kind: str, layer: int | None, head: int | str, path: Path, title: str = "") -> None:
    """Heatmaps of one kind of attention: `layer` None for every layer, `head` an index, "mean" or "all" (a
    grid: one row per layer, one column per head). Keys (the attended pieces) run along x, queries along y."""
    plt = import_pyplot()
    weights = maps.of(kind)  # (layers, heads, q, k)
    layers = list(range(weights.size(0))) if layer is None else [layer]
    heads: list[int | str] = list(range(weights.size(1))) if head == "all" else [head]
    rows_labels, cols_labels = maps.axes(kind)
    cell = 0.28  # inches per piece
    panel_w, panel_h = max(2.5, cell * len(cols_labels) + 1.2), max(2.0, cell * len(rows_labels) + 1.0)
    fig, axes = plt.subplots(
        len(layers), len(heads), figsize=(panel_w * len(heads), panel_h * len(layers)), squeeze=False
    )
    for r, lay in enumerate(layers):
        for c, h in enumerate(heads):
            grid = weights[lay].mean(dim=0) if h == "mean" else weights[lay, int(h)]
            ax = axes[r][c]
            ax.imshow(grid.numpy(), cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
            ax.set_xticks(range(len(cols_labels)), cols_labels, rotation=90, fontsize=8)
            ax.set_yticks(range(len(rows_labels)), rows_labels, fontsize=8)
            ax.set_title(f"{kind} layer {lay} " + ("mean of heads" if h == "mean" else f"head {h}"), fontsize=9)
    if title:
        fig.suptitle(textwrap.fill(title, width=max(30, int(panel_w * len(heads) * 11))), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
