"""SentencePiece BPE: train a model on text, encode text to ids and decode ids to text.
Knows nothing about torch, batches or models: strings in, lists of ints out."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import sentencepiece as spm

from nmt.errors import CheckpointError, ConfigError
from nmt.fileio import sha256_bytes


@dataclass(frozen=True)
class SpecialIds:
    """Fixed ids of the special symbols, the same in every vocabulary nmt trains."""

    pad: int = 0
    unk: int = 1
    bos: int = 2
    eos: int = 3


SPECIAL = SpecialIds()


def train_bpe(sentences: Iterable[str], vocab_size: int, seed_sentencepiece: int = 0) -> bytes:
    """Train a BPE model on already-cleaned sentences; returns the serialized model.

    Normalisation is the identity (the caller has already applied NFC and whitespace clean-up), so
    decoding the ids of a cleaned sentence gives that sentence back exactly. Character coverage 1.0
    and byte fallback mean no input character ever becomes <unk>.
    """
    del seed_sentencepiece  # BPE training is deterministic for a fixed input order
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=model,
            model_type="bpe",
            vocab_size=vocab_size,
            character_coverage=1.0,
            byte_fallback=True,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            split_digits=True,
            pad_id=SPECIAL.pad,
            unk_id=SPECIAL.unk,
            bos_id=SPECIAL.bos,
            eos_id=SPECIAL.eos,
            pad_piece="<pad>",
            unk_piece="<unk>",
            bos_piece="<s>",
            eos_piece="</s>",
            input_sentence_size=0,  # use every sentence: sampling would make the model depend on chance
            shuffle_input_sentence=False,
            max_sentence_length=1 << 16,
            num_threads=1,  # one thread: the merge order never depends on scheduling
            minloglevel=2,
        )
    except RuntimeError as e:
        message = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
        limit = re.search(r"Vocabulary size too high.*<= ?(\d+)", message)
        if limit:
            raise ConfigError(
                f"--vocab-size {vocab_size} is too large for this training text; choose at most {limit.group(1)}"
            ) from e
        too_small = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", message)
        if too_small:
            raise ConfigError(
                f"--vocab-size {vocab_size} is too small for the distinct characters of the training text; "
                f"choose at least {too_small.group(2)}"
            ) from e
        raise ConfigError(f"SentencePiece training failed: {message}") from e
    return model.getvalue()


class Tokenizer:
    """A SentencePiece model with nmt's fixed special ids."""

    def __init__(self, model_proto: bytes, source: str = "<memory>"):
        self.proto = model_proto
        self.source = source
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(model_proto)
        except Exception as e:
            raise CheckpointError(f"{source}: not a valid SentencePiece model; re-run `nmt prepare`") from e
        ids = (self.sp.pad_id(), self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id())
        if ids != (SPECIAL.pad, SPECIAL.unk, SPECIAL.bos, SPECIAL.eos):
            raise CheckpointError(
                f"{source}: special ids pad/unk/bos/eos are {ids}, nmt needs (0, 1, 2, 3); "
                "train the model with `nmt prepare`"
            )

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError as e:
            raise CheckpointError(f"{path}: SentencePiece model not found") from e
        return cls(data, str(path))

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.proto)

    def __len__(self) -> int:
        return cast(int, self.sp.get_piece_size())

    def encode(self, text: str) -> list[int]:
        return cast(list[int], self.sp.encode(text, out_type=int))

    def encode_batch(self, texts: list[str], threads: int | None = None) -> list[list[int]]:
        """Ids of each text; `threads` > 1 encodes on that many threads (same ids)."""
        return cast(list[list[int]], self.sp.encode(texts, out_type=int, num_threads=threads or 1))

    def decode(self, ids: list[int]) -> str:
        return cast(str, self.sp.decode(ids))

    def decode_batch(self, batch: list[list[int]]) -> list[str]:
        return cast(list[str], self.sp.decode(batch))

    def to_pieces(self, ids: list[int]) -> list[str]:
        """The subword pieces of ids, e.g. ['▁Comment', '▁ça', '▁va', '▁?']."""
        return [self.sp.id_to_piece(i) for i in ids]

    def pieces(self) -> list[str]:
        return self.to_pieces(list(range(len(self))))
