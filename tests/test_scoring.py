"""Score your own output (Sockeye's test_scoring idea): every hypothesis a search reports comes with a
total log-probability, computed step by step with the KV cache, beams reordered and finished sentences
dropped. Teacher-forcing the same tokens through the whole model at once (`model(src, src_len, tgt_in)`,
no cache, no search) must give that figure back, and the reported score must be that figure normalised
for length as configured."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nmt.config import DecodeConfig, SamplingConfig
from nmt.data import ParallelIds, collate
from nmt.hypotheses import Hypothesis, normalise
from nmt.tokenizer import SPECIAL
from nmt.translate import Translator

pytestmark = pytest.mark.unit

SENTENCES = 40
ATOL = 1e-4  # per sentence, on a sum of float32 log-probs computed two ways

SEARCHES = {
    "greedy": DecodeConfig(beam_size=1, nbest=1, length_penalty=1.0),
    "beam 4, 4-best, alpha 0.6": DecodeConfig(beam_size=4, nbest=4, length_penalty=0.6),
    "beam 4, 4-best, average per token": DecodeConfig(beam_size=4, nbest=4, normalize="length"),
    "beam 4, 2-best, no repeated bigram": DecodeConfig(beam_size=4, nbest=2, no_repeat_ngram=2, length_penalty=0.0),
    # processors that only forbid tokens leave the chosen tokens' log-probs the model's own
    "greedy, no repeated bigram, at least 12 tokens": DecodeConfig(beam_size=1, no_repeat_ngram=2, min_len=12),
    "beam 4, 2-best, at least 12 tokens": DecodeConfig(beam_size=4, nbest=2, min_len=12),
}


@pytest.fixture(scope="module")
def source(sample_dir) -> list[str]:
    return (sample_dir / "test.en").read_text(encoding="utf-8").splitlines()[:SENTENCES]


@pytest.fixture(scope="module")
def translator(tiny_model_dir) -> Translator:
    return Translator.load(tiny_model_dir, DecodeConfig(), device="cpu", threads=1)


@torch.inference_mode()
def forced_log_probs(model: torch.nn.Module, src_ids: list[int], outputs: list[list[int]]) -> list[float]:
    """Sum of log p(token | source, tokens before it) over each output and its EOS, teacher-forced in one
    batch: the source (with EOS, as search sees it) once per output, tgt_in = BOS + output."""
    data = ParallelIds.from_lists([src_ids] * len(outputs), outputs)
    batch = collate(data, np.arange(len(outputs)), SPECIAL.pad, SPECIAL.bos, SPECIAL.eos)
    log_probs = F.log_softmax(model(batch.src, batch.src_len, batch.tgt_in).float(), dim=-1)
    picked = log_probs.gather(-1, batch.tgt_out.unsqueeze(-1)).squeeze(-1)  # (outputs, tgt_len)
    # by length, not by token: a hypothesis may contain the pad id as a word
    lengths = torch.tensor([len(o) + 1 for o in outputs])  # + EOS
    real = torch.arange(picked.size(1))[None, :] < lengths[:, None]
    return picked.masked_fill(~real, 0.0).sum(dim=1).tolist()


def check_own_scores(
    translator: Translator,
    source: list[str],
    config: DecodeConfig | None,
    found: list[list[Hypothesis]],
    ids: list[list[int]],
) -> float:
    """Assert every hypothesis' log_prob equals its forced log-prob (and its score the normalised one);
    returns the largest difference seen."""
    worst = 0.0
    for line, src_ids, hyps in zip(source, ids, found):
        assert hyps, f"no hypothesis for {line!r}"
        forced = forced_log_probs(translator.model, src_ids, [h.tokens for h in hyps])
        for h, lp in zip(hyps, forced):
            assert SPECIAL.eos not in h.tokens and SPECIAL.bos not in h.tokens
            assert h.log_prob == pytest.approx(lp, abs=ATOL), (line, h.tokens)
            if config is not None:
                expected = normalise(
                    lp, len(h.tokens) + 1, length_penalty=config.length_penalty, normalize=config.normalize
                )
                assert h.score == pytest.approx(expected, abs=ATOL), (line, h.tokens)
            worst = max(worst, abs(h.log_prob - lp))
    return worst


@pytest.mark.parametrize("name", list(SEARCHES))
def test_search_reports_the_log_prob_the_model_gives_its_output(translator, source, name):
    config = SEARCHES[name]
    search = translator.with_config(**vars(config))
    ids = search.encode(source, warn=lambda s: None)
    found = search.search_ids(ids)
    assert len(found) == len(source)
    assert all(len(hyps) == config.nbest for hyps in found)
    if config.nbest > 1:
        # an n-best list of distinct outputs, best first by score
        assert all(len({tuple(h.tokens) for h in hyps}) == len(hyps) for hyps in found)
        assert all([h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True) for hyps in found)
    # every length limit here is at least 12 (1.2 * (tokens + EOS) + 10), so min_len always holds
    assert all(len(h.tokens) >= config.min_len for hyps in found for h in hyps)
    worst = check_own_scores(translator, source, config, found, ids)
    print(f"{name}: largest |reported - forced| log-prob {worst:.2e}")


def test_sampling_reports_the_models_own_log_prob(tiny_model_dir, source):
    """Sampled at temperature 0.7 from the 10 most probable words, but reported at temperature 1 with
    nothing cut away: the model's own log-prob of the sample."""
    sampler = Translator.load(
        tiny_model_dir,
        DecodeConfig(),
        device="cpu",
        threads=1,
        sampling=SamplingConfig(temperature=0.7, top_k=10, seed=3),
    )
    ids = sampler.encode(source, warn=lambda s: None)
    found = sampler.search_ids(ids)
    worst = check_own_scores(sampler, source, None, found, ids)
    print(f"sampling: largest |reported - forced| log-prob {worst:.2e}")


def test_forced_scoring_tells_outputs_apart(translator, source):
    """The check has teeth: forcing another sentence's output, or the output without its last word,
    gives a different log-prob from the reported one."""
    ids = translator.encode(source, warn=lambda s: None)
    found = translator.with_config(beam_size=1, nbest=1).search_ids(ids)
    differs = 0
    for i in range(len(source) - 1):
        best, other = found[i][0], found[i + 1][0]
        if best.tokens == other.tokens:
            continue
        swapped = forced_log_probs(translator.model, ids[i], [other.tokens])[0]
        differs += abs(swapped - best.log_prob) > 100 * ATOL
    assert differs > 0
    cut = [(i, hyps[0]) for i, hyps in enumerate(found) if hyps[0].tokens]
    assert cut
    for i, h in cut:
        shorter = forced_log_probs(translator.model, ids[i], [h.tokens[:-1]])[0]
        assert abs(shorter - h.log_prob) > 100 * ATOL
