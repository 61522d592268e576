"""Tests for nmt/files.py's reading of a prepared data directory's tokenizer: its special ids (prepare.json's
special_ids, the source of truth for training) and, for data encoded with an imported model's tokenizer, the
vocabulary that maps the pieces to the model's ids; a run trained on such data carries the vocabulary into every
checkpoint, which then translates with it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import LINES, marian_spm, marian_vocab, sample_lines

from nmt.data import ParallelIds
from nmt.errors import DataError
from nmt.fileio import sha256_bytes
from nmt.files import data_specials, data_tokenizer, data_vocab_files
from nmt.layout import PREPARE_JSON, ids_file
from nmt.tokenizer import SPECIAL, SpecialIds, Tokenizer

pytestmark = pytest.mark.unit


def marian_data(path: Path, n: int = 200) -> Path:
    """A prepared data directory as `nmt prepare --tokenizer` writes one for an imported Marian model: its
    SentencePiece models and vocab.json, the ids that vocabulary gives, and prepare.json naming them."""
    en, fr = sample_lines("en", n), sample_lines("fr", n)
    source, target = marian_spm(en), marian_spm(fr)
    vocab = marian_vocab(source, target)
    src, tgt = Tokenizer(source, vocab=vocab), Tokenizer(target, vocab=vocab)
    path.mkdir(parents=True)
    files = {"source.spm": source, "target.spm": target, "vocab.json": json.dumps(vocab).encode()}
    for name, data in files.items():
        (path / name).write_bytes(data)
    for split, rows in (("train", slice(0, n - 20)), ("valid", slice(n - 20, n))):
        ParallelIds.from_lists(src.encode_batch(en[rows]), tgt.encode_batch(fr[rows])).save(path / ids_file(split))
        (path / f"{split}.en").write_text("\n".join(en[rows]) + "\n", encoding="utf-8")
        (path / f"{split}.fr").write_text("\n".join(fr[rows]) + "\n", encoding="utf-8")
    summary = {
        "settings": {"src": "en", "tgt": "fr"},
        "special_ids": {"pad": src.specials.pad, "unk": src.specials.unk, "bos": src.specials.bos, "eos": 0},
        "spm": {"src": "source.spm", "tgt": "target.spm", "sha256": {n: sha256_bytes(files[n]) for n in files}},
        "vocab": {
            "src": "vocab.json",
            "tgt": "vocab.json",
            "sha256": {"vocab.json": sha256_bytes(files["vocab.json"])},
        },
        "vocab_size": {"src": len(vocab), "tgt": len(vocab)},
    }
    (path / PREPARE_JSON).write_text(json.dumps(summary), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return marian_data(tmp_path_factory.mktemp("data") / "marian")


def summary_of(path: Path) -> dict:
    return json.loads((path / PREPARE_JSON).read_text(encoding="utf-8"))


def test_the_special_ids_are_those_prepare_json_records():
    assert data_specials({}) == SPECIAL  # data prepared before it recorded them
    assert data_specials({"special_ids": {"pad": 9, "unk": 1, "bos": 9, "eos": 0}}) == SpecialIds(9, 1, 9, 0)
    with pytest.raises(DataError, match="special_ids"):
        data_specials({"special_ids": {"pad": "9", "unk": 1, "bos": 9, "eos": 0}})


def test_data_with_a_vocabulary_gives_its_tokenizer(data):
    summary = summary_of(data)
    tokenizer = data_tokenizer(data, summary, "tgt")
    assert tokenizer.vocab == json.loads((data / "vocab.json").read_text())
    assert tokenizer.specials == data_specials(summary) and tokenizer.specials.bos == tokenizer.specials.pad
    assert data_vocab_files(data, summary) == {"vocab.json": (data / "vocab.json").read_bytes()}
    assert data_vocab_files(data, {k: v for k, v in summary.items() if k != "vocab"}) == {}


@pytest.mark.parametrize(
    "damage, says",
    [
        (lambda d, s: (d / "vocab.json").write_text("{}"), "vocab.json: does not match its sha256"),
        (lambda d, s: s["special_ids"].update(bos=2), "are not its tokenizer's"),
        (lambda d, s: s["vocab"].pop("sha256"), "vocab needs src, tgt and their sha256"),
    ],
)
def test_damaged_data_is_one_line_naming_what(data, tmp_path, damage, says):
    copy = Path(shutil.copytree(data, tmp_path / "d"))
    summary = summary_of(copy)
    damage(copy, summary)
    with pytest.raises(DataError, match=says) as e:
        data_tokenizer(copy, summary, "tgt")
    assert "\n" not in str(e.value)


@pytest.mark.integration
def test_a_run_on_such_data_keeps_its_ids_and_carries_its_vocabulary(data, tmp_path):
    import nmt.train as training
    from nmt.config import DecodeConfig, TrainConfig
    from nmt.modeldir import load_model_dir
    from nmt.translate import Translator

    marian = {"pre_norm": False, "activation": "swish", "positions": "halves", "output_bias": True}
    cfg = TrainConfig(batch_tokens=400, max_steps=2, warmup_steps=1, valid_every=2, valid_max_sentences=4, seed=1)
    tiny = {"d_model": 32, "n_heads": 2, "enc_layers": 1, "dec_layers": 1, "ffn_dim": 64, "max_positions": 128}
    trainer = training.start(data, tmp_path / "run", {**tiny, **marian}, cfg, threads=1)
    trainer.train()
    trainer.close()
    loaded = load_model_dir(tmp_path / "run")
    summary = summary_of(data)
    assert loaded.model.config.pad_id == summary["special_ids"]["pad"] and loaded.model.config.output_bias
    assert loaded.config["vocab"] == {"src": "vocab.json", "tgt": "vocab.json"}
    assert (loaded.path / "vocab.json").read_bytes() == (data / "vocab.json").read_bytes()
    assert loaded.specials == data_specials(summary)
    translator = Translator(loaded, DecodeConfig(beam_size=2), loaded.model.output_proj.weight.device)
    found = list(translator.translate_lines(LINES))
    assert len(found) == len(LINES)
