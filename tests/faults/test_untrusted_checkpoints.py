"""Checkpoints from untrusted sources: a safetensors file with a wrong shape, a wrong dtype, missing or extra
tensors, a huge declared header, or a config.json with wrong types or absurd sizes — each is a clear
CheckpointError (exit code 2 and one line from `nmt translate`), never a crash, never a huge allocation,
never code run. No code path calls torch.load without weights_only=True or touches pickle."""

from __future__ import annotations

import ast
import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from nmt_cli.main import app
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from nmt.errors import CheckpointError
from nmt.modeldir import load_model_dir

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def model_dir(tiny_model_dir, tmp_path) -> Path:
    """A private copy of the tiny model to damage."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


def rewrite_weights(model_dir: Path, change) -> None:
    """Load the tensors, let `change` edit the dict, save them back (keeping the shared-name metadata)."""
    from safetensors import safe_open

    path = model_dir / "model.safetensors"
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path), metadata=metadata)


def rewrite_config(model_dir: Path, change) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    change(config)
    (model_dir / "config.json").write_text(json.dumps(config))


def set_model(key, value):
    return lambda config: config["model"].__setitem__(key, value)


def assert_refused(model_dir: Path, pattern: str, figures) -> None:
    with pytest.raises(CheckpointError, match=pattern):
        load_model_dir(model_dir)
    result = CliRunner().invoke(app, ["translate", "-m", str(model_dir), "--threads", "1"], input=b"Hello.\n")
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # not a traceback
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""
    figures["hostile checkpoints refused with a clear error"] += 1


WEIGHTS = {
    "wrong shape": (
        lambda t: t.__setitem__("encoder.0.ffn.fc1.weight", torch.zeros(7, 3)),
        r"encoder\.0\.ffn\.fc1\.weight has shape \[7, 3\], the model .* needs \[64, 32\]",
    ),
    "wrong dtype float64": (
        lambda t: t.__setitem__("encoder_norm.weight", t["encoder_norm.weight"].double()),
        r"encoder_norm\.weight is F64, the model needs F32",
    ),
    "wrong dtype int64": (
        lambda t: t.__setitem__("encoder_norm.weight", t["encoder_norm.weight"].long()),
        r"encoder_norm\.weight is I64, the model needs F32",
    ),
    "wrong dtype bfloat16": (
        lambda t: t.__setitem__("encoder_norm.weight", t["encoder_norm.weight"].bfloat16()),
        r"encoder_norm\.weight is BF16",
    ),
    "missing tensor": (lambda t: t.pop("decoder_norm.bias"), r"tensor 'decoder_norm\.bias' is missing"),
    "extra tensor": (lambda t: t.__setitem__("payload", torch.zeros(3)), r"unexpected tensor 'payload'"),
    "non-finite weight": (
        lambda t: t["encoder_norm.weight"].__setitem__(0, float("nan")),
        r"non-finite values in encoder_norm\.weight",
    ),
}


@pytest.mark.parametrize("case", WEIGHTS, ids=list(WEIGHTS))
def test_weights_that_do_not_fit_are_refused(case, model_dir, figures):
    change, pattern = WEIGHTS[case]
    names = load_file(str(model_dir / "model.safetensors")).keys()
    assert "encoder.0.ffn.fc1.weight" in names and "decoder_norm.bias" in names  # the names the cases edit
    rewrite_weights(model_dir, change)
    assert_refused(model_dir, pattern, figures)


def header_of_size(declared: int, body: bytes = b"{}") -> bytes:
    return struct.pack("<Q", declared) + body


HEADERS = {
    "huge declared header": header_of_size(1 << 62),
    "header longer than the file": header_of_size(50_000_000, b'{"a": {"dtype": "F32", "shape": [1], '),
    "header just over the limit": header_of_size(100_000_001),
    "header not json": header_of_size(9, b"not json!"),
    "tensor past the end": header_of_size(
        len(b'{"x":{"dtype":"F32","shape":[1000000],"data_offsets":[0,4000000]}}'),
        b'{"x":{"dtype":"F32","shape":[1000000],"data_offsets":[0,4000000]}}',
    ),
    "empty file": b"",
    "seven bytes": b"\x00" * 7,
}


@pytest.mark.parametrize("case", HEADERS, ids=list(HEADERS))
def test_damaged_safetensors_headers_are_refused(case, model_dir, figures):
    (model_dir / "model.safetensors").write_bytes(HEADERS[case])
    assert_refused(model_dir, r"model\.safetensors: unreadable safetensors file", figures)


CONFIGS = {
    "model is a list": (lambda c: c.__setitem__("model", [1, 2]), "no model config"),
    "model is null": (lambda c: c.__setitem__("model", None), "no model config"),
    "d_model a string": (set_model("d_model", "wide"), "d_model must be an integer"),
    "d_model a float": (set_model("d_model", 32.5), "d_model must be an integer"),
    "d_model a bool": (set_model("d_model", True), "d_model must be an integer"),
    "n_heads zero": (set_model("n_heads", 0), "invalid model config"),
    "d_model negative": (set_model("d_model", -32), "invalid model config"),
    "dropout a string": (set_model("dropout", "high"), "dropout must be a number"),
    "dropout above one": (set_model("dropout", 5.0), "invalid model config"),
    "pre_norm a string": (set_model("pre_norm", "yes"), "pre_norm must be true or false"),
    "activation a number": (set_model("activation", 3), "activation must be 'relu' or 'gelu' or 'swish', not 3"),
    "unknown option": (set_model("exec", "import os"), "unknown option"),
    "pad_id past the vocabulary": (set_model("pad_id", 10**6), "invalid model config"),
    # sizes that would allocate terabytes if believed: refused from the header, before any allocation
    "huge vocabulary": (lambda c: c["model"].update(src_vocab_size=10**12, tgt_vocab_size=10**12), "needs"),
    "huge d_model": (set_model("d_model", 2**30), "needs|beyond"),
    "huge max_positions": (set_model("max_positions", 10**12), "beyond what nmt builds"),
    "a million layers": (set_model("enc_layers", 10**6), "holds only"),
    "spm is a string": (lambda c: c.__setitem__("spm", "spm.model"), "no SentencePiece model names"),
    "spm escapes the directory": (
        lambda c: c["spm"].__setitem__("src", "../../etc/passwd"),
        "invalid SentencePiece file",
    ),
    "spm_sha256 is a list": (lambda c: c.__setitem__("spm_sha256", []), "no SentencePiece model names"),
}


@pytest.mark.parametrize("case", CONFIGS, ids=list(CONFIGS))
def test_config_json_with_wrong_types_or_sizes_is_refused(case, model_dir, figures):
    change, pattern = CONFIGS[case]
    rewrite_config(model_dir, change)
    assert_refused(model_dir, pattern, figures)


NOT_CONFIGS = {
    "nested 100,000 deep": b"[" * 100_000,
    "a list": b"[]",
    "not json": b"not json",
    "NaN for the model": b'{"model": NaN}',
    "a lone surrogate": "\udcff".encode("utf-8", "surrogatepass"),
    "latin-1": '{"model": "d\xe9j\xe0"}'.encode("latin-1"),
}


@pytest.mark.parametrize("case", NOT_CONFIGS, ids=list(NOT_CONFIGS))
def test_config_json_that_is_not_a_config_is_refused(case, model_dir, figures):
    (model_dir / "config.json").write_bytes(NOT_CONFIGS[case])
    assert_refused(model_dir, r"config\.json", figures)


# ---------------------------------------------------------------------------------------------
# Never code from a file


def test_a_pickle_in_place_of_the_weights_is_refused_and_never_run(model_dir, tmp_path, figures):
    """A torch.save file whose unpickling would create a marker file: loading it is an error, and no marker."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"encoder_norm.weight": Payload()}, model_dir / "model.safetensors")
    assert_refused(model_dir, "unreadable safetensors file", figures)
    assert not marker.exists()


def test_loading_and_translating_never_unpickle(model_dir, monkeypatch):
    import pickle

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle or torch.load was called")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    result = CliRunner().invoke(
        app, ["translate", "-m", str(model_dir), "--threads", "1", "--beam", "2"], input=b"Hello.\n"
    )
    assert result.exit_code == 0, result.output
    load_model_dir(model_dir)


UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def unsafe_calls(source: str) -> list[str]:
    """Imports of pickle-like modules, torch.load without weights_only=True, torch.save, np.load(allow_pickle=True)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
            found.append(f"from {node.module} import ...")
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module == "torch"
            and any(a.name in ("load", "save") for a in node.names)
        ):
            found.append("from torch import load/save")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name, keywords = node.func.attr, {k.arg: k.value for k in node.keywords}
            owner = ast.unparse(node.func.value)
            weights_only = keywords.get("weights_only")
            if (
                owner == "torch"
                and name == "load"
                and not (isinstance(weights_only, ast.Constant) and weights_only.value is True)
            ):
                found.append(f"line {node.lineno}: torch.load without weights_only=True")
            if owner == "torch" and name == "save":
                found.append(f"line {node.lineno}: torch.save (a pickle)")
            allow = keywords.get("allow_pickle")
            if name == "load" and owner in ("np", "numpy") and isinstance(allow, ast.Constant) and allow.value:
                found.append(f"line {node.lineno}: np.load(allow_pickle=True)")
            if name in ("loads", "load") and owner in UNSAFE_MODULES:
                found.append(f"line {node.lineno}: {owner}.{name}")
    return found


def test_the_detector_sees_what_it_should():
    bad = "import pickle\nimport torch\ntorch.load(f)\ntorch.load(f, weights_only=False)\ntorch.save(m, f)\n"
    assert len(unsafe_calls(bad)) == 4
    assert unsafe_calls("import torch\ntorch.load(f, weights_only=True)\n") == []


def test_no_code_path_unpickles():
    files = [p for folder in ("nmt", "cli", "recipes", "benchmarks") for p in (ROOT / folder).rglob("*.py")]
    assert len(files) > 20
    found = {str(p.relative_to(ROOT)): unsafe_calls(p.read_text(encoding="utf-8")) for p in files}
    assert {k: v for k, v in found.items() if v} == {}
