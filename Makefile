# make train | make test | make bench | make tensorboard — each sets up .venv on first use.
# Pass Hydra overrides to a run with ARGS, e.g.  make train ARGS="experiment=cnn_digits"

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
# PyTorch and its torchvision, installed as a pair, when no NVIDIA GPU is visible. On this
# team's machines torch 2.14.1 and torchvision 0.29.1 lie on disk (PyPI's CUDA builds, which
# run on the CPU); PyPI's torchvision does not import beside the 2.13.0 CPU wheel kept there
# ("operator torchvision::nms does not exist"). Elsewhere, for the small CPU builds:
#   make setup TORCH_CPU="torch torchvision --index-url https://download.pytorch.org/whl/cpu"
TORCH_CPU ?= torch==2.14.1 torchvision==0.29.1
# With a GPU, PyPI's default (CUDA) builds.
TORCH_GPU ?= "torch>=2.3" "torchvision>=0.18"

.PHONY: setup train test test-fast bench bench-predict bench-sweep bench-fit bench-threads bench-seeds bench-ddp tensorboard lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo 'GPU found: installing $(TORCH_GPU)'; $(PY) -m pip install -q $(TORCH_GPU); \
	else \
		echo 'No GPU found: installing $(TORCH_CPU)'; $(PY) -m pip install -q $(TORCH_CPU); \
	fi
	$(PY) -m pip install -q -e ".[dev,export,slurm,sweep]"
	touch $@

train: setup
	$(PY) -m dlbasics.train $(ARGS)

# One test process per core (each trains with one torch thread, see tests/conftest.py).
test: setup
	$(PY) -m pytest -n auto --dist worksteal

test-fast: setup
	$(PY) -m pytest -n auto --dist worksteal -m "not slow"

bench: setup
	$(PY) benchmarks/bench.py $(ARGS)

bench-predict: setup
	$(PY) benchmarks/predict_bench.py $(ARGS)

bench-sweep: setup
	$(PY) benchmarks/sweep_bench.py $(ARGS)

bench-fit: setup
	$(PY) benchmarks/fit_bench.py $(ARGS)

bench-threads: setup
	$(PY) benchmarks/threads_bench.py $(ARGS)

bench-seeds: setup
	$(PY) benchmarks/seeds_bench.py $(ARGS)

bench-ddp: setup
	$(PY) benchmarks/ddp_bench.py $(ARGS)

tensorboard: setup
	$(VENV)/bin/tensorboard --logdir outputs

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) dist build .pytest_cache
