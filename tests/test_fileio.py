"""nmt.fileio: what a reader finds after each write (the whole new file or directory, nothing half-written,
no temporaries), the size-capped JSON reader's answers for each kind of bad file, and sha256 in blocks."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from nmt.fileio import JsonFileError, commit_dir, point, read_json, sha256_bytes, sha256_file, write_json

pytestmark = pytest.mark.unit


def test_write_json_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "config.json"
    write_json(path, {"b": 1, "a": [1, 2]})
    write_json(path, {"c": "é"})
    assert path.read_text(encoding="utf-8") == json.dumps({"c": "é"}, indent=2, sort_keys=True) + "\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "config.json"
    write_json(path, {"old": True})
    with pytest.raises(TypeError):
        write_json(path, {"new": object()})  # not JSON: fails after the temporary file was opened
    assert read_json(path) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_commit_dir_replaces_a_directory_whole(tmp_path):
    final = tmp_path / "out"
    for version in ("old", "new"):
        tmp = tmp_path / f".out.tmp-{version}"
        tmp.mkdir()
        (tmp / "a.txt").write_text(version)
        if version == "old":
            (tmp / "only_old.txt").write_text("x")
        commit_dir(tmp, final)
    assert sorted(p.name for p in final.iterdir()) == ["a.txt"]  # nothing of the old one is left in it
    assert (final / "a.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # the old one and the temporaries are gone


def test_point_moves_a_relative_link(tmp_path):
    (tmp_path / "checkpoints" / "step_1").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step_2").mkdir()
    point(tmp_path / "last", tmp_path / "checkpoints" / "step_1")
    point(tmp_path / "last", tmp_path / "checkpoints" / "step_2")
    assert os.readlink(tmp_path / "last") == os.path.join("checkpoints", "step_2")  # relative: the run can move
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "last"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [("{", "syntax"), (b"\xff\xfe{}", "syntax"), ("[1, 2]", "type"), ("[" * 100_000 + "]" * 100_000, "depth")],
)
def test_read_json_names_what_is_wrong(tmp_path, content, problem):
    path = tmp_path / "f.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(JsonFileError) as caught:
        read_json(path)
    assert caught.value.problem == problem and caught.value.path == path


def test_read_json_reads_nothing_past_its_bound(tmp_path):
    path = tmp_path / "f.json"
    path.write_text(json.dumps({"x": "y" * 100}))
    assert read_json(path) == {"x": "y" * 100}
    with pytest.raises(JsonFileError) as caught:
        read_json(path, max_bytes=50)
    assert (caught.value.problem, caught.value.detail) == ("size", str(path.stat().st_size))
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "missing.json")


def test_sha256_file_reads_in_blocks_and_agrees_with_hashlib(tmp_path):
    data = os.urandom((1 << 20) + 123)  # more than one block
    (tmp_path / "blob").write_bytes(data)
    assert sha256_file(tmp_path / "blob") == sha256_bytes(data) == hashlib.sha256(data).hexdigest()
