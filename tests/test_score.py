"""`nmt score` against the `sacrebleu` tool on the same files: same BLEU/chrF/TER to the shown precision
in the table, in --json (-w 16: to full precision), with -b and per sentence; same paired bootstrap p-values;
hypotheses from stdin; and one-line errors."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys

import pytest
import typer
from nmt_cli import score
from nmt_cli.main import Command
from typer.testing import CliRunner

pytestmark = pytest.mark.integration

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

    app.command("score", cls=Command)(score.score)  # nmt's command class: `--metrics bleu chrf`
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


def bare(name: str) -> list[str]:
    """`sacrebleu ref.txt -i NAME -b`: BLEU, chrF2 and TER as the tool shows them."""
    return [f"{x:.1f}" for x in json.loads(sacrebleu("ref.txt", "-i", name, "-b"))]


def table_rows(output: str) -> dict[str, list[str]]:
    """System name → the cells after it, from the rich table; a row's second line (a blank name: the p-values
    of --paired-bs) adds its cells after those of the first."""
    rows: dict[str, list[str]] = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in re.split(r"[│|┃]", line)[1:-1]]
        if cells and cells[0] in SYSTEMS:
            rows[cells[0]] = cells[1:]
        elif cells and not cells[0] and any(cells) and rows:
            rows[list(rows)[-1]] += cells[1:]
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

    as_json = CliRunner().invoke(app, [*ours, "--json", "-w", "16"])
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
    assert [cell.rstrip("*") for cell in rows["sys_b.txt"][3:]] == [f"p = {p:.4f}" for p in p_values]
    # and each score as sacreBLEU's table shows it: the score (the bootstrap mean ± the 95% CI) ...
    with_ci = re.findall(r"\d+\.\d \(\d+\.\d ± \d+\.\d\)", text)
    assert len(with_ci) == 6 and rows["sys_a.txt"][:3] + rows["sys_b.txt"][:3] == with_ci
    # ... with the numbers --json gives (to 2 decimals there)
    for system, row in zip(report["systems"], (rows["sys_a.txt"], rows["sys_b.txt"])):
        for key, cell in zip(("bleu", "chrf", "ter"), row):
            mean, ci = map(float, re.findall(r"\d+\.\d", cell.partition(" ")[2]))
            paired = system["paired"][key]
            assert (mean, ci) == pytest.approx((paired["mean"], paired["ci"]), abs=0.051)


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


@pytest.mark.parametrize("where", ["hyp", "ref", "stdin", "gzip ref"])
def test_what_is_not_text_is_refused_as_nmt_translate_refuses_it(app, files, where):
    import gzip

    binary = gzip.compress((files / "ref.txt").read_bytes()) if where == "gzip ref" else bytes(range(256)) * 40
    (files / "bin.txt").write_bytes(binary)
    args = {
        "hyp": ["-r", "ref.txt", "sys_a.txt", "bin.txt"],
        "ref": ["-r", "bin.txt", "sys_a.txt"],
        "stdin": ["-r", "ref.txt"],
        "gzip ref": ["-r", "bin.txt", "sys_a.txt"],
    }[where]
    result = CliRunner().invoke(app, ["score", *args], input=binary if where == "stdin" else None)
    assert result.exit_code == 2 and result.stdout == ""
    message = result.stderr.strip()
    assert message.startswith(f"error: {'stdin' if where == 'stdin' else 'bin.txt'}: not a text file (")
    assert "\n" not in message and "latin1" not in message


def test_a_stray_bad_byte_is_named_with_its_line(app, files):
    """Text with one byte that is not UTF-8 is still text: its line is named, with the way to re-encode it."""
    lines = (files / "sys_a.txt").read_bytes().split(b"\n")
    lines[4] += b" caf\xe9"
    (files / "sys_a.txt").write_bytes(b"\n".join(lines))
    result = CliRunner().invoke(app, ["score", "-r", "ref.txt", "sys_a.txt"])
    assert result.exit_code == 2
    assert "sys_a.txt:5: invalid UTF-8 (byte 0xe9)" in result.stderr and "iconv -f latin1" in result.stderr


def test_unknown_tokenizer_exits_2(app, files):
    result = CliRunner().invoke(app, ["score", "-r", "ref.txt", "sys_a.txt", "--tokenize", "moses"])
    assert result.exit_code == 2
    assert "'moses'" in result.stderr and "13a" in result.stderr


def test_blank_and_crlf_lines_are_read_as_sacrebleu_reads_them(app, files):
    """A blank line is an empty translation, not the end of the file; '\\r\\n' endings change nothing."""
    lines = (files / "sys_a.txt").read_text(encoding="utf-8").splitlines()
    lines[3] = ""
    (files / "sys_a.txt").write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
    result = CliRunner().invoke(app, ["score", "-r", "ref.txt", "sys_a.txt", "--json", "-w", "16"])
    assert result.exit_code == 0, result.output
    expected = json.loads(sacrebleu("ref.txt", "-i", "sys_a.txt", "-b", "-w", "16"))  # [BLEU, chrF2, TER]
    ours = json.loads(result.stdout)["systems"][0]
    assert [ours[key] for key in ("bleu", "chrf", "ter")] == pytest.approx(expected, abs=1e-12)


def test_json_is_rounded_to_hundredths(app, files):
    result = CliRunner().invoke(app, ["score", "-r", "ref.txt", *SYSTEMS, "--json"])
    assert result.exit_code == 0, result.output
    full = json.loads(sacrebleu("ref.txt", "-i", *SYSTEMS, "-f", "json", "-w", "16"))
    for system, row in zip(json.loads(result.stdout)["systems"], full):
        for key, label in zip(("bleu", "chrf", "ter"), LABELS):
            assert system[key] == round(float(row[label]), 2)
            assert len(repr(system[key]).split(".")[1]) <= 2


@pytest.mark.parametrize("how", ["no HYP", "-"])
def test_hypotheses_from_stdin(app, files, how):
    """`nmt translate ... | nmt score -r REF`, and '-' among the files, as the sacrebleu tool reads stdin."""
    args = ["score", "-r", "ref.txt", "-b"] + ([] if how == "no HYP" else ["sys_a.txt", "-"])
    result = CliRunner().invoke(app, args, input=(files / "sys_b.txt").read_bytes())
    assert result.exit_code == 0, result.output
    expected = [bare(name) for name in (["sys_b.txt"] if how == "no HYP" else SYSTEMS)]
    assert [line.split("\t") for line in result.stdout.splitlines()] == expected
    table = CliRunner().invoke(app, ["score", "-r", "ref.txt"], input=(files / "sys_b.txt").read_bytes())
    assert re.search(r"│ stdin +│ " + re.escape(expected[-1][0]) + " ", table.stdout), table.stdout  # named 'stdin'


def test_empty_stdin_is_nothing_to_score(app, files):
    result = CliRunner().invoke(app, ["score", "-r", "ref.txt"], input=b"")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("error: nothing to score") and result.stderr.count("\n") == 1


def test_score_only_and_metrics_in_order(app, files):
    """-b prints what `sacrebleu -b` prints; `--metrics ter bleu` (space-separated, as sacreBLEU's -m) picks
    and orders the columns, in the table and in JSON too."""
    result = CliRunner().invoke(app, ["score", "-r", "ref.txt", "--metrics", "ter", "bleu", "-b", *SYSTEMS])
    assert result.exit_code == 0, result.output
    expected = {name: bare(name) for name in SYSTEMS}  # BLEU chrF2 TER
    assert result.stdout.splitlines() == [f"{expected[n][2]}\t{expected[n][0]}" for n in SYSTEMS]

    repeated = CliRunner().invoke(
        app, ["score", "-r", "ref.txt", "--metrics", "ter", "--metrics", "bleu", "-b", *SYSTEMS]
    )
    assert repeated.stdout == result.stdout

    table = CliRunner().invoke(app, ["score", "-r", "ref.txt", "--metrics", "chrf", *SYSTEMS])
    assert table.exit_code == 0, table.output
    assert table_rows(table.stdout) == {n: [expected[n][1]] for n in SYSTEMS}
    assert "BLEU|" not in table.stdout and "chrF2|" in table.stdout
    as_json = json.loads(
        CliRunner().invoke(app, ["score", "-r", "ref.txt", "--metrics", "chrf", "--json", *SYSTEMS]).stdout
    )
    assert set(as_json["systems"][0]) == {"name", "chrf", "paired"} and set(as_json["signatures"]) == {"chrf"}


@pytest.mark.parametrize("metric, label", [("bleu", "BLEU"), ("chrf", "chrF2"), ("ter", "TER")])
def test_sentence_level_matches_sacrebleu(app, files, metric, label):
    lines = (files / "sys_a.txt").read_text(encoding="utf-8").splitlines()
    lines[5] = "Cat."  # a short line: sentence BLEU needs effective order not to be 0
    (files / "sys_a.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    theirs = subprocess.run(
        [
            sys.executable,
            "-m",
            "sacrebleu",
            "ref.txt",
            "-i",
            "sys_a.txt",
            "--sentence-level",
            "-m",
            metric,
            "-b",
            "-w",
            "4",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = CliRunner().invoke(app, ["score", "-r", "ref.txt", "sys_a.txt", "--sentence-level", "-b", "-w", "4"])
    assert result.exit_code == 0, result.output
    ours = [line.split("\t") for line in result.stdout.splitlines()]
    assert len(ours) == 40
    assert [row[["bleu", "chrf", "ter"].index(metric)] for row in ours] == theirs.split()

    table = CliRunner().invoke(app, ["score", "-r", "ref.txt", "sys_a.txt", "--sentence-level", "--metrics", metric])
    header, *rows = table.stdout.splitlines()
    assert header == f"line\t{label}" and rows[0].split("\t")[0] == "1" and rows[40].startswith(f"{label}|")


@pytest.mark.parametrize(
    "args, words",
    [
        (["sys_a.txt", "sys_b.txt", "--sentence-level"], "one hypothesis"),
        (["sys_a.txt", "--sentence-level", "--paired-bs"], "--paired-bs"),
        (["sys_a.txt", "-b", "--json"], "choose one"),
        (["sys_a.txt", "-", "-"], "stdin"),
    ],
)
def test_option_conflicts_exit_2_in_one_line(app, files, args, words):
    result = CliRunner().invoke(app, ["score", "-r", "ref.txt", *args], input=b"x\n")
    assert result.exit_code == 2 and result.stdout == ""
    assert words in result.stderr and result.stderr.count("\n") == 1


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
