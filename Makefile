# Set-up and common tasks. `make run` and `make test` each install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
QUICK ?= 0

.PHONY: install run test test-fast bench studies clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU build of torch from the local index; the code supports torch>=2.4,<2.14 (pyproject.toml).
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

## The main job on the built-in SYNTHETIC data: TL at 300 materials (pretrains IPA first if needed).
run: $(STAMP)
	$(BIN)/python -m optimate_pl strategy=tl data.subset=300

## The test suite (about 5 minutes on 2 CPU cores).
test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) outputs multirun checkpoints
