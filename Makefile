# Set-up is idempotent: the virtualenv is rebuilt only when missing or when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch goes in first, so nothing pulls gigabytes of CUDA packages.
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
NMT := $(VENV)/bin/nmt
STAMP := $(VENV)/.nmt-installed
DEMO := work/demo

.PHONY: setup demo test lint test-slow clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

# The main job on the bundled sample: prepare, train a small model for a fixed 1,200 updates (fixed seed),
# translate a handful of everyday sentences, score the held-out test set, draw its attention and learning curves.
# Two threads whatever the machine: a float sum split over another number of threads rounds differently, and the
# demo's output is meant to be the README's, byte for byte.
demo: setup
	$(NMT) prepare --src en --tgt fr --train data/sample/train --valid data/sample/val \
		--test data/sample/test --vocab-size 2000 --out $(DEMO)/data --force
	$(NMT) train $(DEMO)/data --out $(DEMO)/run --config recipes/sample_en_fr/config.toml --overwrite --threads 2
	$(NMT) translate -m $(DEMO)/run --input data/demo.en --output $(DEMO)/demo.fr --split none
	@echo; paste -d '\t' data/demo.en $(DEMO)/demo.fr | awk -F '\t' '{ printf "  %-42s → %s\n", $$1, $$2 }'; echo
	$(NMT) translate -m $(DEMO)/run --input data/sample/test.en --output $(DEMO)/test.fr --split none
	$(NMT) score -r data/sample/test.fr $(DEMO)/test.fr
	$(NMT) attention -m $(DEMO)/run "How was your day?" -o $(DEMO)/attention.png
	$(NMT) plot $(DEMO)/run -o $(DEMO)/curves.png
	@echo; echo "pictures: $(DEMO)/attention.png (what the model looked at), $(DEMO)/curves.png (its training)"

# The fast suite, in three layers (unit, integration, system; tests/conftest.py defines them): it ends with
# how many passed in each, then pytest's own closing line. `pytest -m unit` runs one layer.
test: setup lint
	$(PY) -m pytest -q

# The gates CI enforces with the tests: ruff (lint and format, settings in pyproject.toml), mypy on nmt/, and
# import-linter's contracts (the layers and no import cycles, in pyproject.toml).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The command reference, docs/commands.md, from the commands' own --help (tests/test_reference.py fails when stale).
.PHONY: docs
docs: setup
	$(PY) -m nmt_cli.reference

# docs/examples: the test documents (tests/fixtures/documents) and this README translated by MODEL, in their own
# formats; docs/examples/README.md names the model the committed ones came from.
.PHONY: examples
MODEL ?= work/tatoeba_en_fr/averaged
EXAMPLES := letter.md page.html lighthouse.srt harbour.vtt
examples: setup
	for f in $(EXAMPLES); do \
		$(NMT) translate -m $(MODEL) tests/fixtures/documents/$$f -o docs/examples/$${f%.*}.fr.$${f##*.} || exit 1; \
	done
	$(NMT) translate -m $(MODEL) README.md -o docs/examples/README.fr.md

test-slow: setup
	$(PY) -m pytest -q -m slow

clean:
	rm -rf work .pytest_cache
