"""A quality gate: the whole pipeline (prepare, train, translate, score) must learn a task a small
Transformer learns in a minute or two of CPU. Each piece can pass its own tests and the whole still learn
nothing (a mask off by one, targets shifted the wrong way, a learning-rate schedule that never warms
up); this test fails then. Run with `pytest -m slow tests/test_quality.py`."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
import sacrebleu

import nmt.train as training
from nmt.config import DecodeConfig, TrainConfig
from nmt.prepare import PrepareConfig, prepare
from nmt.translate import Translator

pytestmark = pytest.mark.system

WORDS = 30
MIN_WORDS, MAX_WORDS = 3, 8
TRAIN_PAIRS, VALID_PAIRS, TEST_PAIRS = 4000, 200, 200
BLEU_THRESHOLD = 80.0

MODEL = {
    "d_model": 64,
    "n_heads": 4,
    "enc_layers": 2,
    "dec_layers": 2,
    "ffn_dim": 256,
    "dropout": 0.1,
    "max_positions": 64,
}
TRAIN = TrainConfig(
    batch_tokens=1200,
    max_steps=600,
    warmup_steps=150,
    lr=3e-3,
    label_smoothing=0.1,
    log_every=100,
    valid_every=200,
    valid_max_sentences=50,
    keep_last=1,
    seed=1,
)


def made_up_words(rng: random.Random, n: int) -> list[str]:
    """n distinct pronounceable non-words of two or three syllables."""
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    words: set[str] = set()
    while len(words) < n:
        syllables = rng.randint(2, 3)
        words.add("".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables)) + rng.choice("kmnrst"))
    return sorted(words)


def reversal_task(root: Path, seed: int = 7) -> dict[str, list[tuple[str, str]]]:
    """Source: 3 to 8 made-up words; target: the same words in reverse order. The test pairs are sentences
    the training data never holds."""
    rng = random.Random(seed)
    vocabulary = made_up_words(rng, WORDS)
    seen: set[str] = set()
    splits: dict[str, list[tuple[str, str]]] = {}
    for name, count in (("test", TEST_PAIRS), ("valid", VALID_PAIRS), ("train", TRAIN_PAIRS)):
        pairs = []
        while len(pairs) < count:
            words = [rng.choice(vocabulary) for _ in range(rng.randint(MIN_WORDS, MAX_WORDS))]
            src = " ".join(words)
            if src in seen:
                continue
            seen.add(src)
            pairs.append((src, " ".join(reversed(words))))
        splits[name] = pairs
        for side, lang in ((0, "src"), (1, "tgt")):
            (root / f"{name}.{lang}").write_text("".join(p[side] + "\n" for p in pairs), encoding="utf-8")
    return splits


@pytest.mark.slow
def test_a_small_model_learns_to_reverse_sentences(tmp_path):
    """Measured on 2 CPU cores: test BLEU 99.2 (98% of the sentences exact) in both of two runs (the run is
    seeded, and CPU training repeats exactly); 32 s with the cores to itself, 150 s sharing them with
    another job. With training seeds 2 and 3, or another task (seed 11), greedy validation BLEU at the
    last step was 97.1, 97.5 and 95.0. The threshold, 80, leaves a wide margin: the gate is for a
    pipeline that learns nothing, or much less than it should, not for noise."""
    began = time.perf_counter()
    splits = reversal_task(tmp_path)
    data = tmp_path / "prepared"
    # 450 pieces: 260 bytes and specials, the letters, and enough merges to make every word one piece
    prepare(
        PrepareConfig(
            src="src",
            tgt="tgt",
            train=str(tmp_path / "train"),
            valid=str(tmp_path / "valid"),
            tests=(str(tmp_path / "test"),),
            vocab_size=450,
        ),
        data,
    )
    trainer = training.start(data, tmp_path / "run", MODEL, TRAIN, threads=2)
    trainer.train()
    trainer.close()
    trained = time.perf_counter()

    translator = Translator.load(tmp_path / "run" / "best", DecodeConfig(beam_size=4), device="cpu", threads=2)
    sources = [src for src, _ in splits["test"]]
    references = [tgt for _, tgt in splits["test"]]
    hypotheses = [t.text for t in translator.translate_lines(sources)]
    bleu = sacrebleu.corpus_bleu(hypotheses, [references]).score
    exact = sum(h == r for h, r in zip(hypotheses, references)) / len(references)
    print(
        f"BLEU {bleu:.1f}, {exact:.0%} exact, training {trained - began:.0f} s, all {time.perf_counter() - began:.0f} s"
    )
    assert len(hypotheses) == len(references)
    assert bleu >= BLEU_THRESHOLD, f"BLEU {bleu:.1f} < {BLEU_THRESHOLD} on reversing made-up sentences"
