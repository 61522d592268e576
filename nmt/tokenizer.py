"""SentencePiece BPE: train a model on text, encode text to ids and decode ids to text, with SentencePiece's own
ids (nmt's vocabularies) or through a vocabulary that maps its pieces to other ids (Marian's vocab.json, which
OPUS-MT shares between a source and a target SentencePiece model). Knows nothing about torch, batches or models:
strings in, lists of ints out."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import sentencepiece as spm

from nmt.errors import CheckpointError, ConfigError
from nmt.fileio import sha256_bytes


@dataclass(frozen=True)
class SpecialIds:
    """Ids of a vocabulary's special symbols. `bos` is the token the decoder starts from; `eos` ends the source
    and the output. Every vocabulary nmt trains has the defaults (SPECIAL); an imported one has its own
    (`Tokenizer.specials`: Marian's decoder starts from pad, bos == pad)."""

    pad: int = 0
    unk: int = 1
    bos: int = 2
    eos: int = 3


SPECIAL = SpecialIds()  # the ids of every vocabulary nmt trains (train_bpe)
# the pieces a vocabulary map must hold; Marian has no <s>: its decoder starts from <pad>
PAD_PIECE, UNK_PIECE, EOS_PIECE = "<pad>", "<unk>", "</s>"


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
    """A SentencePiece model; its ids are SentencePiece's own (nmt's fixed special ids), or, with `vocab`, the ones
    a vocabulary gives its pieces ({piece: id}, ids 0..n-1 each once, with <pad>, <unk> and </s>): encoding
    is text -> SentencePiece pieces -> ids (a piece the vocabulary lacks is <unk>), decoding ids -> pieces (the
    special ones dropped) -> text, as Marian's tokenizer does. `vocab_source` names the vocabulary in errors."""

    def __init__(
        self,
        model_proto: bytes,
        source: str = "<memory>",
        vocab: Mapping[str, int] | None = None,
        vocab_source: str = "<memory>",
    ):
        self.proto = model_proto
        self.source = source
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(model_proto)
        except Exception as e:
            raise CheckpointError(f"{source}: not a valid SentencePiece model; re-run `nmt prepare`") from e
        self.vocab: dict[str, int] | None = None
        if vocab is None:
            ids = (self.sp.pad_id(), self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id())
            if ids != (SPECIAL.pad, SPECIAL.unk, SPECIAL.bos, SPECIAL.eos):
                raise CheckpointError(
                    f"{source}: special ids pad/unk/bos/eos are {ids}, nmt needs (0, 1, 2, 3); "
                    "train the model with `nmt prepare`"
                )
            self.specials = SPECIAL
            return
        self.vocab = checked_vocab(vocab, vocab_source)
        self.id_to_piece = [""] * len(self.vocab)
        for piece, i in self.vocab.items():
            self.id_to_piece[i] = piece
        pad = self.vocab[PAD_PIECE]
        self.specials = SpecialIds(pad=pad, unk=self.vocab[UNK_PIECE], bos=pad, eos=self.vocab[EOS_PIECE])
        self.special_set = frozenset((self.specials.pad, self.specials.unk, self.specials.bos, self.specials.eos))

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
        return cast(int, self.sp.get_piece_size()) if self.vocab is None else len(self.vocab)

    def _split_code(self, text: str) -> tuple[list[str], str]:
        """A leading language code (">>fra<<") and the rest of the text, as MarianTokenizer.remove_language_code."""
        if text.startswith(">>") and (end := text.find("<<")) != -1:
            return [text[: end + 2]], text[end + 2 :]
        return [], text

    def encode(self, text: str) -> list[int]:
        if self.vocab is None:
            return cast(list[int], self.sp.encode(text, out_type=int))
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: list[str], threads: int | None = None) -> list[list[int]]:
        """Ids of each text; `threads` > 1 encodes on that many threads (same ids)."""
        if self.vocab is None:
            return cast(list[list[int]], self.sp.encode(texts, out_type=int, num_threads=threads or 1))
        split = [self._split_code(text) for text in texts]
        pieces = self.sp.encode([rest for _, rest in split], out_type=str, num_threads=threads or 1)
        unk = self.specials.unk
        return [[self.vocab.get(p, unk) for p in code + ps] for (code, _), ps in zip(split, pieces)]

    def decode(self, ids: list[int]) -> str:
        if self.vocab is None:
            return cast(str, self.sp.decode(ids))
        return self.decode_batch([ids])[0]

    def decode_batch(self, batch: list[list[int]]) -> list[str]:
        if self.vocab is None:
            return cast(list[str], self.sp.decode(batch))
        # MarianTokenizer.convert_tokens_to_string: pieces the SentencePiece model does not know keep their
        # word-boundary mark, which becomes a space like the others; then the ends are stripped
        pieces = [[self.id_to_piece[i] for i in ids if i not in self.special_set] for ids in batch]
        return [cast(str, self.sp.decode_pieces(p)).replace("▁", " ").strip() for p in pieces]

    def to_pieces(self, ids: list[int]) -> list[str]:
        """The subword pieces of ids, e.g. ['▁Comment', '▁ça', '▁va', '▁?']."""
        if self.vocab is None:
            return [self.sp.id_to_piece(i) for i in ids]
        return [self.id_to_piece[i] for i in ids]

    def pieces(self) -> list[str]:
        """Every piece, in id order."""
        return self.to_pieces(list(range(len(self))))


def checked_vocab(vocab: Mapping[str, int], source: str) -> dict[str, int]:
    """`vocab` as {piece: id} if its ids are 0..n-1, each once, and it holds <pad>, <unk> and </s>; else a
    CheckpointError naming `source` and what is wrong."""
    if not isinstance(vocab, Mapping) or not all(
        isinstance(p, str) and isinstance(i, int) and not isinstance(i, bool) for p, i in vocab.items()
    ):
        raise CheckpointError(f"{source}: not a vocabulary (a JSON object of piece: id)")
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise CheckpointError(f"{source}: the ids are not 0..{len(vocab) - 1}, each once; the vocabulary is damaged")
    missing = [p for p in (PAD_PIECE, UNK_PIECE, EOS_PIECE) if p not in vocab]
    if missing:
        raise CheckpointError(f"{source}: no {', '.join(missing)} in the vocabulary; it needs <pad>, <unk> and </s>")
    return dict(vocab)
