"""What several test modules share, in one place: the repository's paths, the tiny model's shape (as a [model]
table, TOML, flags and a ModelConfig), the CLI's one-line error, the scripted model that search tests work out
by hand, and `nmt serve` as a subprocess. Test modules import from here, never from each other.

Knows no fixtures (tests/conftest.py holds them) and runs nothing at import."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from nmt.config import ModelConfig
from nmt.tokenizer import SPECIAL

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"

# ---------------------------------------------------------------------------------------------
# The tiny model: small enough to train in seconds on one CPU thread, big enough to emit real tokens

TINY_MODEL = {"d_model": 32, "n_heads": 2, "enc_layers": 1, "dec_layers": 1, "ffn_dim": 64}
TINY_MODEL_TOML = "[model]\n" + "".join(f"{key} = {value}\n" for key, value in TINY_MODEL.items())
TINY_MODEL_FLAGS = [arg for key, value in TINY_MODEL.items() for arg in (f"--{key.replace('_', '-')}", str(value))]


def tiny_config(vocab: int = 50, **fields: Any) -> ModelConfig:
    """TINY_MODEL as a ModelConfig over `vocab` ids on both sides and 64 positions, for tests that build a model
    without data; `fields` replace any of it (a test states only how its model differs)."""
    return ModelConfig(
        **{**TINY_MODEL, "src_vocab_size": vocab, "tgt_vocab_size": vocab, "max_positions": 64, **fields}
    )


# ---------------------------------------------------------------------------------------------
# The command line


def one_error_line(result: Any, *words: str) -> None:
    """A CliRunner result that failed as users expect: exit code 2, one line on stderr, 'error: ' and `words`."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


# ---------------------------------------------------------------------------------------------
# Marian's (OPUS-MT's) tokenizer files, made small: a source and a target SentencePiece model (unigram, SentencePiece's
# own ids: <unk> 0, <s> 1, </s> 2, no <pad>) and one vocabulary over both, in Marian's order (</s> 0, <unk> 1, the
# pieces, <pad> last)


def marian_spm(lines: list[str], vocab_size: int = 200) -> bytes:
    """A SentencePiece model as OPUS-MT's source.spm/target.spm are made (unigram, no byte fallback)."""
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="unigram",
        vocab_size=vocab_size,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    return model.getvalue()


def marian_vocab(*protos: bytes) -> dict[str, int]:
    """One vocabulary over the pieces of every model given: </s> 0, <unk> 1, the pieces, <pad> last."""
    import sentencepiece as spm

    vocab = {"</s>": 0, "<unk>": 1}
    for proto in protos:
        sp = spm.SentencePieceProcessor()
        sp.LoadFromSerializedProto(proto)
        for i in range(sp.get_piece_size()):
            if not (sp.is_control(i) or sp.is_unknown(i)):
                vocab.setdefault(sp.id_to_piece(i), len(vocab))
    vocab["<pad>"] = len(vocab)
    return vocab


def sample_lines(lang: str, n: int = 400) -> list[str]:
    return (SAMPLE / f"train.{lang}").read_text(encoding="utf-8").splitlines()[:n]


def marian_model(vocab: dict[str, int], tgt_vocab: dict[str, int] | None = None) -> Any:
    """A tiny random Transformer with every option Marian uses, over the vocabulary's ids (pad last)."""
    from nmt.model import Transformer

    torch.manual_seed(0)
    tgt = tgt_vocab or vocab
    config = tiny_config(
        len(vocab),
        tgt_vocab_size=len(tgt),
        pad_id=vocab["<pad>"],
        share_all_embeddings=tgt_vocab is None,
        pre_norm=False,
        activation="swish",
        positions="halves",
        output_bias=True,
    )
    model = Transformer(config).eval()
    with torch.no_grad():
        model.output_proj.bias.normal_()
        model.output_proj.bias[config.pad_id] = 6.0  # pad likely: a search that let it out would emit it
    return model


def save_marian(path: Path, separate_vocabs: bool = False) -> Path:
    """A model directory as `nmt import` makes one of an OPUS-MT model: source.spm, target.spm, vocab.json (or one
    per side), and `marian_model`'s random weights."""
    from nmt.modeldir import save_model_dir

    source, target = marian_spm(sample_lines("en")), marian_spm(sample_lines("fr"))
    spm = {"src": "source.spm", "tgt": "target.spm"}
    if separate_vocabs:
        vocabs = {"vocab.json": marian_vocab(source), "target_vocab.json": marian_vocab(target)}
        names = {"src": "vocab.json", "tgt": "target_vocab.json"}
        model = marian_model(vocabs["vocab.json"], vocabs["target_vocab.json"])
    else:
        vocabs = {"vocab.json": marian_vocab(source, target)}
        names = {"src": "vocab.json", "tgt": "vocab.json"}
        model = marian_model(vocabs["vocab.json"])
    return save_model_dir(
        path,
        model,
        {"spm": spm, "vocab": names, "src_lang": "en", "tgt_lang": "fr"},
        {"source.spm": source, "target.spm": target},
        vocab_files={name: json.dumps(v).encode() for name, v in vocabs.items()},
    )


# ---------------------------------------------------------------------------------------------
# A scripted model for search: probabilities written out by hand, so that the expected beams can be worked out

PAD, UNK, BOS, EOS = SPECIAL.pad, SPECIAL.unk, SPECIAL.bos, SPECIAL.eos
FIRST_WORD = max(PAD, UNK, BOS, EOS) + 1  # ids from here on are words
A, B, C = FIRST_WORD, FIRST_WORD + 1, FIRST_WORD + 2  # the scripted model's three words
IDS = dict(bos_id=BOS, eos_id=EOS, pad_id=PAD)


class ScriptedModel:
    """Next-token probabilities looked up by the prefix decoded so far (unlisted tokens get 0);
    the first source id picks the script. Records the batch size of every step."""

    def __init__(self, *scripts: dict, default: dict | None = None) -> None:
        self.scripts, self.default, self.batch_sizes = scripts, default or {EOS: 1.0}, []

    def encode(self, src, src_len):
        return src[:, 0]

    def decode_step(self, tokens, memory, cache):
        cache = tokens[:, None] if cache is None else torch.cat([cache, tokens[:, None]], dim=1)
        self.batch_sizes.append(len(tokens))
        probs = torch.zeros(len(tokens), C + 1)
        for i, (script, prefix) in enumerate(zip(memory.tolist(), cache[:, 1:].tolist())):
            for token, p in self.scripts[script].get(tuple(prefix), self.default).items():
                probs[i, token] = p
        return probs.log(), cache

    def reorder(self, memory, cache, index):
        index = index.flatten()  # memory kept per row: simpler, and allowed
        return memory[index], cache[index]


def scripted_src(scripts: list[int], lengths: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = lengths or [5] * len(scripts)
    src = torch.full((len(scripts), max(lengths)), PAD)
    for i, (script, n) in enumerate(zip(scripts, lengths)):
        src[i, :n] = A
        src[i, 0] = script
    return src, torch.tensor(lengths)


def has_repeat(tokens: list[int], n: int) -> bool:
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) < len(grams)


# ---------------------------------------------------------------------------------------------
# `nmt serve` in a subprocess on a free port of 127.0.0.1, spoken to with the standard library

LINES = [
    "How are you?",
    "",
    "The cat is on the table.",
    "I like green apples.",
    "Where is the station?",
    "Thank you very much.",
    "She reads a book.",
    "We are going home now.",
    "  ",
    "Good morning!",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, model: Path, *extra: str) -> None:
        self.port = free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nmt_cli.main", "serve", "-m", str(model), "--port", str(self.port)]
            + ["--threads", "1", *extra],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited: {self.proc.communicate()[1].decode()}")
            try:
                status, body = self.request("GET", "/health")
                if status == 200 and body == {"status": "ok"}:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError("the server did not answer /health within 60 s")
            time.sleep(0.1)

    def request(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None, timeout: float = 30
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    def translate(self, text: Any, **fields: Any) -> tuple[int, Any]:
        return self.request("POST", "/translate", {"text": text, **fields})

    def stop(self, signal_first: bool = True) -> int:
        """Its exit code, after a SIGTERM (signal_first False: a test sent its own; a second one could land while
        Python finalizes, after it has reset the handlers, and kill the server with -15)."""
        if signal_first and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.communicate()


# ---------------------------------------------------------------------------------------------
# Fake translators for documents (nmt.documents' `Translate`): words in, words out, with a word alignment


class FakeTranslate:
    """Uppercases every word; `reverse` also reverses their order; `align` False gives no alignment (an engine
    such as CTranslate2). Records every batch it is given and refuses texts a document must not send."""

    def __init__(self, reverse: bool = False, align: bool = True) -> None:
        self.reverse, self.align = reverse, align
        self.batches: list[list[str]] = []

    def __call__(self, texts: list[str]) -> list[Any]:
        from nmt.line_translator import Translation

        self.batches.append(list(texts))
        out = []
        for text in texts:
            assert "\n" not in text and text.strip(), repr(text)
            words = [word.upper() for word in text.split()]
            n = len(words)
            order = list(reversed(range(n))) if self.reverse else list(range(n))
            target = [words[i] for i in order]
            alignment = " ".join(f"{s}-{t}" for t, s in enumerate(order)) if self.align else None
            out.append(Translation(" ".join(target), 0.0, [(" ".join(target), 0.0, 0.0)], alignment=alignment))
        return out

    @property
    def texts(self) -> list[str]:
        return [text for batch in self.batches for text in batch]
