# Set-up is idempotent: the virtualenv is rebuilt only when missing or when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch goes in first, so nothing pulls gigabytes of CUDA packages.
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
NMT := $(VENV)/bin/nmt
STAMP := $(VENV)/.nmt-installed
DEMO := work/demo

.PHONY: setup demo test test-slow clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

demo: setup
	$(NMT) prepare --src en --tgt fr --train data/sample/train --valid data/sample/val \
		--test data/sample/test --vocab-size 2000 --out $(DEMO)/data
	$(NMT) --help

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

clean:
	rm -rf work .pytest_cache
