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
from nmt.hypotheses import Hypothesis, normalise
from nmt.segments import Piece, fit, join, sentences, shifted, word_offsets
from nmt.textio import clean
from nmt.tokenizer import Tokenizer

PRECISIONS = ("fp32", "bf16", "int8")  # what an engine computes in


@dataclass(frozen=True)
class Sentence:
    """One piece of a line the model translated on its own: a sentence, or a part of one too long for the model.
    `source` is its text as in the line, without the whitespace around it; `text`, `score`, `log_prob`, `tokens`
    and `alignment` (its own words, from 0) are its best translation's."""

    source: str
    text: str
    score: float
    log_prob: float
    tokens: tuple[str, ...] = ()
    alignment: str | None = None


@dataclass(frozen=True)
class Translation:
    """The n-best translations of one input line, best first (one empty entry for an empty line).
    Each n-best entry is (text, score, log_prob): the search score (length-normalised as configured)
    and the total log-probability; `tokens` are the best translation's subword pieces; `alignment` its
    source-target word alignment (Pharaoh `i-j`, the line's whitespace-separated words), when asked for;
    `warnings` what was done to the line to translate it (a sentence split for length), as the warnings of
    `translate_batch` say it, without the line; `sentences` what was translated, piece by piece (see
    `LineTranslator.translate_batch` for how they make the line's fields)."""

    text: str
    score: float
    nbest: list[tuple[str, float, float]]
    tokens: tuple[str, ...] = ()
    alignment: str | None = None
    warnings: tuple[str, ...] = ()
    sentences: tuple[Sentence, ...] = ()


Warn = Callable[[str], None]


class LineTranslator:
    """What every engine shares: lines in, `Translation`s out, one per line and in order.
    An engine sets `config`, `align`, `src_tok`, `tgt_tok`, `max_src_tokens` and `src_lang` when made, and implements
    `search_ids` (and `alignment`, if it `can_align`)."""

    can_align: ClassVar[bool] = False  # whether the engine gives word alignments (it has the model's attention)
    config: DecodeConfig
    align: bool  # add each translation's word alignment (Translation.alignment); given when made
    src_tok: Tokenizer
    tgt_tok: Tokenizer
    max_src_tokens: int
    src_lang: str | None = None  # the source language code the model records: its rules for sentence boundaries

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
        """Clean and encode, one id sequence per line, for callers that need exactly that (`nmt attention`,
        benchmarks): an over-long line is cut to the model's length, with a warning that names `where` and the
        line ("line 12: ...", or with where="notes.txt:", "notes.txt:12: ..."). Translating never cuts:
        `translate_batch` splits instead."""
        ids = self.src_tok.encode_batch([clean(line) for line in lines])
        for i, seq in enumerate(ids):
            if len(seq) > self.max_src_tokens:
                warn(
                    f"{where}{first_line + i}: {len(seq)} tokens, longer than the model takes; "
                    f"using its first {self.max_src_tokens}"
                )
                ids[i] = seq[: self.max_src_tokens]
        return ids

    def translate_batch(
        self, lines: list[str], warn: Warn = lambda s: None, first_line: int = 1, where: str = "line "
    ) -> list[Translation]:
        """Translate a list of lines; an empty or whitespace-only line gives an empty translation.

        With `config.split` "sentence" each line is cut into its sentences (nmt.sentences, by the rules of
        `src_lang`); with "none" it is one. A sentence longer than the model takes is cut further
        (nmt.segments.fit: at punctuation, between words), with a warning naming the line. Every piece of every
        line goes to one search, and each line's are joined back: with "sentence", in the line's own spacing
        (the whitespace before, between and after its sentences kept); with "none", by single spaces, as one
        sentence was. A line of several pieces has: `text` the joined best translations; `log_prob` their sum;
        `score` what the configured length normalisation makes of that sum over their summed lengths (EOS
        counted once a piece); `tokens` their pieces in order; `alignment` each piece's moved to the line's
        words; the k-th n-best entry joins each piece's k-th best translation (its last when it has fewer)."""
        plans = self._plan(lines, warn, first_line, where)
        hyps = iter(self.search_ids([piece.ids for _, pieces, _ in plans for piece in pieces]))
        return [self._joined(lead, pieces, [next(hyps) for _ in pieces], notes) for lead, pieces, notes in plans]

    def _plan(
        self, lines: list[str], warn: Warn, first_line: int, where: str
    ) -> list[tuple[str, list[Piece], tuple[str, ...]]]:
        """Each line's whitespace before its first sentence, its pieces to translate, and what was done to fit
        them to the model (each also warned of)."""
        cut = [sentences(line, self.config.split, self.src_lang) for line in lines]
        encoded = iter(self.src_tok.encode_batch([clean(core) for _, found in cut for core, _ in found]))
        plans = []
        for i, (lead, found) in enumerate(cut):
            pieces: list[Piece] = []
            notes: list[str] = []
            for j, (core, after) in enumerate(found):
                ids = next(encoded)
                if not ids:  # nothing left once cleaned (control characters): nothing to translate
                    continue
                if len(ids) <= self.max_src_tokens:
                    pieces.append(Piece(core, ids, after))
                    continue
                parts = fit(core, ids, self.max_src_tokens, self.src_tok)
                note = f"{len(ids)} tokens, longer than the model takes; translated in {len(parts)} parts"
                notes.append(f"sentence {j + 1}: {note}" if len(found) > 1 else note)
                warn(f"{where}{first_line + i}: {notes[-1]}")
                pieces += [*parts[:-1], Piece(parts[-1].source, parts[-1].ids, after)]
            plans.append((lead, pieces, tuple(notes)))
        return plans

    def _joined(
        self, lead: str, pieces: list[Piece], found: list[list[Hypothesis]], notes: tuple[str, ...]
    ) -> Translation:
        """One line's Translation from its pieces' hypotheses (see `translate_batch`)."""
        if not pieces:
            return Translation("", 0.0, [("", 0.0, 0.0)], alignment="" if self.align else None)
        # a translation is one line: the model can emit a newline only through byte fallback
        texts = [[" ".join(t.split()) for t in self.tgt_tok.decode_batch([h.tokens for h in hyps])] for hyps in found]
        tokens = [tuple(self.tgt_tok.to_pieces(hyps[0].tokens)) for hyps in found]
        aligned = [self.alignment(p.ids, hyps[0].tokens) if self.align else None for p, hyps in zip(pieces, found)]
        afters = [piece.after for piece in pieces]
        nbest = []
        for k in range(max(len(hyps) for hyps in found)):
            chosen = [min(k, len(hyps) - 1) for hyps in found]
            line, _ = join(lead, [t[c] for t, c in zip(texts, chosen)], afters)
            kth = [hyps[c] for hyps, c in zip(found, chosen)]
            nbest.append((self._line(line), self._score(kth), sum(h.log_prob for h in kth)))
        alignment = None
        if self.align:
            _, used = join(lead, [t[0] for t in texts], afters)
            src = word_offsets([p.source for p in pieces], afters)
            tgt = word_offsets([t[0] for t in texts], used)
            alignment = " ".join(p for a, s, t in zip(aligned, src, tgt) for p in shifted(a or "", s, t))
        one = tuple(
            Sentence(p.source, t[0], hyps[0].score, hyps[0].log_prob, pieces_, a)
            for p, t, hyps, pieces_, a in zip(pieces, texts, found, tokens, aligned)
        )
        text, score, _ = nbest[0]
        return Translation(text, score, nbest, tuple(p for t in tokens for p in t), alignment, notes, one)

    def _line(self, text: str) -> str:
        """A joined translation as written: with split "none", one sentence's, its whitespace single spaces."""
        return " ".join(text.split()) if self.config.split == "none" else text

    def _score(self, hyps: list[Hypothesis]) -> float:
        """The score of translations joined into one: a single one's own; several, their summed log-prob
        normalised for their summed length as the search normalises one hypothesis (EOS counted for each)."""
        if len(hyps) == 1:
            return hyps[0].score
        length = sum(len(h.tokens) + 1 for h in hyps)
        cfg = self.config
        return normalise(
            sum(h.log_prob for h in hyps), length, length_penalty=cfg.length_penalty, normalize=cfg.normalize
        )

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
