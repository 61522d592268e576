"""`Translator`: text in, text out. Cleans and encodes lines, sorts them into token-budgeted
batches, searches, restores the input order and decodes. Exactly one result per input line."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from nmt.checkpoint import LoadedModel, load_model_dir
from nmt.config import DecodeConfig, SamplingConfig
from nmt.data import ParallelIds, clean, collate, token_batches
from nmt.runtime import pick_device, set_threads
from nmt.search import Hypothesis, beam_search, greedy, sample
from nmt.tokenizer import SPECIAL


@dataclass(frozen=True)
class Translation:
    """The n-best translations of one input line, best first (empty for an empty line)."""

    text: str
    score: float
    nbest: list[tuple[str, float]]


Warn = Callable[[str], None]


class Translator:
    """A loaded model plus decoding settings: search (`config`), or sampling when `sampling` is given."""

    def __init__(self, loaded: LoadedModel, config: DecodeConfig, device: torch.device,
                 sampling: SamplingConfig | None = None):
        self.loaded, self.config, self.device, self.sampling = loaded, config, device, sampling
        self.generator = None
        if sampling is not None:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(sampling.seed)
        self.model = loaded.model
        self.src_tok, self.tgt_tok = loaded.src_tokenizer, loaded.tgt_tokenizer
        # The encoder needs room for EOS; the decoder feeds BOS plus up to a * (n + 1) + b tokens
        # (the search's limit for n source tokens and EOS), each at its own position.
        positions = self.model.config.max_positions
        self.max_src_tokens = positions - 1
        if config.max_len_a > 0:
            self.max_src_tokens = min(self.max_src_tokens, int((positions - 1 - config.max_len_b) / config.max_len_a) - 1)
        self.max_src_tokens = max(self.max_src_tokens, 1)

    @classmethod
    def load(cls, model_dir: Path, config: DecodeConfig = DecodeConfig(), device: str | None = None,
             threads: int | None = None, sampling: SamplingConfig | None = None) -> "Translator":
        set_threads(threads)
        dev = pick_device(device)
        return cls(load_model_dir(model_dir, dev), config, dev, sampling)

    def with_config(self, **changes) -> "Translator":
        return Translator(self.loaded, replace(self.config, **changes), self.device, self.sampling)

    def encode(self, lines: list[str], warn: Warn, first_line: int = 1) -> list[list[int]]:
        """Clean and encode; over-long lines are truncated (never dropped) with a warning."""
        ids = self.src_tok.encode_batch([clean(line) for line in lines])
        for i, seq in enumerate(ids):
            if len(seq) > self.max_src_tokens:
                warn(f"line {first_line + i}: {len(seq)} tokens, longer than the model takes; "
                     f"translating its first {self.max_src_tokens}")
                ids[i] = seq[: self.max_src_tokens]
        return ids

    @torch.inference_mode()
    def search_ids(self, ids: list[list[int]]) -> list[list[Hypothesis]]:
        """Search every non-empty id sequence, in length-sorted token-budgeted batches; input order kept."""
        results: list[list[Hypothesis]] = [[] for _ in ids]
        todo = [i for i, seq in enumerate(ids) if seq]
        if not todo:
            return results
        data = ParallelIds.from_lists([ids[i] for i in todo], [[] for _ in todo])
        cfg = self.config
        for index in token_batches(data.src_lens, data.tgt_lens, cfg.batch_tokens, seed=None):
            batch = collate(data, index, SPECIAL.pad, SPECIAL.bos, SPECIAL.eos)
            src, src_len = batch.src.to(self.device), batch.src_len.to(self.device)
            if self.sampling is not None:
                s = self.sampling
                found = [[h] for h in sample(self.model, src, src_len, bos_id=SPECIAL.bos, eos_id=SPECIAL.eos,
                                             temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                                             generator=self.generator, max_len_a=cfg.max_len_a,
                                             max_len_b=cfg.max_len_b)]
            elif cfg.beam_size == 1 and cfg.nbest == 1 and not cfg.no_repeat_ngram and not cfg.unk_penalty:
                found = [[h] for h in greedy(self.model, src, src_len, bos_id=SPECIAL.bos, eos_id=SPECIAL.eos,
                                             max_len_a=cfg.max_len_a, max_len_b=cfg.max_len_b,
                                             length_penalty=cfg.length_penalty, normalize=cfg.normalize)]
            else:
                found = beam_search(self.model, src, src_len, cfg, bos_id=SPECIAL.bos, eos_id=SPECIAL.eos,
                                    unk_id=SPECIAL.unk)
            for row, hyps in zip(np.asarray(index).tolist(), found):
                results[todo[row]] = hyps
        return results

    def translate_batch(self, lines: list[str], warn: Warn = lambda s: None, first_line: int = 1) -> list[Translation]:
        """Translate a list of lines; an empty or whitespace-only line gives an empty translation."""
        hyps = self.search_ids(self.encode(lines, warn, first_line))
        out = []
        for found in hyps:
            if not found:
                out.append(Translation("", 0.0, [("", 0.0)]))
                continue
            texts = self.tgt_tok.decode_batch([h.tokens for h in found])
            # a translation is one line: the model can emit a newline only through byte fallback
            texts = [" ".join(t.split()) for t in texts]
            out.append(Translation(texts[0], found[0].score, list(zip(texts, [h.score for h in found]))))
        return out

    def translate_lines(self, lines: Iterable[str], chunk: int = 256, warn: Warn = lambda s: None) -> Iterator[Translation]:
        """Stream translations in input order, `chunk` lines at a time (1 for interactive use)."""
        buffer: list[str] = []
        first = 1
        for line in lines:
            buffer.append(line)
            if len(buffer) >= chunk:
                yield from self.translate_batch(buffer, warn, first)
                first += len(buffer)
                buffer = []
        if buffer:
            yield from self.translate_batch(buffer, warn, first)
