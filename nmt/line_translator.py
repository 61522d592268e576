"""What every translation engine shares, without torch: the text side. `LineTranslator` takes lines in and
gives one `Translation` per line out, in order; an engine (nmt/translate.py for PyTorch, nmt/ct2.py for
CTranslate2) implements only the search over ids. Keeping torch out of here is what lets
`nmt translate --engine ctranslate2` start in a blink."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from nmt.config import DecodeConfig
from nmt.errors import ConfigError
from nmt.hypotheses import Hypothesis
from nmt.textio import clean
from nmt.tokenizer import Tokenizer

PRECISIONS = ("fp32", "bf16", "int8")  # what an engine computes in


@dataclass(frozen=True)
class Translation:
    """The n-best translations of one input line, best first (one empty entry for an empty line).
    Each n-best entry is (text, score, log_prob): the search score (length-normalised as configured)
    and the total log-probability; `tokens` are the best translation's subword pieces; `alignment` its
    source-target word alignment (Pharaoh `i-j`), when asked for; `warnings` what was done to the line to
    translate it (cut to the model's length), as the warnings of `translate_batch` say it, without the line."""

    text: str
    score: float
    nbest: list[tuple[str, float, float]]
    tokens: tuple[str, ...] = ()
    alignment: str | None = None
    warnings: tuple[str, ...] = ()


Warn = Callable[[str], None]


class LineTranslator:
    """What every engine shares: lines in, `Translation`s out, one per line and in order.
    An engine sets `config`, `align`, `src_tok`, `tgt_tok` and `max_src_tokens` when made, and implements
    `search_ids` (and `alignment`, if it `can_align`)."""

    can_align: ClassVar[bool] = False  # whether the engine gives word alignments (it has the model's attention)
    config: DecodeConfig
    align: bool  # add each translation's word alignment (Translation.alignment); given when made
    src_tok: Tokenizer
    tgt_tok: Tokenizer
    max_src_tokens: int

    def search_ids(self, ids: list[list[int]]) -> list[list[Hypothesis]]:
        """The n-best hypotheses of every id sequence, in input order; [] for an empty one."""
        raise NotImplementedError

    def with_config(self, align: bool | None = None, **changes: Any) -> LineTranslator:
        """The same loaded model with other DecodeConfig values (beam_size=3, ...) and, given `align`, with or
        without word alignments; nothing is loaded again."""
        raise NotImplementedError

    @classmethod
    def check_align(cls, align: bool) -> bool:
        """`align` if this engine can give word alignments, else a ConfigError (before loading, and when made)."""
        if align and not cls.can_align:
            raise ConfigError(
                "word alignment (--align) needs the model's attention, which CTranslate2 does not give; "
                "use the PyTorch engine"
            )
        return align

    def encode(self, lines: list[str], warn: Warn, first_line: int = 1, where: str = "line ") -> list[list[int]]:
        """Clean and encode; over-long lines are truncated (never dropped) with a warning that names
        `where` and the line: "line 12: ...", or with where="notes.txt:", "notes.txt:12: ..."."""
        return self._encode(lines, warn, first_line, where)[0]

    def _encode(
        self, lines: list[str], warn: Warn, first_line: int, where: str
    ) -> tuple[list[list[int]], dict[int, str]]:
        """`encode`, and what was done to each line cut for length, by its index (each also warned of)."""
        ids = self.src_tok.encode_batch([clean(line) for line in lines])
        notes = {}
        for i, seq in enumerate(ids):
            if len(seq) > self.max_src_tokens:
                notes[i] = (
                    f"{len(seq)} tokens, longer than the model takes; translating its first {self.max_src_tokens}"
                )
                warn(f"{where}{first_line + i}: {notes[i]}")
                ids[i] = seq[: self.max_src_tokens]
        return ids, notes

    def translate_batch(
        self, lines: list[str], warn: Warn = lambda s: None, first_line: int = 1, where: str = "line "
    ) -> list[Translation]:
        """Translate a list of lines; an empty or whitespace-only line gives an empty translation."""
        ids, notes = self._encode(lines, warn, first_line, where)
        hyps = self.search_ids(ids)
        out = []
        for i, (src_ids, found) in enumerate(zip(ids, hyps)):
            if not found:
                out.append(Translation("", 0.0, [("", 0.0, 0.0)], alignment="" if self.align else None))
                continue
            texts = self.tgt_tok.decode_batch([h.tokens for h in found])
            # a translation is one line: the model can emit a newline only through byte fallback
            texts = [" ".join(t.split()) for t in texts]
            pieces = tuple(self.tgt_tok.to_pieces(found[0].tokens))
            alignment = self.alignment(src_ids, found[0].tokens) if self.align else None
            nbest = [(t, h.score, h.log_prob) for t, h in zip(texts, found)]
            cut = (notes[i],) if i in notes else ()
            out.append(Translation(texts[0], found[0].score, nbest, pieces, alignment, cut))
        return out

    def alignment(self, src_ids: list[int], tokens: list[int]) -> str:
        """The word alignment of a translation (see nmt.attention.word_alignment)."""
        raise ConfigError("word alignment needs the model's attention: use the PyTorch engine")

    def translate_lines(
        self, lines: Iterable[str], chunk: int = 256, warn: Warn = lambda s: None, where: str = "line "
    ) -> Iterator[Translation]:
        """Stream translations in input order, `chunk` lines at a time (1 for interactive use)."""
        buffer: list[str] = []
        first = 1
        for line in lines:
            buffer.append(line)
            if len(buffer) >= chunk:
                yield from self.translate_batch(buffer, warn, first, where)
                first += len(buffer)
                buffer = []
        if buffer:
            yield from self.translate_batch(buffer, warn, first, where)
