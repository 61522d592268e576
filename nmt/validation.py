"""Validation during training: `Validator` measures a model on the validation split (loss, perplexity,
greedy sacreBLEU and chrF); `EarlyStopping` keeps the best of those measures and says when to stop."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nmt.config import DecodeConfig, TrainConfig
from nmt.data import ParallelIds, collate, iterate_batches, token_batches
from nmt.loss import label_smoothed_loss
from nmt.runtime import autocast
from nmt.tokenizer import SPECIAL, SpecialIds, Tokenizer

if TYPE_CHECKING:
    from nmt.model import Transformer

METRIC_KEYS = {"bleu": "valid_bleu", "loss": "valid_loss", "ppl": "valid_ppl"}


class Validator:
    """Measures a model on one validation split; holds no state between calls."""

    def __init__(
        self,
        data: ParallelIds,
        refs: list[str],
        tgt_tokenizer: Tokenizer,
        cfg: TrainConfig,
        device: torch.device,
        specials: SpecialIds = SPECIAL,
    ) -> None:
        self.data, self.refs, self.tgt_tokenizer, self.cfg, self.device = data, refs, tgt_tokenizer, cfg, device
        self.specials = specials  # the prepared data's (prepare.json's special_ids)

    @torch.inference_mode()
    def __call__(self, model: Transformer) -> dict[str, float]:
        from nmt.hypotheses import max_source_tokens
        from nmt.metrics import bleu_chrf
        from nmt.search import greedy

        cfg, was_training, ids = self.cfg, model.training, self.specials
        model.eval()
        # as in training, the loss leaves out pairs longer than the model's positions; BLEU truncates such a
        # source as `nmt translate` does (and counts the translation against the whole reference)
        positions = model.config.max_positions - 1
        fits = np.flatnonzero((self.data.src_lens <= positions) & (self.data.tgt_lens <= positions))
        scored = self.data if len(fits) == len(self.data) else self.data.select(fits)
        loss_sum, nll_sum, tokens = 0.0, 0.0, 0
        for batch in iterate_batches(scored, cfg.batch_tokens, None, ids.pad, ids.bos, ids.eos):
            batch = batch.to(self.device)
            with autocast(self.device, cfg.precision):
                logits = model(batch.src, batch.src_len, batch.tgt_in)
            loss, nll = label_smoothed_loss(logits, batch.tgt_out, cfg.label_smoothing, ids.pad)
            loss_sum, nll_sum, tokens = loss_sum + float(loss), nll_sum + float(nll), tokens + batch.n_tokens
        tokens_or_nan = tokens or math.nan  # no pair fits: NaN, which early stopping never takes for the best
        result = {
            "valid_loss": loss_sum / tokens_or_nan,
            "valid_nll": nll_sum / tokens_or_nan,
            "valid_ppl": math.exp(min(nll_sum / tokens_or_nan, 50.0)),
        }
        if cfg.valid_bleu:
            n = len(self.data) if not cfg.valid_max_sentences else min(cfg.valid_max_sentences, len(self.data))
            longest = max_source_tokens(model.config.max_positions, DecodeConfig())  # greedy's default length limit
            subset = ParallelIds.from_lists(
                [self.data.src(i)[:longest].tolist() for i in range(n)], [[] for _ in range(n)]
            )
            hyps: list[str] = [""] * n
            # the step `nmt translate` takes (re-laid weights on the CPU), so that validation BLEU is its --beam 1
            stepper = model.search_stepper(self.device, bf16=cfg.precision == "bf16")
            for index in token_batches(subset.src_lens, subset.tgt_lens, cfg.batch_tokens, None):
                batch = collate(subset, index, ids.pad, ids.bos, ids.eos).to(self.device)
                with autocast(self.device, cfg.precision):
                    found = greedy(stepper, batch.src, batch.src_len, bos_id=ids.bos, eos_id=ids.eos, pad_id=ids.pad)
                texts = self.tgt_tokenizer.decode_batch([h.tokens for h in found])
                for i, text in zip(index.tolist(), texts):
                    hyps[i] = text
            result["valid_bleu"], result["valid_chrf"] = bleu_chrf(hyps, [self.refs[:n]])
        model.train(was_training)
        return result


@dataclass
class EarlyStopping:
    """The best validation so far, and a stop after `patience` validations without a better one (0: never).
    Its state (the fields but `metric` and `patience`) goes into every checkpoint."""

    metric: str  # bleu (higher is better), loss or ppl (lower is better)
    patience: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    bad_validations: int = 0

    def update(self, result: dict[str, float], step: int) -> bool:
        """Take one validation's result at `step`; True when it is the best so far."""
        value = result[METRIC_KEYS[self.metric]]  # TrainConfig made sure it is measured
        # a NaN metric is never the best: it would compare false against everything after it
        better = math.isfinite(value) and (
            self.best_metric is None
            or (value > self.best_metric if self.metric == "bleu" else value < self.best_metric)
        )
        if better:
            self.best_metric, self.best_step, self.bad_validations = value, step, 0
        else:
            self.bad_validations += 1
        return better

    @property
    def should_stop(self) -> bool:
        return bool(self.patience and self.bad_validations >= self.patience)

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("metric", "patience")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_metric, self.best_step = state.get("best_metric"), state.get("best_step")
        self.bad_validations = int(state.get("bad_validations", 0))
