"""Early stopping on its own, with no training: what counts as better, when it stops, what it saves."""

from __future__ import annotations

import math

import pytest
from helpers import tiny_config

from nmt.errors import ConfigError
from nmt.validation import EarlyStopping

pytestmark = pytest.mark.unit


def test_bleu_higher_is_better_and_patience_counts_validations_without_it():
    early = EarlyStopping("bleu", patience=2)
    assert early.update({"valid_bleu": 10.0}, 100) and early.best_step == 100
    assert not early.update({"valid_bleu": 9.0}, 200) and not early.should_stop
    assert early.update({"valid_bleu": 11.0}, 300) and early.bad_validations == 0  # a better one resets the count
    assert not early.update({"valid_bleu": 11.0}, 400)  # equal is not better
    assert not early.update({"valid_bleu": math.nan}, 500)  # NaN is never the best
    assert early.should_stop and (early.best_metric, early.best_step) == (11.0, 300)


def test_loss_lower_is_better_and_patience_zero_never_stops():
    early = EarlyStopping("loss", patience=0)
    assert early.update({"valid_loss": 3.0}, 1)
    assert early.update({"valid_loss": 2.5}, 2)
    for step in range(3, 50):
        assert not early.update({"valid_loss": 4.0}, step)
    assert not early.should_stop and early.best_step == 2


def test_its_state_round_trips_and_a_new_patience_applies_on_resume():
    early = EarlyStopping("bleu", patience=5)
    for step, bleu in ((1, 5.0), (2, 4.0), (3, 3.0)):
        early.update({"valid_bleu": bleu}, step)
    state = early.state_dict()
    assert state == {"best_metric": 5.0, "best_step": 1, "bad_validations": 2}
    resumed = EarlyStopping("bleu", patience=2)
    resumed.load_state_dict(state)
    assert resumed.should_stop and resumed.state_dict() == state


def test_a_metric_that_would_not_be_measured_is_refused_by_the_config():
    from nmt.config import TrainConfig

    with pytest.raises(ConfigError, match="early_stop_metric = 'bleu' needs valid_bleu = true"):
        TrainConfig(valid_bleu=False)
    assert TrainConfig(valid_bleu=False, early_stop_metric="loss").early_stop_metric == "loss"


def test_validation_of_a_model_with_few_positions_does_not_crash(prepared_sample):
    """A model whose max_positions is short of the validation set (an untrained one never ends by itself, so greedy
    runs to its length limit): the loss leaves out pairs that do not fit, as training does, and BLEU truncates
    their sources as `nmt translate` does. It used to die at the first validation: position N past max_positions."""
    import torch

    from nmt.config import TrainConfig
    from nmt.data import ParallelIds, read_lines
    from nmt.layout import load_summary
    from nmt.model import build_model
    from nmt.tokenizer import Tokenizer
    from nmt.validation import Validator

    summary = load_summary(prepared_sample)
    vocab = summary["vocab_size"]["src"]
    data = ParallelIds.load(prepared_sample / "valid.ids.safetensors")
    positions = 24  # greedy's default limit, 1.2 n + 10, leaves room for sources of 9 tokens
    assert (data.src_lens > 9).any() and (data.tgt_lens > positions - 1).any()  # some to truncate, some to leave out
    torch.manual_seed(0)
    model = build_model(tiny_config(vocab, d_model=16, ffn_dim=32, max_positions=positions))
    spm = prepared_sample / summary["spm"]["tgt"]
    validator = Validator(
        data,
        read_lines(prepared_sample / "valid.fr"),
        Tokenizer(spm.read_bytes(), str(spm)),
        TrainConfig(valid_max_sentences=20),
        torch.device("cpu"),
    )
    result = validator(model)
    assert math.isfinite(result["valid_loss"]) and math.isfinite(result["valid_bleu"])


def test_validation_bleu_is_what_nmt_translate_beam_1_gives(prepared_sample, tiny_model_dir):
    """Validation searches with the step `nmt translate` takes (re-laid weights on the CPU), so the BLEU a run
    reports is the one its model gives users at --beam 1."""
    import torch

    from nmt.config import DecodeConfig, TrainConfig
    from nmt.data import ParallelIds, read_lines
    from nmt.metrics import bleu_chrf
    from nmt.translate import Translator
    from nmt.validation import Validator

    translator = Translator.load(tiny_model_dir, DecodeConfig(beam_size=1))
    refs = read_lines(prepared_sample / "valid.fr")
    validator = Validator(
        ParallelIds.load(prepared_sample / "valid.ids.safetensors"),
        refs,
        translator.tgt_tok,
        TrainConfig(valid_max_sentences=0),
        torch.device("cpu"),
    )
    result = validator(translator.loaded.model)
    hyps = [t.text for t in translator.translate_batch(read_lines(prepared_sample / "valid.en"))]
    assert len(hyps) == len(refs) and len(set(hyps)) > 1
    assert (result["valid_bleu"], result["valid_chrf"]) == bleu_chrf(hyps, [refs])
