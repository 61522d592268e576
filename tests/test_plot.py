"""`nmt plot`: training curves of runs from their train_log.jsonl, as CSV and PNG. Synthetic logs, no
training: fast."""

from __future__ import annotations

import csv
import io
import json
import struct
import sys

import pytest
from helpers import one_error_line
from nmt_cli.main import app
from typer.testing import CliRunner

from nmt.plot import labels, read_curves

pytestmark = pytest.mark.integration

runner = CliRunner()


def train(step: int, loss: float) -> dict:
    return {
        "kind": "train",
        "step": step,
        "epoch": 1 + step // 200,
        "loss": loss,
        "ppl": 2.0**loss,
        "lr": 0.001,
        "tokens_per_s": 5000.0,
        "train_minutes": step / 100,
    }


def valid(step: int, loss: float, bleu: float | None = None) -> dict:
    record = {
        "kind": "valid",
        "step": step,
        "epoch": 1 + step // 200,
        "valid_loss": loss,
        "valid_nll": loss - 0.5,
        "valid_ppl": 2.0 ** (loss - 0.5),
        "train_minutes": step / 100 + 0.05,
    }
    if bleu is not None:
        record |= {"valid_bleu": bleu, "valid_chrf": bleu + 20}
    return record


def write_log(run, records, tail: str = ""):
    run.mkdir(parents=True)
    text = "".join(json.dumps(r) + "\n" for r in records) + tail
    (run / "train_log.jsonl").write_text(text, encoding="utf-8")
    return run


@pytest.fixture
def two_runs(tmp_path):
    """Two runs whose directories are both called `run` (so their labels must tell them apart)."""
    a = write_log(
        tmp_path / "en_fr" / "run",
        [train(100, 8.0), train(200, 6.0), valid(200, 5.5, bleu=10.0), train(300, 5.0), valid(300, 5.0, bleu=20.0)],
    )
    b = write_log(
        tmp_path / "en_de" / "run",
        [
            train(100, 9.0),
            {"kind": "skip", "step": 150, "epoch": 1, "what": "loss", "value": "nan", "batch_in_epoch": 3},
            train(200, 7.0),
            valid(200, 6.5),  # no BLEU/chrF: --valid-bleu off
        ],
    )
    return a, b


def png_size(path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


def read_csv(path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


# ---------------------------------------------------------------------------------------------


def test_two_runs_give_two_lines_in_the_csv_and_a_png_of_the_stated_size(two_runs, tmp_path):
    a, b = two_runs
    png, table = tmp_path / "out" / "curves.png", tmp_path / "out" / "curves.csv"
    result = runner.invoke(
        app, ["plot", str(a), str(b), "-o", str(png), "--csv", str(table), "--width", "640", "--height", "480"]
    )
    assert result.exit_code == 0, result.output
    assert png_size(png) == (640, 480)
    rows = read_csv(table)
    assert {row["run"] for row in rows} == {"en_fr/run", "en_de/run"}
    fr = [row for row in rows if row["run"] == "en_fr/run"]
    de = [row for row in rows if row["run"] == "en_de/run"]
    assert [(r["kind"], int(r["step"])) for r in fr] == [
        ("train", 100),
        ("train", 200),
        ("valid", 200),
        ("train", 300),
        ("valid", 300),
    ]
    assert [(r["kind"], int(r["step"])) for r in de] == [("train", 100), ("train", 200), ("valid", 200)]  # no skip
    assert [float(r["loss"]) for r in fr if r["kind"] == "train"] == [8.0, 6.0, 5.0]
    assert [float(r["valid_bleu"]) for r in fr if r["kind"] == "valid"] == [10.0, 20.0]
    assert [float(r["valid_chrf"]) for r in fr if r["kind"] == "valid"] == [30.0, 40.0]
    assert float(fr[4]["train_minutes"]) == pytest.approx(3.05) and float(fr[4]["valid_loss"]) == 5.0
    assert de[2]["valid_bleu"] == "" and de[2]["loss"] == "" and float(de[2]["valid_ppl"]) == 2.0**6.0
    assert "en_fr/run: step 300" in result.stderr and "best valid BLEU 20.0 at step 300" in result.stderr


def test_the_default_picture_size_dpi_and_the_minutes_axis(two_runs, tmp_path):
    png = tmp_path / "curves.png"
    assert runner.invoke(app, ["plot", *map(str, two_runs), "-o", str(png)]).exit_code == 0
    assert png_size(png) == (1200, 800)
    assert png.stat().st_size < 150_000
    odd = tmp_path / "odd.png"
    size = ["--width", "1001", "--height", "777", "--dpi", "72"]
    result = runner.invoke(app, ["plot", str(two_runs[0]), "-o", str(odd), "--x", "minutes", *size])
    assert result.exit_code == 0, result.output
    assert png_size(odd) == (1001, 777)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["curves.png", "odd.png"]  # no temp files


def test_a_run_still_training_is_read_up_to_its_torn_last_line(tmp_path):
    run = write_log(
        tmp_path / "run", [train(100, 8.0), valid(100, 7.0, bleu=1.0)], tail='{"kind": "train", "step": 200, "lo'
    )
    table, png = tmp_path / "c.csv", tmp_path / "c.png"
    result = runner.invoke(app, ["plot", str(run), "--csv", str(table), "-o", str(png)])
    assert result.exit_code == 0, result.output
    assert [(r["kind"], r["step"]) for r in read_csv(table)] == [("train", "100"), ("valid", "100")]
    assert png_size(png) == (1200, 800)
    # torn inside a UTF-8 character, or a log with no complete line yet
    (run / "train_log.jsonl").write_bytes(b'{"kind": "train", "step": 200, "x": "\xc3')
    result = runner.invoke(app, ["plot", str(run), "--csv", str(table), "-o", str(png)])
    assert result.exit_code == 0, result.output
    assert read_csv(table) == [] and "no train or valid records yet" in result.stderr


def test_a_damaged_line_before_the_last_is_one_line_naming_the_file_and_line(tmp_path):
    run = write_log(tmp_path / "run", [train(100, 8.0)], tail="garbage\n" + json.dumps(train(200, 7.0)) + "\n")
    one_error_line(
        runner.invoke(app, ["plot", str(run), "--csv", str(tmp_path / "c.csv")]),
        f"{run / 'train_log.jsonl'} line 2",
        "remove the line",
    )
    (run / "train_log.jsonl").write_text(json.dumps({"kind": "valid", "step": "x"}) + "\n", encoding="utf-8")
    one_error_line(runner.invoke(app, ["plot", str(run), "--csv", str(tmp_path / "c.csv")]), "line 1", "step 'x'")
    assert not (tmp_path / "c.csv").exists()


def test_a_directory_without_a_log_is_one_line_with_exit_2(two_runs, tmp_path):
    empty = tmp_path / "notarun"
    empty.mkdir()
    png = tmp_path / "c.png"
    one_error_line(
        runner.invoke(app, ["plot", str(two_runs[0]), str(empty), "-o", str(png)]),
        f"{empty}: no train_log.jsonl; is this a run directory (nmt train --out RUN)?",
    )
    one_error_line(runner.invoke(app, ["plot", str(tmp_path / "missing"), "-o", str(png)]), "missing", "no such")
    one_error_line(runner.invoke(app, ["plot", str(two_runs[0])]), "-o", "--csv")
    one_error_line(runner.invoke(app, ["plot", str(two_runs[0]), "-o", str(tmp_path / "c.gif")]), ".png")
    one_error_line(runner.invoke(app, ["plot", str(two_runs[0]), "-o", str(png), "--width", "0"]), "--width 0")
    assert not png.exists()


def test_without_matplotlib_the_picture_is_an_install_hint_and_csv_still_works(two_runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    png, table = tmp_path / "c.png", tmp_path / "c.csv"
    one_error_line(runner.invoke(app, ["plot", *map(str, two_runs), "-o", str(png)]), "pip install 'nmt[plot]'")
    assert not png.exists()
    result = runner.invoke(app, ["plot", *map(str, two_runs), "--csv", str(table)])
    assert result.exit_code == 0, result.output
    assert {row["run"] for row in read_csv(table)} == {"en_fr/run", "en_de/run"}


def test_csv_to_stdout(two_runs):
    result = runner.invoke(app, ["plot", *map(str, two_runs), "--csv", "-"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 8 and rows[0]["run"] == "en_fr/run"


@pytest.mark.unit
def test_labels_tell_equal_names_apart(tmp_path):
    assert labels([tmp_path / "a", tmp_path / "b"]) == ["a", "b"]
    assert labels([tmp_path / "x" / "run", tmp_path / "y" / "run"]) == ["x/run", "y/run"]
    assert labels([tmp_path / "run", tmp_path / "run"]) == ["run", "run#2"]
    run = write_log(tmp_path / "r", [train(100, 8.0)])
    assert [row.run for row in read_curves([run / "train_log.jsonl"])] == ["r"]  # the log file itself
