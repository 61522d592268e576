"""The pipeline every recipe shares: data → nmt prepare → nmt train → nmt average → nmt translate →
nmt score → RESULTS.md. A recipe is a directory with a config.toml and a run.sh that calls this.

    python recipes/pipeline.py --recipe recipes/multi30k_en_fr [--data DIR] [--work DIR] [--threads N]

config.toml holds [recipe] (languages, split names, vocabulary, checkpoints to average), and the
[model], [train] and [decode] tables that `nmt train` and `nmt translate` use. Every step runs the
real `nmt` command (shown as it runs), so a recipe is a record of what a user would type.

A corpus without an official split names it in [recipe]: `corpus = "tatoeba"` (files tatoeba.SRC and
tatoeba.TGT, optionally .gz, in the data directory; else `download`, a zip holding one tab-separated
file whose first two columns are `download_langs`) and `carve = { valid = 2000, test = 5000, seed = 1 }`:
validation and test sets carved deterministically, grouped by source sentence (see carve.py).
`samples = "FILE"` (in the recipe directory) lists sentences to translate into RESULTS.md, each checked
against the corpus's source side.

A recipe that fine-tunes names the model it starts from: `init = "DIR"` (or --init DIR): the data is prepared
with that model's tokenizers (`nmt prepare --tokenizer DIR`), the run starts from its weights (`nmt train
--init DIR`), and the model is scored beside the fine-tuned ones ("before"). `general = { recipe = "DIR", data =
"DIR", mix = N }` adds a second corpus, carved as that recipe carves it: its test set is scored too (named
CORPUS_test), and N of its training pairs (evenly spaced) join the training text. Relative paths in [recipe] are
the repository's.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
import zipfile
from datetime import UTC, datetime
from pathlib import Path

MULTI30K_URL = "https://github.com/multi30k/dataset/raw/master/data/task1/raw/{split}.{lang}.gz"
ROOT = Path(__file__).resolve().parent.parent


def nmt_command() -> list[str]:
    """The `nmt` next to this Python (the project's .venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("nmt")
    return [str(beside)] if beside.exists() else ["nmt"]


class Pipeline:
    def __init__(self, recipe: Path, data: Path | None, work: Path, threads: int | None, results: Path | None):
        self.recipe_dir = recipe
        self.config = tomllib.loads((recipe / "config.toml").read_text(encoding="utf-8"))
        r = self.config["recipe"]
        self.name, self.src, self.tgt = r["name"], r["src"], r["tgt"]
        self.corpus = r.get("corpus")  # one corpus to carve valid/test out of, instead of official splits
        if self.corpus:
            self.valid, self.tests, self.optional_tests = "valid", ["test"], []
        else:
            self.valid, self.tests = r.get("valid", "val"), list(r.get("tests", ["test_2016_flickr"]))
            self.optional_tests = list(r.get("optional_tests", []))
        self.carved: dict | None = None  # what carve() did, for RESULTS.md
        self.work, self.threads = work, threads
        self.data = data
        self.init = from_root(r["init"]) if r.get("init") else None  # the model a fine-tuning recipe starts from
        self.general = dict(r.get("general", {}))  # a second corpus (see the module's docstring)
        self.extra_tests: dict[str, Path] = {}  # test splits from the second corpus, by name: their prefix
        self.train_prefix: Path | None = None  # the training text, when the pipeline wrote it (mixed)
        self.mixed: dict | None = None  # what mix_general() did, for RESULTS.md
        self.results_path = results or recipe / "RESULTS.md"
        self.commands: list[str] = []
        self.timings: dict[str, float] = {}

    def run(self, *args: str, stage: str, capture: bool = False) -> str:
        """Run one `nmt` command, its output streaming through (or captured and returned)."""
        command = [*nmt_command(), *args]
        shown = " ".join(shlex.quote(a) for a in ["nmt", *args])
        print(f"\n$ {shown}", flush=True)
        self.commands.append(shown)
        start = time.perf_counter()
        result = subprocess.run(command, stdout=subprocess.PIPE if capture else None, text=True)
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(f"pipeline: `{shown}` failed with exit code {result.returncode}")
        return result.stdout or ""

    # -- stages ---------------------------------------------------------------------------------

    def get_data(self) -> Path:
        """A local data directory (--data or NMT_DATA), or the public Multi30k files downloaded once."""
        if self.data is None and os.environ.get("NMT_DATA"):
            self.data = Path(os.environ["NMT_DATA"])
        if self.data is not None:
            return self.data
        target = self.work / "download"
        target.mkdir(parents=True, exist_ok=True)
        if self.corpus:
            self.download_corpus(target)
            self.data = target
            return target
        for split in ["train", self.valid, *self.tests, *self.optional_tests]:
            for lang in (self.src, self.tgt):
                path = target / f"{split}.{lang}.gz"
                if path.exists():
                    continue
                url = MULTI30K_URL.format(split=split, lang=lang)
                print(f"downloading {url}", flush=True)
                try:
                    with urllib.request.urlopen(url, timeout=60) as response:
                        data = response.read()
                except OSError as e:
                    if split in self.optional_tests:
                        continue
                    sys.exit(f"pipeline: cannot download {url} ({e}); give a local copy with --data or NMT_DATA")
                tmp = path.with_suffix(".part")
                tmp.write_bytes(data)
                tmp.replace(path)
        self.data = target
        return target

    def download_corpus(self, target: Path) -> None:
        """Fetch [recipe] download (a zip with one tab-separated file, two or three columns: the languages in
        download_langs, then an optional attribution) and write CORPUS.SRC.gz and CORPUS.TGT.gz from it."""
        r = self.config["recipe"]
        files = {lang: target / f"{self.corpus}.{lang}.gz" for lang in (self.src, self.tgt)}
        if all(f.exists() for f in files.values()):
            return
        url, langs = r["download"], list(r.get("download_langs", [self.src, self.tgt]))
        print(f"downloading {url}", flush=True)
        request = urllib.request.Request(url, headers={"User-Agent": "Mozilla/5.0 (compatible; nmt-recipes)"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                payload = response.read()
        except OSError as e:
            sys.exit(f"pipeline: cannot download {url} ({e}); give a local copy with --data or NMT_DATA")
        archive = target / Path(url).name
        archive.write_bytes(payload)
        columns = read_zipped_tsv(archive)
        for lang, path in files.items():
            tmp = path.with_suffix(".part")
            with gzip.open(tmp, "wt", encoding="utf-8") as f:
                f.writelines(f"{row[langs.index(lang)]}\n" for row in columns)
            tmp.replace(path)

    def carve(self) -> None:
        """Carve train/valid/test out of the one corpus, grouped by (folded) source sentence, and write them
        through nmt's own text cleaning, so training text and references match (no-break spaces become
        plain spaces). The split depends only on the corpus and the seed."""
        from carve import fold, grouped_split

        from nmt.data import read_parallel
        from nmt.fileio import sha256_file

        settings = dict(self.config["recipe"]["carve"])
        seed = int(settings.pop("seed", 1))
        corpus = read_parallel(self.data / self.corpus, self.src, self.tgt)
        parts = grouped_split([fold(s) for s in corpus.src], {k: int(v) for k, v in settings.items()}, seed)
        out = self.work / "split"
        out.mkdir(parents=True, exist_ok=True)
        produced = {}
        for name, index in parts.items():
            for lang, lines in ((self.src, corpus.src), (self.tgt, corpus.tgt)):
                path = out / f"{name}.{lang}"
                tmp = path.with_suffix(".part")
                tmp.write_text("".join(f"{lines[i]}\n" for i in index), encoding="utf-8")
                tmp.replace(path)
                produced[path.name] = sha256_file(path)
        groups = {name: len({fold(corpus.src[i]) for i in index}) for name, index in parts.items()}
        self.carved = {
            "files": [str(f) for f in corpus.files],
            "inputs": {f.name: sha256_file(f) for f in corpus.files},
            "pairs": len(corpus),
            "sizes": {n: len(i) for n, i in parts.items()},
            "groups": groups,
            "seed": seed,
            "sha256": produced,
        }
        print(
            f"carved {len(corpus):,} pairs into "
            + ", ".join(f"{n} {len(i):,}" for n, i in parts.items())
            + f" (grouped by source sentence, seed {seed}) in {out}",
            flush=True,
        )
        self.data = out

    def add_general(self, data: Path | None) -> None:
        """[recipe] general: the second corpus carved as its own recipe carves it, into work/general; its test set
        becomes the test split CORPUS_test, and `mix` of its training pairs join the training text."""
        other = Pipeline(from_root(self.general["recipe"]), data, self.work / "general", self.threads, None)
        if other.data is None or not other.corpus:
            sys.exit("pipeline: [recipe] general needs a recipe that carves one corpus, and its data (--general-data)")
        other.carve()
        name = f"{other.corpus}_test"
        for lang in (self.src, self.tgt):
            shutil.copyfile(other.data / f"test.{lang}", self.work / "general" / f"{name}.{lang}")
        self.extra_tests[name] = self.work / "general" / name
        if int(self.general.get("mix", 0)):
            self.mix_general(other.data / "train", int(self.general["mix"]))

    def mix_general(self, general: Path, n: int) -> None:
        """Training text = this recipe's training pairs, then `n` of the second corpus's, evenly spaced (the same
        ones on every run), in work/mixed."""
        from nmt.data import read_parallel

        ours, theirs = (
            read_parallel(self.data / "train", self.src, self.tgt),
            read_parallel(general, self.src, self.tgt),
        )
        chosen = [i * len(theirs) // n for i in range(min(n, len(theirs)))]
        out = self.work / "mixed"
        out.mkdir(parents=True, exist_ok=True)
        for lang, mine, other in ((self.src, ours.src, theirs.src), (self.tgt, ours.tgt, theirs.tgt)):
            lines = [*mine, *(other[i] for i in chosen)]
            (out / f"train.{lang}").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        self.train_prefix = out / "train"
        self.mixed = {"pairs": len(ours), "general": len(chosen), "of": len(theirs)}
        print(f"training text: {len(ours):,} pairs + {len(chosen):,} of {general} in {out}", flush=True)

    def split_file(self, split: str, lang: str) -> Path | None:
        folder, stem = (self.extra_tests[split].parent, split) if split in self.extra_tests else (self.data, split)
        for name in (f"{stem}.{lang}", f"{stem}.{lang}.gz"):
            if (folder / name).exists():
                return folder / name
        return None

    def test_splits(self) -> list[str]:
        present = [s for s in self.optional_tests if self.split_file(s, self.src) and self.split_file(s, self.tgt)]
        return self.tests + present + list(self.extra_tests)

    def prepare(self) -> Path:
        out = self.work / "data"
        args = [
            "prepare",
            "--src",
            self.src,
            "--tgt",
            self.tgt,
            "--train",
            str(self.train_prefix or self.data / "train"),
            "--valid",
            str(self.data / self.valid),
            "--out",
            str(out),
        ]
        for split in self.test_splits():
            args += ["--test", str(self.extra_tests.get(split, self.data / split))]
        if self.init:  # the model's own vocabulary
            args += ["--tokenizer", str(self.init)]
        else:
            args += ["--vocab-size", str(self.config["recipe"].get("vocab_size", 8000))]
            if not self.config["recipe"].get("joint", True):
                args.append("--separate")
        self.run(*args, stage="prepare")
        return out

    def train(self, data_dir: Path) -> Path:
        run_dir = self.work / "run"
        threads = ["--threads", str(self.threads)] if self.threads else []
        if (run_dir / "config.json").exists() and (run_dir / "last").exists():  # a run to go on with
            self.run("train", "--resume", str(run_dir), *threads, stage="train")
        else:
            self.run(
                "train",
                str(data_dir),
                "--out",
                str(run_dir),
                "--config",
                str(self.recipe_dir / "config.toml"),
                *(["--init", str(self.init)] if self.init else []),
                "--overwrite",
                *threads,
                stage="train",
            )
        return run_dir

    def average(self, run_dir: Path) -> Path:
        out = self.work / "averaged"
        self.run(
            "average",
            str(run_dir),
            "--last",
            str(self.config["recipe"].get("average_last", 5)),
            "--out",
            str(out),
            "--force",
            stage="average",
        )
        return out

    def translate_options(self) -> list[str]:
        """The recipe's [decode] search settings as `nmt translate` options. A test set (and the samples file)
        holds one sentence a line: translated as such, whatever the sentence splitter would say."""
        decode = self.config.get("decode", {})
        beam, lenpen = decode.get("beam_size", 5), decode.get("length_penalty", 1.0)
        return ["--beam", str(beam), "--lenpen", str(lenpen), "--split", "none"]

    def translate_and_score(self, models: dict[str, Path], data_dir: Path) -> dict:
        options = self.translate_options()
        threads = ["--threads", str(self.threads)] if self.threads else []
        scores: dict = {}
        for split in ["valid", *self.test_splits()]:
            raw_split = self.valid if split == "valid" else split
            ref = self.work / "refs" / f"{split}.{self.tgt}"
            ref.parent.mkdir(parents=True, exist_ok=True)
            # score against the original reference text, not the cleaned copy nmt prepare made
            ref_file = self.split_file(raw_split, self.tgt)
            opener = gzip.open if ref_file.suffix == ".gz" else open
            with opener(ref_file, "rb") as f:
                ref.write_bytes(f.read())
            hyps = []
            for label, model in models.items():
                hyp = self.work / "hyp" / f"{split}.{label}.{self.tgt}"
                hyp.parent.mkdir(parents=True, exist_ok=True)
                self.run(
                    "translate",
                    "-m",
                    str(model),
                    "--input",
                    str(data_dir / f"{split}.{self.src}"),
                    "--output",
                    str(hyp),
                    *options,
                    *threads,
                    stage="translate",
                )
                hyps.append(hyp)
            as_json = ["--json", "-w", "16"]  # full precision: RESULTS.md rounds once
            cased = json.loads(
                self.run("score", "-r", str(ref), *map(str, hyps), *as_json, stage="score", capture=True)
            )
            lower = json.loads(
                self.run("score", "-r", str(ref), *map(str, hyps), *as_json, "-lc", stage="score", capture=True)
            )
            scores[split] = {"cased": cased, "lowercased": lower, "labels": list(models)}
        return scores

    def translate_samples(self, model: Path) -> list[tuple[str, str, bool]] | None:
        """Translate [recipe] samples with `model`; each comes with whether its (folded) source sentence
        occurs anywhere in the corpus's source side (training, validation or test)."""
        name = self.config["recipe"].get("samples")
        if not name:
            return None
        from carve import fold

        from nmt.data import read_lines
        from nmt.textio import clean

        source = self.recipe_dir / name
        sentences = [clean(s) for s in read_lines(source)]
        seen = set()
        for split in ["train", self.valid, *self.test_splits()]:
            seen.update(fold(clean(s)) for s in read_lines(self.split_file(split, self.src)))
        threads = ["--threads", str(self.threads)] if self.threads else []
        output = self.run(
            "translate",
            "-m",
            str(model),
            "--input",
            str(source),
            *self.translate_options(),
            *threads,
            stage="translate",
            capture=True,
        )
        translations = output.splitlines()
        if len(translations) != len(sentences):
            sys.exit(f"pipeline: {source}: {len(sentences)} sentences but {len(translations)} translations")
        return [(s, t, fold(s) in seen) for s, t in zip(sentences, translations)]

    # -- report ---------------------------------------------------------------------------------

    def write_results(
        self, run_dir: Path, scores: dict, wall: float, samples: list[tuple[str, str, bool]] | None = None
    ) -> None:
        import sacrebleu
        import sentencepiece
        import torch

        import nmt

        log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines() if line.strip()]
        valid = [r for r in log if r["kind"] == "valid"]
        trained = max((r.get("train_minutes", 0.0) for r in log), default=0.0)
        steps = max((r["step"] for r in log), default=0)
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        shown_dir = self.recipe_dir.relative_to(ROOT) if self.recipe_dir.is_relative_to(ROOT) else self.recipe_dir
        lines = [
            f"# {self.name}: results",
            "",
            f"Written by `recipes/pipeline.py` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
            f"reproduce with `{shown_dir}/run.sh` "
            "(see the README). Detokenized, cased sacreBLEU (default 13a tokenizer) unless marked lowercased (`-lc`, "
            "what most Multi30k papers report, on tokenized text, so not directly comparable).",
            "",
            "| split | model | BLEU | chrF2 | TER | BLEU -lc |",
            "|---|---|---:|---:|---:|---:|",
        ]
        signatures: dict[str, str] = {}
        for split, result in scores.items():
            for label, system, low in zip(
                result["labels"], result["cased"]["systems"], result["lowercased"]["systems"]
            ):
                lines.append(
                    f"| {split} | {label} | {system['bleu']:.1f} | {system['chrf']:.1f} | {system['ter']:.1f} | "
                    f"{low['bleu']:.1f} |"
                )
            signatures.update(result["cased"]["signatures"])
            signatures["bleu -lc"] = result["lowercased"]["signatures"]["bleu"]
        lines += ["", "sacreBLEU signatures:", ""]
        lines += [f"- {name}: `{sig}`" for name, sig in signatures.items()]
        lines += self.starting_point(run_dir)
        if samples:
            unseen = sum(not s for _, _, s in samples)
            lines += [
                "",
                "## Sentences not in the corpus",
                "",
                f"`{self.config['recipe']['samples']}`, translated by the averaged model (beam "
                f"{self.config.get('decode', {}).get('beam_size', 5)}). Checked by the pipeline: {unseen} of "
                f"{len(samples)} do not occur on the source side of the corpus (training, validation or test), "
                "compared after folding case, punctuation and spacing.",
                "",
                f"| {self.src} | {self.tgt} (nmt) | in the corpus? |",
                "|---|---|---|",
            ]
            lines += [f"| {s} | {t} | {'**yes**' if seen else 'no'} |" for s, t, seen in samples]
        if self.carved:
            c = self.carved
            sizes = ", ".join(
                f"{name} {n:,} pairs ({c['groups'][name]:,} distinct source sentences)"
                for name, n in c["sizes"].items()
            )
            lines += [
                "",
                "## Data split",
                "",
                f"The corpus has no official split; the pipeline carved one out of its {c['pairs']:,} pairs: {sizes}. "
                "Rule (`grouped_split` in recipes/carve.py): pairs are grouped by source sentence after folding case, "
                "punctuation and spacing (`fold`), so all translations of one sentence fall on the same side; groups "
                f"are taken in the order of sha256(seed, key) with seed {c['seed']}, each going whole into the first "
                "held-out set with room left, the rest into training. Same corpus and seed, same split. The split "
                "files "
                "are written through nmt's text cleaning (NFC; every whitespace run, including the no-break spaces "
                "U+00A0 and U+202F before French `! ? :`, becomes one plain space), so training text, references and "
                "the model's output all use plain spaces.",
                "",
                "| file | sha256 |",
                "|---|---|",
            ]
            lines += [f"| {name} (input) | `{digest}` |" for name, digest in c["inputs"].items()]
            lines += [f"| {name} | `{digest}` |" for name, digest in c["sha256"].items()]
        lines += [
            "",
            "## Training",
            "",
            f"- {steps} updates in {trained:.1f} training minutes (validation included: "
            f"{self.timings.get('train', 0) / 60:.1f} minutes for the whole `nmt train` call); "
            f"whole pipeline {wall / 60:.1f} minutes of wall-clock.",
            "- Validation BLEU and chrF (greedy, on the validation set) against training minutes, from "
            "`train_log.jsonl`:",
            "",
            "| step | training minutes | valid loss | valid BLEU | valid chrF2 |",
            "|---:|---:|---:|---:|---:|",
        ]
        for r in valid:
            lines.append(
                f"| {r['step']} | {r['train_minutes']:.1f} | {r['valid_loss']:.3f} | "
                f"{r.get('valid_bleu', float('nan')):.1f} | {r.get('valid_chrf', float('nan')):.1f} |"
            )
        stage_times = ", ".join(f"{k} {v / 60:.1f} min" for k, v in self.timings.items())
        lines += [
            "",
            "## Set-up",
            "",
            f"- nmt {nmt.__version__} (commit {commit or 'unknown'}), torch {torch.__version__}, "
            f"sentencepiece {sentencepiece.__version__}, sacrebleu {sacrebleu.__version__}, Python "
            f"{platform.python_version()}",
            f"- machine: {_cpu_name()}, {len(os.sched_getaffinity(0))} cores available, {platform.system()} "
            f"{platform.machine()}",
            f"- stage wall times: {stage_times}",
            "",
            "Configuration (`config.toml`):",
            "",
            "```toml",
            (self.recipe_dir / "config.toml").read_text(encoding="utf-8").strip(),
            "```",
            "",
            "Commands run:",
            "",
            "```sh",
            *self.commands,
            "```",
            "",
        ]
        self.results_path.write_text("\n".join(lines), encoding="utf-8")
        print(f"\nwrote {self.results_path}")

    def starting_point(self, run_dir: Path) -> list[str]:
        """RESULTS.md's words on the model a fine-tuning recipe started from (as the run records it), and on the
        second corpus."""
        if not self.init:
            return []
        init = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["init"]
        lines = [
            "",
            "## Starting point",
            "",
            f"- fine-tuned from `{init['path']}` (model.safetensors sha256 `{init['model_sha256']}`), "
            'with its own tokenizer (`nmt prepare --tokenizer`) and [model] settings; "before" is that model.',
        ]
        for name, prefix in self.extra_tests.items():
            lines.append(f"- `{name}`: the test set carved by `{self.general['recipe']}` from its corpus ({prefix}).")
        if self.mixed:
            m = self.mixed
            lines.append(
                f"- training text: {m['pairs']:,} pairs of this recipe's corpus + {m['general']:,} of the "
                f"{m['of']:,} training pairs of the second corpus (evenly spaced)."
            )
        return lines


def read_zipped_tsv(archive: Path) -> list[list[str]]:
    """The rows of the one tab-separated .txt file in a zip (files named _*.txt, such as _about.txt, are
    not data), each row cut to its first two columns; a third (attribution) column is allowed."""
    try:
        with zipfile.ZipFile(archive) as z:
            members = [m for m in z.namelist() if m.endswith(".txt") and not Path(m).name.startswith("_")]
            if len(members) != 1:
                sys.exit(
                    f"pipeline: {archive}: expected one tab-separated .txt file inside, found {members or 'none'}; "
                    "give a local copy of the corpus with --data"
                )
            raw = z.read(members[0])
    except zipfile.BadZipFile as e:
        sys.exit(f"pipeline: {archive}: not a zip file ({e}); delete it and run again, or give --data")
    rows = []
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for number, line in enumerate(lines, start=1):
        where = f"{archive}:{members[0]}:{number}"
        try:
            fields = line.removesuffix(b"\r").decode("utf-8").split("\t")
        except UnicodeDecodeError:
            sys.exit(f"pipeline: {where}: invalid UTF-8; delete the download and run again, or give --data")
        if len(fields) not in (2, 3):
            sys.exit(
                f"pipeline: {where}: expected 2 or 3 tab-separated columns, found {len(fields)}; "
                "give a corrected local copy with --data"
            )
        rows.append(fields[:2])
    return rows


def from_root(path: str | Path) -> Path:
    """A path of [recipe] or of a flag: as given when absolute, else the repository's."""
    return Path(path) if Path(path).is_absolute() else (ROOT / path).resolve()


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", type=Path, required=True, help="recipe directory with config.toml")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="local data directory (default: $NMT_DATA, else download the public files)",
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="where data, runs and outputs go (default: work/RECIPE)"
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument(
        "--results", type=Path, default=None, help="where to write RESULTS.md (default: the recipe directory)"
    )
    parser.add_argument(
        "--init", type=Path, default=None, help="the model to fine-tune (default: [recipe] init, if the recipe has one)"
    )
    parser.add_argument(
        "--general-data",
        type=Path,
        default=None,
        help="data directory of [recipe] general's corpus (default: [recipe] general's data)",
    )
    args = parser.parse_args()
    recipe = args.recipe.resolve()
    work = (args.work or ROOT / "work" / recipe.name).resolve()
    work.mkdir(parents=True, exist_ok=True)
    pipeline = Pipeline(recipe, args.data, work, args.threads, args.results)
    if args.init:
        pipeline.init = args.init.resolve()
    if pipeline.init and not pipeline.init.exists():
        sys.exit(f"pipeline: {pipeline.init}: no such model; give the model to fine-tune with --init DIR")
    start = time.perf_counter()
    pipeline.get_data()
    if pipeline.corpus:
        pipeline.carve()
    if pipeline.general:
        general = args.general_data or (from_root(pipeline.general["data"]) if "data" in pipeline.general else None)
        pipeline.add_general(general)
    data_dir = pipeline.prepare()
    run_dir = pipeline.train(data_dir)
    averaged = pipeline.average(run_dir)
    before = {"before": pipeline.init} if pipeline.init else {}  # the model fine-tuned, scored beside the result
    scores = pipeline.translate_and_score({**before, "best": run_dir / "best", "averaged": averaged}, data_dir)
    samples = pipeline.translate_samples(averaged)
    pipeline.write_results(run_dir, scores, time.perf_counter() - start, samples)


if __name__ == "__main__":
    main()
