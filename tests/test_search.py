"""Search: hand-worked beams on a scripted model, and relationships (beam of one is greedy,
batched equals one at a time, limits and constraints hold) on small random models."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from helpers import BOS, EOS, FIRST_WORD, IDS, PAD, UNK, A, B, C, ScriptedModel, has_repeat, scripted_src, tiny_config

from nmt.config import DecodeConfig, SamplingConfig
from nmt.errors import ConfigError
from nmt.hypotheses import Hypothesis, normalise
from nmt.search import beam_search, greedy, sample

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Steps on a handful of rows are too small to share: a second thread only spins (10x slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Greedy takes A (0.6) and ends at 0.6 * 0.4 = 0.24; beam 2 also keeps B and finds B EOS = 0.4 * 0.9 = 0.36.
GREEDY_TRAP = {(): {A: 0.6, B: 0.4}, (A,): {EOS: 0.4, A: 0.3, B: 0.3}, (B,): {EOS: 0.9, A: 0.1}}
# Beam 2 finishes [A] = 0.6 * 0.5 = 0.30 (2 tokens with EOS) and [B, A] = 0.4 * 0.7 * 1.0 = 0.28 (3 tokens).
LONG_WINS = {
    (): {A: 0.6, B: 0.4},
    (A,): {EOS: 0.5, B: 0.4, A: 0.1},
    (B,): {A: 0.7, EOS: 0.3},
    (B, A): {EOS: 1.0},
    (A, B): {EOS: 0.6, A: 0.4},
}


def test_beam_finds_what_greedy_misses():
    model = ScriptedModel(GREEDY_TRAP)
    src, src_len = scripted_src([0])
    [best] = greedy(model, src, src_len, **IDS, length_penalty=0.0)
    assert best.tokens == [A] and best.score == pytest.approx(math.log(0.24))
    [nbest] = beam_search(model, src, src_len, DecodeConfig(beam_size=2, nbest=2, length_penalty=0.0), **IDS)
    assert [h.tokens for h in nbest] == [[B], [A]]
    assert [h.log_prob for h in nbest] == pytest.approx([math.log(0.36), math.log(0.24)])


@pytest.mark.parametrize(
    "settings, winner, score",
    [
        (dict(length_penalty=0.0), [A], math.log(0.30)),
        (dict(length_penalty=1.0), [B, A], math.log(0.28) / (8 / 6)),  # log(.30) / (7/6) = -1.03 < -0.95
        (dict(normalize="length"), [B, A], math.log(0.28) / 3),
    ],
)
def test_length_penalty_changes_the_winner(settings, winner, score):
    src, src_len = scripted_src([0])
    config = DecodeConfig(beam_size=2, nbest=2, **settings)
    [nbest] = beam_search(ScriptedModel(LONG_WINS), src, src_len, config, **IDS)
    assert {tuple(h.tokens) for h in nbest} == {(A,), (B, A)}
    assert nbest[0].tokens == winner and nbest[0].score == pytest.approx(score)


def test_finished_sentences_leave_the_batch():
    model = ScriptedModel(GREEDY_TRAP, LONG_WINS)
    src, src_len = scripted_src([1, 0])
    config = DecodeConfig(beam_size=2, nbest=2, length_penalty=0.0)
    results = beam_search(model, src, src_len, config, **IDS)
    # one row per sentence, then two beams each, then GREEDY_TRAP is done after its second step
    assert model.batch_sizes == [2, 4, 2]
    assert [[h.tokens for h in r] for r in results] == [[[A], [B, A]], [[B], [A]]]


def test_max_length_forces_eos():
    babble = ScriptedModel({}, default={A: 0.5, B: 0.3, EOS: 1e-3})
    src, src_len = scripted_src([0, 0, 0], [1, 4, 7])
    limits = [2, 4, 5]  # int(0.5 * src_len + 2)
    config = DecodeConfig(beam_size=2, nbest=2, max_len_a=0.5, max_len_b=2)
    lengths = [[len(h.tokens) for h in nbest] for nbest in beam_search(babble, src, src_len, config, **IDS)]
    assert lengths == [[n, n] for n in limits]
    hyps = greedy(babble, src, src_len, **IDS, max_len_a=0.5, max_len_b=2)
    assert [h.tokens for h in hyps] == [[A] * n for n in limits]
    assert hyps[0].log_prob == pytest.approx(2 * math.log(0.5) + math.log(1e-3))  # the forced EOS is scored


@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_repeat_ngram_blocks_repeats(n):
    parrot = ScriptedModel({}, default={A: 0.6, B: 0.3, C: 0.05, EOS: 0.01})
    src, src_len = scripted_src([0, 0], [6, 9])
    config = DecodeConfig(beam_size=3, nbest=3)
    assert has_repeat(beam_search(parrot, src, src_len, config, **IDS)[0][0].tokens, n)
    blocked = beam_search(parrot, src, src_len, replace(config, no_repeat_ngram=n), **IDS)
    assert all(len(nbest) == 3 and not has_repeat(h.tokens, n) for nbest in blocked for h in nbest)


def test_unk_penalty_removes_unk():
    model = ScriptedModel({}, default={UNK: 0.6, A: 0.3, EOS: 0.1})
    src, src_len = scripted_src([0], [4])
    config = DecodeConfig(beam_size=2, nbest=2)
    assert UNK in beam_search(model, src, src_len, config, **IDS, unk_id=UNK)[0][0].tokens
    [nbest] = beam_search(model, src, src_len, replace(config, unk_penalty=100.0), **IDS, unk_id=UNK)
    assert nbest and all(UNK not in h.tokens for h in nbest)


def test_top_k_and_top_p_cut_the_tail():
    model = ScriptedModel({(): {A: 0.5, B: 0.3, C: 0.2}})
    src, src_len = scripted_src([0] * 300)
    generator = torch.Generator().manual_seed(0)

    def first_tokens(**kwargs) -> set[int]:
        return {h.tokens[0] for h in sample(model, src, src_len, **IDS, generator=generator, **kwargs)}

    assert first_tokens() == {A, B, C}
    assert first_tokens(top_k=2) == {A, B}
    assert first_tokens(top_p=0.7) == {A, B}  # A + B = 0.8 is the smallest set holding 0.7
    assert first_tokens(top_p=0.4) == {A}


def test_bad_settings_are_config_errors_when_made():
    for bad in (dict(beam_size=2, nbest=3), dict(normalize="sum"), dict(unk_penalty=-1.0), dict(min_len=-1)):
        with pytest.raises(ConfigError):
            DecodeConfig(**bad)
    for bad in (dict(top_p=0.0), dict(temperature=0.0), dict(top_k=-1)):
        with pytest.raises(ConfigError):
            SamplingConfig(**bad)


# --- small random models ------------------------------------------------------------------


class ToyRNN:
    """A tiny random recurrent StepModel: cheap, batch-independent, with real-looking distributions."""

    def __init__(self, vocab: int = 40, dim: int = 16, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.embed = torch.randn(vocab, dim, generator=g)
        self.w = torch.randn(dim, dim, generator=g) / dim**0.5
        self.out = torch.randn(dim, vocab, generator=g)
        self.out[:, EOS] += 2.0  # some outputs end before their limit

    def encode(self, src, src_len):
        mask = torch.arange(src.size(1)) < src_len[:, None]
        return (self.embed[src] * mask[..., None]).sum(1) / src_len[:, None]

    def decode_step(self, tokens, memory, cache):
        h = torch.tanh((0 if cache is None else cache @ self.w) + self.embed[tokens] + memory)
        return (h @ self.out).log_softmax(dim=-1), h

    def reorder(self, memory, cache, index):
        index = index.flatten()  # memory kept per row: simpler, and allowed
        return memory[index], cache[index]


class EosBias:
    """A StepModel with EOS made more likely: random models seldom end, and batching has to get
    sentences that finish at different steps right."""

    def __init__(self, model, bias: float) -> None:
        self.model, self.bias = model, bias

    def encode(self, src, src_len):
        return self.model.encode(src, src_len)

    def decode_step(self, tokens, memory, cache):
        log_probs, cache = self.model.decode_step(tokens, memory, cache)
        log_probs = log_probs.index_add(1, torch.tensor([EOS]), torch.full((len(tokens), 1), self.bias))
        return log_probs.log_softmax(dim=-1), cache

    def reorder(self, memory, cache, index):
        return self.model.reorder(memory, cache, index)


@pytest.fixture(scope="module", params=["toy_rnn", "transformer", "relaid"])
def step_model(request):
    if request.param == "toy_rnn":
        return ToyRNN()
    model_module = pytest.importorskip("nmt.model")
    torch.manual_seed(1)
    # untied: tied and random, it echoes its input
    config = tiny_config(40, enc_layers=2, dec_layers=2, dropout=0.0, share_all_embeddings=False, tie_output=False)
    model = model_module.Transformer(config).eval()
    if request.param == "relaid":  # what the PyTorch engine searches with on the CPU
        return EosBias(model.stepper(relaid=True), 1.0)
    return EosBias(model, 1.0)


@pytest.fixture(scope="module")
def src_batch():
    g = torch.Generator().manual_seed(1)
    src_len = torch.tensor([3, 7, 1, 5, 9, 4])
    src = torch.randint(FIRST_WORD, 40, (len(src_len), int(src_len.max())), generator=g)
    src[torch.arange(src.size(1)) >= src_len[:, None]] = PAD
    return src, src_len


def one_at_a_time(src, src_len):
    for i, n in enumerate(src_len.tolist()):
        yield src[i : i + 1, :n], src_len[i : i + 1]


@pytest.mark.parametrize("settings", [{}, dict(length_penalty=0.0), dict(normalize="length")])
def test_beam_of_one_is_greedy(step_model, src_batch, settings):
    config = DecodeConfig(beam_size=1, max_len_a=1.0, max_len_b=5, **settings)
    beams = beam_search(step_model, *src_batch, config, **IDS)
    paths = greedy(step_model, *src_batch, **IDS, max_len_a=1.0, max_len_b=5, **settings)
    assert beams == [[hyp] for hyp in paths]  # same tokens, bit-identical scores
    limits = [int(1.0 * n + 5) for n in src_batch[1].tolist()]
    assert 0 < sum(len(h.tokens) < n for h, n in zip(paths, limits)) < len(paths)  # some end early, some at the limit


def test_batched_beam_equals_one_at_a_time(step_model, src_batch):
    config = DecodeConfig(beam_size=4, nbest=2)
    batched = beam_search(step_model, *src_batch, config, **IDS)
    for nbest, (src, src_len) in zip(batched, one_at_a_time(*src_batch), strict=True):
        [alone] = beam_search(step_model, src, src_len, config, **IDS)
        assert [h.tokens for h in nbest] == [h.tokens for h in alone]
        assert [h.score for h in nbest] == pytest.approx([h.score for h in alone], abs=1e-4)
        assert [h.log_prob for h in nbest] == pytest.approx([h.log_prob for h in alone], abs=1e-4)


def test_nbest_sorted_distinct_within_limits(step_model, src_batch):
    config = DecodeConfig(beam_size=5, nbest=5, max_len_a=0.5, max_len_b=3, length_penalty=0.6)
    results = beam_search(step_model, *src_batch, config, **IDS)
    for nbest, n in zip(results, src_batch[1].tolist(), strict=True):
        assert len(nbest) == 5
        assert len({tuple(h.tokens) for h in nbest}) == 5
        assert [h.score for h in nbest] == sorted((h.score for h in nbest), reverse=True)
        for h in nbest:
            assert len(h.tokens) <= int(0.5 * n + 3) and EOS not in h.tokens
            assert h.score == normalise(h.log_prob, len(h.tokens) + 1, length_penalty=0.6)


def test_no_repeat_ngram_on_a_real_model(step_model, src_batch):
    config = DecodeConfig(beam_size=3, nbest=3, max_len_a=2.0, no_repeat_ngram=2)
    for nbest in beam_search(step_model, *src_batch, config, **IDS):
        assert all(not has_repeat(h.tokens, 2) for h in nbest)


def test_sampling_is_reproducible(step_model, src_batch):
    def draw(seed: int) -> list[Hypothesis]:
        return sample(step_model, *src_batch, **IDS, temperature=1.5, generator=torch.Generator().manual_seed(seed))

    assert draw(3) == draw(3)
    assert [h.tokens for h in draw(3)] != [h.tokens for h in draw(4)]


@pytest.mark.parametrize("settings", [dict(top_k=1), dict(top_p=1e-6), dict(temperature=1e-4)])
def test_sampling_that_cannot_choose_is_greedy(step_model, src_batch, settings):
    drawn = sample(step_model, *src_batch, **IDS, generator=torch.Generator().manual_seed(0), **settings)
    assert drawn == greedy(step_model, *src_batch, **IDS)
    for h in drawn:
        assert len(h.tokens) <= int(1.2 * 9 + 10)


# The model prefers padding at every step; no search may emit it (transformers bans it in Marian's outputs).
PAD_LOVER = {(): {PAD: 0.5, A: 0.3, B: 0.2}, (A,): {PAD: 0.6, EOS: 0.3, B: 0.1}, (B,): {EOS: 1.0}, (A, B): {EOS: 1.0}}


class FirstTokens(ScriptedModel):
    """Records the tokens each search starts its decoder from."""

    def __init__(self, *scripts: dict) -> None:
        super().__init__(*scripts)
        self.started_from: list[list[int]] = []

    def decode_step(self, tokens, memory, cache):
        if cache is None:
            self.started_from.append(tokens.tolist())
        return super().decode_step(tokens, memory, cache)


@pytest.mark.parametrize("bos_id", [BOS, PAD], ids=["bos", "pad as bos"])
def test_padding_is_never_emitted_and_the_others_keep_their_log_probs(bos_id):
    model = FirstTokens(PAD_LOVER)
    src, src_len = scripted_src([0, 0])
    ids = {**IDS, "bos_id": bos_id}
    found = greedy(model, src, src_len, **ids, length_penalty=0.0)
    assert [h.tokens for h in found] == [[A], [A]]
    assert found[0].log_prob == pytest.approx(math.log(0.3) + math.log(0.3))  # the model's own, not renormalised
    [nbest] = beam_search(model, src[:1], src_len[:1], DecodeConfig(beam_size=2, nbest=2, length_penalty=0.0), **ids)
    assert [h.tokens for h in nbest] == [[B], [A]]
    assert [h.log_prob for h in nbest] == pytest.approx([math.log(0.2), math.log(0.09)])
    for seed in range(20):
        drawn = sample(model, src, src_len, **ids, generator=torch.Generator().manual_seed(seed))
        assert all(PAD not in h.tokens for h in drawn)
    assert {t for first in model.started_from for t in first} == {bos_id}  # Marian's decoder starts from pad
