# Set-up and common tasks. `make run` and `make test` each install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
QUICK ?= 0

.PHONY: install run test test-fast bench studies clean study-efficiency study-correlations study-spectra study-small-cells study-sc

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

## The test suite (about 8 minutes on 2 CPU cores).
test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) outputs multirun checkpoints

## The paper's studies: `make study-efficiency QUICK=1` (synthetic, minutes) or without QUICK (authors' epochs).
SUFFIX := $(if $(filter 1,$(QUICK)),_quick,)
STUDY_ARGS ?=

study-efficiency: $(STAMP)
	$(BIN)/python -m optimate_pl experiment=efficiency$(SUFFIX) $(STUDY_ARGS)
	$(BIN)/python -m optimate_pl.studies efficiency studies/efficiency/runs --out studies/efficiency

study-correlations: $(STAMP)  # uses the runs of study-efficiency
	$(BIN)/python -m optimate_pl.studies correlations studies/efficiency/runs --out studies/correlations

study-spectra: $(STAMP)  # uses the runs of study-efficiency
	$(BIN)/python -m optimate_pl.studies spectra studies/efficiency/runs --out studies/spectra

study-small-cells: $(STAMP)
	$(BIN)/python -m optimate_pl experiment=small_cells$(SUFFIX) $(STUDY_ARGS)
	$(BIN)/python -m optimate_pl.studies small_cells studies/small_cells/runs --out studies/small_cells

study-sc: $(STAMP)
	$(BIN)/python -m optimate_pl experiment=sc_model$(SUFFIX) $(STUDY_ARGS)
	$(BIN)/python -m optimate_pl.studies sc_predictor studies/sc_model/run --out studies/sc_model
	$(BIN)/python -m optimate_pl.studies latent studies/sc_model/run --out studies/sc_model

studies: study-efficiency study-correlations study-spectra study-small-cells study-sc

## Benchmark: ours vs a reference-style loop (CPU here; GPU when present).
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py --out benchmarks/latest.md
