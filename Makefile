# Set-up and common tasks. `make run` and `make test` each install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
QUICK ?= 0
# Where pip finds torch. Empty: pip's own configuration (this machine's local index holds the CPU build); elsewhere
# `make run TORCH_INDEX=https://download.pytorch.org/whl/cpu` keeps PyPI's multi-GB CUDA build out of a CPU install.
TORCH_INDEX ?=
# pytest-xdist workers of `make test` (one torch thread each; the tests on one SLURM cluster share a worker).
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=12

.PHONY: install system-deps run test test-fast docs docs-serve bench syncs import-speed studies clean study-backbones study-efficiency study-small-cells study-correlations \
	study-example-spectra study-sc-predictor study-latent-map

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) || { echo "could not create $(VENV) with $(PYTHON): it needs Python >= 3.10 with venv (Debian/Ubuntu: apt-get install python3-venv)"; exit 1; }
	$(BIN)/pip install -q --upgrade pip
	# torch 2.13 (the code supports torch>=2.4,<2.14, pyproject.toml): the CPU build here, see TORCH_INDEX.
	$(BIN)/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

## Debian packages for the DFT rungs (GPAW 22.8 + PAW setups for /usr/bin/python3) and for the SLURM tests
## (slurm-wlm 22.05 daemons, clients and munge: a one-node cluster, tests/slurm/); run as root.
system-deps:
	@if /usr/bin/python3 -c "import gpaw" 2>/dev/null && [ -d /usr/share/gpaw-setups ]; then \
		echo "gpaw and gpaw-data already installed"; \
	else apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q gpaw gpaw-data; fi
	@if [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] && [ -x /usr/sbin/munged ] && command -v sbatch >/dev/null; \
	then echo "slurm and munge already installed"; \
	else apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		slurmctld slurmd slurm-client munge; fi
	@# chromium: the docs test takes screenshots of the built site in a headless browser
	@if command -v chromium >/dev/null; then echo "chromium already installed"; \
	else apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; fi

## The main job on the built-in GPAW ladder (real physics): TL at 300 materials (pretrains IPA first if needed).
run: $(STAMP)
	$(BIN)/python -m optimate_pl strategy=tl data.subset=300

## The test suite (382 tests on 2 xdist workers: 9 min 15 s on a fresh clone on 2026-12-07, DFT niced beside it; test-fast: those without subprocesses).
test: $(STAMP)
	$(PYTEST)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

## The documentation site into site/ (mkdocs, warnings as errors); `make docs-serve` serves it at :8000.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

docs-serve: $(STAMP)
	$(BIN)/mkdocs serve

clean:
	rm -rf $(VENV) outputs multirun checkpoints

## The paper's studies (experiments/): `make study-efficiency QUICK=1` (synthetic, minutes) or without QUICK
## (the authors' epochs). Real data, as the paper did, starts TL from the authors' published IPA model:
## STUDY_ARGS="data.source=figshare data.root=/data/rpa strategy.checkpoint=/data/eps_300.pt trainer=gpu"
## (the automatic IPA pretraining, strategy.checkpoint=auto with data.ipa_root=..., is our recipe, not theirs).
SUFFIX := $(if $(filter 1,$(QUICK)),_quick,)
STUDY_ARGS ?=
REPORT := $(BIN)/python -m optimate_pl.studies

study-efficiency: $(STAMP)
	$(BIN)/python -m optimate_pl experiment=efficiency$(SUFFIX) $(STUDY_ARGS)
	$(REPORT) efficiency

study-small-cells: $(STAMP)
	$(BIN)/python -m optimate_pl experiment=small_cells$(SUFFIX) $(STUDY_ARGS)
	$(REPORT) small_cells
	$(REPORT) efficiency  # Fig. 3 with the small-cell curve and its bottom panel

study-correlations: $(STAMP)  # from the runs of study-efficiency
	$(REPORT) correlations

study-example-spectra: $(STAMP)  # from the runs of study-efficiency
	$(REPORT) example_spectra

study-sc-predictor: $(STAMP)
	$(BIN)/python -m optimate_pl experiment=sc_predictor$(SUFFIX) $(STUDY_ARGS)
	$(REPORT) sc_predictor

study-latent-map: $(STAMP)  # from the runs of study-sc-predictor
	$(REPORT) latent_map

## Backbones side by side on the GPAW ladder (issue #35): BACKBONE_ARGS="study.subsets=300 \"study.seeds='0,1'\"" for part of it
## (a comma list keeps its inner quotes through the recipe's shell).
BACKBONE_ARGS ?=
study-backbones: $(STAMP)
	$(BIN)/python -m optimate_pl experiment=backbones $(BACKBONE_ARGS)
	$(REPORT) backbones

studies: study-efficiency study-small-cells study-correlations study-example-spectra study-sc-predictor study-latent-map

## Every study on the built-in GPAW dataset (real physics, experiments/gpaw_ladder/README.md), after a repack of
## the dataset. gpaw-studies = gpaw-efficiency (DL vs TL at 100 / 300 / all, the dataset report; 49 min on 2 idle
## cores at v5, more at v6's 537 RPA training materials) + gpaw-sc-predictor (~3 min) + gpaw-uncertainty (~10 min) + gpaw-active-learning (~20 min).
## GPAW_ARGS: extra overrides for every training (e.g. trainer.precision=32-true).
GPAW_DIR := experiments/gpaw_ladder
GPAW_ARGS ?=
# The reports go into a folder per built-in version: the committed tables of earlier versions (results/, v5's;
# results/v6/) are never overwritten by a run on another ladder.
GPAW_OUT ?= $(GPAW_DIR)/results/v6
GPAW_SUBSETS ?= 100,300,null
gpaw-studies: gpaw-efficiency gpaw-sc-predictor gpaw-uncertainty gpaw-active-learning

gpaw-efficiency: $(STAMP)
	$(BIN)/python -m optimate_pl experiment=gpaw_ladder "study.subsets='$(GPAW_SUBSETS)'" $(GPAW_ARGS)
	for s in efficiency example_spectra correlations; do $(REPORT) $$s --runs $(GPAW_DIR)/runs/efficiency --out $(GPAW_OUT) || exit 1; done
	$(REPORT) gpaw_ladder --out $(GPAW_OUT)

## The paper's study on the built-in ladder at its shape (issue #37 item 6): DL vs TL vs MF at 50 / 100 / 300 / all, 3 seeds
## (TL: one IPA pretraining per seed on the ladder's IPA rung), the report, and the ladder's chemistry report.
## SHAPE_SUBSETS / SHAPE_STRATEGIES to run part of it; SHAPE_ROOT another pack (gpaw-snapshot: the session-21 snapshot and its study).
SHAPE_ROOT ?=
SHAPE_RUNS ?= $(GPAW_DIR)/v6_study
SHAPE_LADDER_OUT ?= $(GPAW_OUT)
SHAPE_SUBSETS ?= 50,100,300,null
SHAPE_STRATEGIES ?= tl,dl,mf
gpaw-shape: $(STAMP)
	$(BIN)/python -m optimate_pl experiment=backbones study.models=optimate "study.strategies='$(SHAPE_STRATEGIES)'" \
		"study.subsets='$(SHAPE_SUBSETS)'" "study.seeds='0,1,2'" 'strategy.pretrain_seed=$${seed}' \
		$(if $(SHAPE_ROOT),data.root=$(SHAPE_ROOT)) hydra.sweep.dir=$(SHAPE_RUNS)/runs $(GPAW_ARGS)
	$(REPORT) backbones --runs $(SHAPE_RUNS)/runs --out $(SHAPE_RUNS)/results
	$(REPORT) gpaw_ladder $(if $(SHAPE_ROOT),--runs $(SHAPE_ROOT)) --out $(SHAPE_LADDER_OUT)

gpaw-snapshot:
	$(MAKE) gpaw-shape SHAPE_ROOT=$(GPAW_DIR)/snapshot SHAPE_RUNS=$(GPAW_DIR)/snapshot_study \
		SHAPE_LADDER_OUT=$(GPAW_DIR)/results/snapshot SHAPE_STRATEGIES=tl,dl SHAPE_SUBSETS=$(or $(SNAPSHOT_SUBSETS),50,100,300,null)

gpaw-sc-predictor: $(STAMP)
	$(BIN)/python -m optimate_pl experiment=gpaw_sc_predictor $(GPAW_ARGS)
	$(REPORT) sc_predictor --runs $(GPAW_DIR)/runs/sc_predictor --out $(GPAW_OUT)

gpaw-uncertainty: $(STAMP)
	$(BIN)/python -m optimate_pl experiment=uncertainty data.source=gpaw data.subset=null \
		hydra.run.dir=$(GPAW_DIR)/runs/uncertainty $(GPAW_ARGS)
	mkdir -p $(GPAW_OUT)
	cp $(GPAW_DIR)/runs/uncertainty/uncertainty.md $(GPAW_DIR)/runs/uncertainty/uncertainty.csv $(GPAW_OUT)/
	cp $(GPAW_DIR)/runs/uncertainty/reliability.png $(GPAW_OUT)/uncertainty_reliability.png

gpaw-active-learning: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m optimate_pl experiment=active_learning data.source=gpaw \
		active_learning.initial=20 active_learning.step=40 active_learning.until=100 active_learning.repetitions=4 \
		"active_learning.acquisitions=[random,sc,diversity]" hydra.run.dir=$(GPAW_DIR)/runs/active_learning $(GPAW_ARGS)
	$(REPORT) active_learning --runs $(GPAW_DIR)/runs/active_learning --out $(GPAW_OUT)

## Benchmark: ours vs a reference-style loop (CPU here; GPU when present); rows per backbone (issue #35).
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py --out benchmarks/latest.md

## Host synchronisations per training/validation step, per strategy and backbone (issue #36; counted on a CPU).
syncs: $(STAMP)
	$(BIN)/python benchmarks/host_syncs.py --out benchmarks/host_syncs.md

## optimate-pl-import on 1,000 vasprun.xml files (issue #38's goal: under a minute); pause other work first.
import-speed: $(STAMP)
	$(BIN)/python benchmarks/import_speed.py --n 1000 --out benchmarks/import_speed_cpu_2core.md

## GPU check (issue #23, benchmarks/gpu/README.md). `make gpu-wheels` here (network): the wheels the GPU machine's
## Python 3.12 lacks, into $(GPU_WHEELS) (git-ignored; carry it). `make gpu-check` anywhere: installs them first
## where the Python lacks hydra (no network needed), then runs the checklist (tiny CPU version without a GPU).
GPU_WHEELS ?= .gpu-wheels
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
GPU_CHECK_ARGS ?=
.PHONY: gpu-check gpu-wheels gpaw-studies gpaw-shape gpaw-snapshot gpaw-efficiency gpaw-sc-predictor gpaw-uncertainty gpaw-active-learning

gpu-wheels: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py wheels --dir $(GPU_WHEELS)

gpu-check:
	$(GPU_PYTHON) benchmarks/gpu_check.py install --dir $(GPU_WHEELS)
	$(GPU_PYTHON) benchmarks/gpu_check.py check $(GPU_CHECK_ARGS)
