# `make repro` and `make test` set up .venv on first use, then run the pipeline or the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup repro test quality mutants clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

repro: $(STAMP)
	. $(BIN)/activate && dvc repro

test: $(STAMP)
	. $(BIN)/activate && python -m pytest -q

quality: $(STAMP)   # forecast quality on every market of the zoo and real prices (35-50 min)
	. $(BIN)/activate && python bench/quality.py

mutants: $(STAMP)   # planted defects the tests must catch (about 20 min)
	. $(BIN)/activate && python bench/mutants.py

clean-venv:
	rm -rf $(VENV)
