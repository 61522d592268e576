"""`nmt score` against the `sacrebleu` tool on the same files: same BLEU/chrF/TER to the shown precision
in the table and to full precision in --json, same paired bootstrap p-values, and one-line errors."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from nmt_cli import score

WORDS = (
    "the a cat dog house river garden Paris London green small old new big quickly slowly walked saw "
    "under over near behind tree car road bridge window we they she"
).split()
SYSTEMS = ["sys_a.txt", "sys_b.txt"]
LABELS = ["BLEU", "chrF2", "TER"]


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    """`nmt` with only the score command, so that these tests do not depend on the other commands."""
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """nmt"""

    app.command("score")(score.score)
    return app


def _noisy(rng: random.Random, line: str, p: float) -> str:
    """Drop, replace or upper-case about a fraction p of the words."""
    words = []
    for word in line.split():
        r = rng.random()
        if r < p / 3:
            continue
        words.append(rng.choice(WORDS) if r < 2 * p / 3 else word.upper() if r < p else word)
    return " ".join(words)


@pytest.fixture
def files(tmp_path, monkeypatch):
    """Forty made-up references, a second reference and two systems of different quality, in the cwd."""
    rng = random.Random(7)
    refs = []
    for _ in range(40):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 12))]
        refs.append(" ".join(words).capitalize() + rng.choice([".", "!", "?", ","]))
    texts = {
        "ref.txt": refs,
        "ref2.txt": [_noisy(rng, line, 0.2) for line in refs],
        "sys_a.txt": [_noisy(rng, line, 0.25) for line in refs],
        "sys_b.txt": [_noisy(rng, line, 0.5) for line in refs],
    }
    for name, lines in texts.items():
        (tmp_path / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # short relative names keep the table rows on one line
    return tmp_path


def sacrebleu(*args: str) -> str:
    """Run the sacrebleu tool of this environment; returns its stdout."""
    cmd = [sys.executable, "-m", "sacrebleu", *args, "-m", "bleu", "chrf", "ter", "-q"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def table_rows(output: str) -> dict[str, list[str]]:
    """System name → the cells after it, from the rich table."""
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in re.split(r"[│|┃]", line) if cell.strip()]
        if cells and cells[0] in SYSTEMS:
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.parametrize(
    "refs, lowercase",
    [(["ref.txt"], False), (["ref.txt", "ref2.txt"], False), (["ref.txt"], True)],
    ids=["one-ref", "two-refs", "lowercase"],
)
def test_scores_match_sacrebleu_tool(app, files, refs, lowercase):
    ours = ["score", *(arg for ref in refs for arg in ("-r", ref)), *SYSTEMS] + (["-lc"] if lowercase else [])
    theirs = [*refs, "-i", *SYSTEMS, "-f", "json"] + (["-lc", "--chrf-lowercase"] if lowercase else [])

    table = CliRunner().invoke(app, ours)
    assert table.exit_code == 0, table.output
    shown = json.loads(sacrebleu(*theirs))  # multi-system mode: scores as strings at the default width, 1
    assert table_rows(table.stdout) == {row["system"]: [row[label] for label in LABELS] for row in shown}

    as_json = CliRunner().invoke(app, [*ours, "--json"])
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.stdout)
    full = json.loads(sacrebleu(*theirs, "-w", "16"))
    assert [s["name"] for s in report["systems"]] == [row["system"] for row in full]
    for system, row in zip(report["systems"], full):
        assert [f"{system[key]:.16f}" for key in ("bleu", "chrf", "ter")] == [row[label] for label in LABELS]
    assert report["references"] == refs
    assert all(f"nrefs:{len(refs)}" in sig for sig in report["signatures"].values())
    assert ("case:lc" in report["signatures"]["bleu"]) == lowercase


def test_table_shows_signatures(app, files):
    result = CliRunner().invoke(app, ["score", "-r", "ref.txt", "sys_a.txt"])
    assert result.exit_code == 0, result.output
    for line in sacrebleu("ref.txt", "-i", "sys_a.txt", "-f", "text").splitlines():
        name_and_signature = line.split(" = ")[0].strip()  # e.g. BLEU|nrefs:1|case:mixed|...|version:2.6.0
        assert name_and_signature in result.stdout


def test_paired_bs_reports_sacrebleu_p_values(app, files):
    args = ["score", "-r", "ref.txt", *SYSTEMS, "--paired-bs", "--paired-bs-n", "200"]
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0, table.output
    rows = table_rows(table.stdout)
    assert rows["sys_a.txt"][3:] == ["baseline"] * 3

    as_json = CliRunner().invoke(app, [*args, "--json"])
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.stdout)
    baseline, other = report["systems"]
    assert report["paired_bs_n"] == 200
    assert all(baseline["paired"][key]["p_value"] is None for key in ("bleu", "chrf", "ter"))
    p_values = [other["paired"][key]["p_value"] for key in ("bleu", "chrf", "ter")]
    assert all(0 < p <= 1 for p in p_values)
    assert all("bs:200" in sig for sig in report["signatures"].values())

    # sacreBLEU's own paired test, same seed and resamples: the same p-values
    text = sacrebleu("ref.txt", "-i", *SYSTEMS, "--paired-bs", "--paired-bs-n", "200", "-f", "text")
    expected = [float(p) for p in re.findall(r"p = ([0-9.]+)", text)]
    assert p_values == pytest.approx(expected, abs=5e-5)  # sacreBLEU shows 4 decimals
    assert [cell.rstrip("*") for cell in rows["sys_b.txt"][3:]] == [f"{p:.4f}" for p in p_values]


def test_paired_bs_needs_two_systems(app, files):
    result = CliRunner().invoke(app, ["score", "-r", "ref.txt", "sys_a.txt", "--paired-bs"])
    assert result.exit_code == 2
    assert "two hypothesis files" in result.stderr


@pytest.mark.parametrize("short, refs", [("sys_b.txt", ["ref.txt"]), ("ref2.txt", ["ref.txt", "ref2.txt"])])
def test_line_count_mismatch_exits_2_naming_the_file(app, files, short, refs):
    lines = (files / short).read_text(encoding="utf-8").splitlines()
    (files / short).write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["score", *(arg for ref in refs for arg in ("-r", ref)), *SYSTEMS])
    assert result.exit_code == 2
    assert result.stdout == ""
    message = result.stderr.strip()
    assert message.startswith("error:") and "\n" not in message
    assert short in message and "39" in message and "40" in message


@pytest.mark.parametrize("missing", ["hyp", "ref"])
def test_missing_file_exits_2(app, files, missing):
    args = ["-r", "nope.txt", "sys_a.txt"] if missing == "ref" else ["-r", "ref.txt", "sys_a.txt", "nope.txt"]
    result = CliRunner().invoke(app, ["score", *args])
    assert result.exit_code == 2
    assert "nope.txt" in result.stderr and "no such file" in result.stderr


def test_unknown_tokenizer_exits_2(app, files):
    result = CliRunner().invoke(app, ["score", "-r", "ref.txt", "sys_a.txt", "--tokenize", "moses"])
    assert result.exit_code == 2
    assert "'moses'" in result.stderr and "13a" in result.stderr


def test_blank_and_crlf_lines_are_read_as_sacrebleu_reads_them(app, files):
    """A blank line is an empty translation, not the end of the file; '\\r\\n' endings change nothing."""
    lines = (files / "sys_a.txt").read_text(encoding="utf-8").splitlines()
    lines[3] = ""
    (files / "sys_a.txt").write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
    result = CliRunner().invoke(app, ["score", "-r", "ref.txt", "sys_a.txt", "--json"])
    assert result.exit_code == 0, result.output
    expected = json.loads(sacrebleu("ref.txt", "-i", "sys_a.txt", "-b", "-w", "16"))  # [BLEU, chrF2, TER]
    ours = json.loads(result.stdout)["systems"][0]
    assert [ours[key] for key in ("bleu", "chrf", "ter")] == pytest.approx(expected, abs=1e-12)


def test_nmt_app_has_the_score_command(files):
    from nmt_cli.main import app as nmt_app

    result = CliRunner().invoke(nmt_app, ["score", "-r", "ref.txt", "sys_a.txt"])
    assert result.exit_code == 0, result.output
    assert "sys_a.txt" in result.stdout


def test_cli_start_up_imports_no_torch():
    """`nmt --help` and `nmt score` must start quickly: the app and its commands import torch lazily."""
    code = "import sys, nmt.metrics, nmt_cli.main\nprint('torch' in sys.modules)\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
