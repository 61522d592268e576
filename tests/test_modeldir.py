"""Tests for nmt/modeldir.py and nmt/files.py with an imported model's tokenizer: a model directory whose
SentencePiece pieces go through a vocabulary (Marian's vocab.json, one over separate source and target models, or
one per side) saves, loads (every file checked against its sha256) and translates with the vocabulary's special
ids; nmt's own directories (tests/fixtures) load as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import ROOT, marian_model, save_marian

from nmt.config import DecodeConfig
from nmt.errors import CheckpointError
from nmt.modeldir import load_model_dir, save_model_dir, vocab_files_of
from nmt.search import greedy
from nmt.tokenizer import SPECIAL, SpecialIds
from nmt.translate import Translator

pytestmark = pytest.mark.unit

LINES = ["the cat sat on the mat .", "two dogs run", "hello"]


@pytest.fixture(scope="module")
def marian_dir(tmp_path_factory) -> Path:
    return save_marian(tmp_path_factory.mktemp("marian") / "model")


def test_a_vocabulary_is_saved_with_its_sha256_and_loaded_with_its_ids(marian_dir):
    config = json.loads((marian_dir / "config.json").read_text())
    assert config["vocab"] == {"src": "vocab.json", "tgt": "vocab.json"}
    assert set(config["vocab_sha256"]) == {"vocab.json"} and set(config["spm_sha256"]) == {"source.spm", "target.spm"}
    loaded = load_model_dir(marian_dir)
    vocab = json.loads((marian_dir / "vocab.json").read_text())
    assert loaded.src_tokenizer.vocab == loaded.tgt_tokenizer.vocab == vocab
    pad = vocab["<pad>"]
    assert loaded.specials == SpecialIds(pad=pad, unk=1, bos=pad, eos=0) and pad == len(vocab) - 1
    assert loaded.model.config.output_bias and loaded.model.config.positions == "halves"
    assert vocab_files_of(marian_dir, config) == {"vocab.json": (marian_dir / "vocab.json").read_bytes()}


@torch.inference_mode()
def test_translation_starts_from_pad_never_emits_it_and_decodes_through_the_vocabulary(marian_dir):
    loaded = load_model_dir(marian_dir)
    translator = Translator(loaded, DecodeConfig(beam_size=1, split="none"), torch.device("cpu"))
    started = []
    step = translator.stepper.decode_step

    def recording(tokens, memory, cache):
        if cache is None:
            started.extend(tokens.tolist())
        return step(tokens, memory, cache)

    translator.stepper.decode_step = recording
    found = list(translator.translate_lines(LINES))
    ids = loaded.specials
    assert set(started) == {ids.pad}
    # the same search by hand: source ids + </s>, the decoder from <pad>, pad banned
    for line, result in zip(LINES, found):
        src = torch.tensor([[*loaded.src_tokenizer.encode(line), ids.eos]])
        [hyp] = greedy(loaded.model, src, torch.tensor([src.size(1)]), bos_id=ids.pad, eos_id=ids.eos, pad_id=ids.pad)
        assert ids.pad not in hyp.tokens
        assert result.text == loaded.tgt_tokenizer.decode(hyp.tokens)


def test_separate_vocabularies_per_side(tmp_path):
    path = save_marian(tmp_path / "model", separate_vocabs=True)
    loaded = load_model_dir(path)
    assert loaded.src_tokenizer.vocab != loaded.tgt_tokenizer.vocab
    assert len(loaded.tgt_tokenizer) == loaded.model.config.tgt_vocab_size
    translator = Translator(loaded, DecodeConfig(beam_size=2), torch.device("cpu"))
    assert len(list(translator.translate_lines(LINES))) == len(LINES)


@pytest.mark.parametrize(
    "damage, says",
    [
        (lambda d: (d / "vocab.json").write_text('{"</s>": 0}'), "vocab.json: the vocabulary does not match"),
        (lambda d: (d / "vocab.json").unlink(), "vocab.json: missing"),
        (lambda d: _edit_config(d, vocab_sha256={"vocab.json": "0" * 64}), "vocab.json: the vocabulary does not"),
        (lambda d: _edit_config(d, vocab={"src": "vocab.json"}), "vocab needs vocab.src, vocab.tgt"),
        (lambda d: _edit_config(d, model_pad_id=0), "pad_id is 0, its vocabulary's <pad> is"),
    ],
)
def test_a_damaged_vocabulary_is_one_line_naming_it(marian_dir, tmp_path, damage, says):
    import shutil

    path = Path(shutil.copytree(marian_dir, tmp_path / "model"))
    damage(path)
    with pytest.raises(CheckpointError, match=says) as e:
        load_model_dir(path)
    assert "\n" not in str(e.value)


def _edit_config(path: Path, model_pad_id: int | None = None, **changes) -> None:
    config = json.loads((path / "config.json").read_text())
    config.update(changes)
    if model_pad_id is not None:
        config["model"]["pad_id"] = model_pad_id
    (path / "config.json").write_text(json.dumps(config))


def test_vocabulary_files_and_their_names_go_together(tmp_path):
    model = marian_model({"</s>": 0, "<unk>": 1, "a": 2, "<pad>": 3})
    with pytest.raises(ValueError, match="go together"):
        save_model_dir(tmp_path / "m", model, {"spm": {"src": "s", "tgt": "s"}}, {"s": b""}, vocab_files={"v": b"{}"})


def test_nmts_own_directories_load_with_sentencepieces_ids():
    loaded = load_model_dir(ROOT / "tests" / "fixtures" / "model")
    assert loaded.src_tokenizer.vocab is None and loaded.specials == SPECIAL
    assert "vocab" not in loaded.config and "vocab_sha256" not in loaded.config
