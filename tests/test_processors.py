"""Score processors shared by greedy, sampling and beam search (unk penalty, n-gram blocking, minimum length),
and settings checked when they are made."""

from __future__ import annotations

import math
import os

import pytest
import torch
from helpers import EOS, IDS, TINY_MODEL, UNK, A, B, ScriptedModel, has_repeat, scripted_src
from nmt_cli.main import app
from typer.testing import CliRunner

from nmt.config import DecodeConfig
from nmt.processors import block_repeats, forbid_eos_before, penalise_unk, processors
from nmt.search import beam_search, greedy, sample
from nmt.tokenizer import SPECIAL

pytestmark = pytest.mark.unit

# Ends at once unless stopped: EOS 0.7, A 0.2, UNK 0.1 at every step.
EAGER = {(): {EOS: 0.7, A: 0.2, UNK: 0.1}}


def test_processors_shape_a_step_as_named():
    history = torch.tensor([[A, B, A], [B, B, B]])
    log_probs = torch.zeros(2, 7)
    assert penalise_unk(UNK, 2.5)(history, log_probs)[:, UNK].tolist() == [-2.5, -2.5]
    blocked = block_repeats(2)(history, log_probs)  # (A, B) was seen after A; (B, B) after B
    assert blocked[0, B] == -math.inf and blocked[1, B] == -math.inf and blocked[0, A] == 0 and blocked[1, A] == 0
    assert forbid_eos_before(4, EOS)(history, log_probs)[:, EOS].tolist() == [-math.inf, -math.inf]
    assert forbid_eos_before(3, EOS)(history, log_probs)[:, EOS].tolist() == [0.0, 0.0]
    assert log_probs.eq(0).all()  # the input is left as it was
    assert processors(DecodeConfig(), eos_id=EOS) == []
    assert len(processors(DecodeConfig(unk_penalty=1.0, no_repeat_ngram=2, min_len=3), eos_id=EOS, unk_id=UNK)) == 3


@pytest.mark.parametrize("min_len", [1, 3, 5])
def test_min_len_holds_in_greedy_sampling_and_beam(min_len):
    src, src_len = scripted_src([0, 0], [9, 9])
    config = DecodeConfig(beam_size=2, nbest=2, min_len=min_len)
    shape = processors(config, eos_id=EOS, unk_id=UNK)
    model = ScriptedModel(EAGER, default=EAGER[()])
    assert all(len(h.tokens) == 0 for h in greedy(model, src, src_len, **IDS))  # unshaped: ends at once
    outputs = [
        *greedy(model, src, src_len, **IDS, shape=shape),
        *sample(model, src, src_len, **IDS, shape=shape, generator=torch.Generator().manual_seed(0)),
        *(h for nbest in beam_search(model, src, src_len, config, **IDS) for h in nbest),
    ]
    assert len(outputs) == 2 + 2 + 4 and all(len(h.tokens) >= min_len for h in outputs)


def test_the_length_limit_still_ends_an_output_that_min_len_would_keep_going():
    src, src_len = scripted_src([0], [2])
    config = DecodeConfig(beam_size=2, nbest=1, min_len=50, max_len_a=1.0, max_len_b=1)  # limit: 3 tokens
    model = ScriptedModel(EAGER, default=EAGER[()])
    shape = processors(config, eos_id=EOS)
    [h] = greedy(model, src, src_len, **IDS, max_len_a=1.0, max_len_b=1, shape=shape)
    [[b]] = beam_search(model, src, src_len, config, **IDS)
    assert len(h.tokens) == 3 and len(b.tokens) == 3 and math.isfinite(b.log_prob)


def test_greedy_applies_unk_penalty_and_ngram_blocking_itself():
    """No fallback to beam search: greedy takes the processors, and reports the model's own log-probability."""
    src, src_len = scripted_src([0], [6])
    unk_first = ScriptedModel({(): {UNK: 0.6, A: 0.3, EOS: 0.1}}, default={EOS: 1.0})
    [plain] = greedy(unk_first, src, src_len, **IDS)
    [shaped] = greedy(unk_first, src, src_len, **IDS, shape=[penalise_unk(UNK, 100.0)])
    assert plain.tokens == [UNK] and shaped.tokens == [A]
    assert shaped.log_prob == pytest.approx(math.log(0.3 * 1.0))
    parrot = ScriptedModel({}, default={A: 0.6, B: 0.3, EOS: 0.1})
    [repeating] = greedy(parrot, src, src_len, **IDS)
    [blocked] = greedy(parrot, src, src_len, **IDS, shape=[block_repeats(2)])
    assert has_repeat(repeating.tokens, 2) and len(blocked.tokens) >= 3 and not has_repeat(blocked.tokens, 2)


def test_beam_one_with_processors_gives_greedy_tokens(tiny_model_dir, sample_dir):
    """`nmt translate --beam 1` with processors is greedy with them (it used to fall back to beam search): the
    same tokens as a beam of one with the same processors, on a real model."""
    from nmt.data import ParallelIds, collate
    from nmt.translate import Translator

    lines = (sample_dir / "test.en").read_text(encoding="utf-8").splitlines()[:30]
    config = DecodeConfig(beam_size=1, no_repeat_ngram=2, unk_penalty=1.0, min_len=2)
    translator = Translator.load(tiny_model_dir, config, threads=1)
    ids = translator.src_tok.encode_batch(lines)
    batch = collate(
        ParallelIds.from_lists(ids, [[] for _ in ids]), list(range(len(ids))), SPECIAL.pad, SPECIAL.bos, SPECIAL.eos
    )
    with torch.inference_mode():
        beam = beam_search(
            translator.model,
            batch.src,
            batch.src_len,
            config,
            bos_id=SPECIAL.bos,
            eos_id=SPECIAL.eos,
            pad_id=SPECIAL.pad,
            unk_id=SPECIAL.unk,
        )
    greedy_found = translator.search_ids(ids)  # beam_size 1, nbest 1: the greedy path
    assert [g[0].tokens for g in greedy_found] == [b[0].tokens for b in beam]
    assert all(len(g[0].tokens) >= 2 and not has_repeat(g[0].tokens, 2) for g in greedy_found)


def test_no_valid_bleu_with_bleu_early_stopping_fails_before_training(prepared_sample, tmp_path):
    """The bug: `nmt train DATA --out RUN --no-valid-bleu` used to train valid_every steps and then fail before
    its first checkpoint, with a run --resume could not mend. Asked for BLEU early stopping without BLEU, it is
    one error line before anything starts (alone, --no-valid-bleu watches the loss: tests/test_cli_train.py)."""
    args = ["--no-valid-bleu", "--early-stop-metric", "bleu", "--threads", "1"]
    result = CliRunner().invoke(app, ["train", str(prepared_sample), "--out", str(tmp_path / "run"), *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "early_stop_metric = 'bleu' needs valid_bleu = true" in lines[0]
    assert "--early-stop-metric loss" in lines[0]
    assert not (tmp_path / "run").exists()  # nothing was started


def test_special_ids_in_these_tests_are_the_tokenizers():
    assert (UNK, EOS) == (SPECIAL.unk, SPECIAL.eos)


# --- one model factory -------------------------------------------------------------------------


def test_every_model_is_built_by_the_factory(monkeypatch, prepared_sample, tmp_path, tiny_model_dir):
    """Training and checkpoint loading both build the class ModelConfig.arch names, through build_model."""
    import nmt.model
    import nmt.train as training
    from nmt.config import TrainConfig
    from nmt.modeldir import load_model_dir

    built: list[str] = []

    class Recorded(nmt.model.Transformer):
        def __init__(self, config):
            built.append(config.arch)
            super().__init__(config)

    monkeypatch.setitem(nmt.model.ARCHITECTURES, "transformer", Recorded)
    assert type(load_model_dir(tiny_model_dir).model) is Recorded
    trainer = training.start(
        prepared_sample,
        tmp_path / "r",
        TINY_MODEL,
        TrainConfig(max_steps=1),
        threads=1,
    )
    trainer.close()
    assert type(trainer.model) is Recorded and built[-1] == "transformer" and len(built) >= 3  # + shape check


def test_the_exporter_refuses_an_architecture_it_cannot_map(monkeypatch, tiny_model_dir, tmp_path):
    pytest.importorskip("ctranslate2")
    import nmt.export
    from nmt.errors import ConfigError

    monkeypatch.setattr(nmt.export, "SPECS", {})
    with pytest.raises(ConfigError, match="a 'transformer' model cannot be exported to CTranslate2"):
        nmt.export.export_ctranslate2(tiny_model_dir, tmp_path / "ct2")
    assert not (tmp_path / "ct2").exists()


@pytest.mark.system
def test_nmt_debug_shows_the_traceback_before_the_error_line(tmp_path):
    import subprocess
    import sys

    args = [sys.executable, "-m", "nmt_cli.main", "translate", "-m", str(tmp_path / "missing")]
    plain = subprocess.run(args, capture_output=True, text=True, input="x\n")
    debug = subprocess.run(args, capture_output=True, text=True, input="x\n", env={**os.environ, "NMT_DEBUG": "1"})
    assert plain.returncode == debug.returncode == 2
    assert "Traceback" not in plain.stderr and plain.stderr.strip().startswith("error: ")
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == plain.stderr.strip().splitlines()[-1]


@pytest.mark.system
def test_nmt_debug_shows_the_cause_the_error_line_names(tmp_path):
    """Errors are chained to what caused them (`raise ... from e`): users get one line, NMT_DEBUG=1 the cause."""
    import subprocess
    import sys

    args = [sys.executable, "-m", "nmt_cli.main", "score", "-r", str(tmp_path / "missing.fr"), "-"]
    plain = subprocess.run(args, capture_output=True, text=True, input="x\n")
    debug = subprocess.run(args, capture_output=True, text=True, input="x\n", env={**os.environ, "NMT_DEBUG": "1"})
    assert plain.returncode == debug.returncode == 2 and len(plain.stderr.strip().splitlines()) == 1
    assert "FileNotFoundError" in debug.stderr and "direct cause" in debug.stderr
