# `make test` and `make bench` bootstrap .venv on a fresh machine, then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU development pins; a GPU machine installs with its own torch/jax (see README).
CONSTRAINTS ?= constraints-cpu.txt
# e.g. VENV_FLAGS=--system-site-packages to reuse a machine's own torch/jax
VENV_FLAGS ?=
STAMP := $(VENV)/.installed

.PHONY: install test test-torch-latest bench bench-full bench-gpu report clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[torch,jax,dev]"
	touch $@

# Test files spread over TEST_WORKERS processes (pytest-xdist), whole files per worker so
# module fixtures (the wheel, the Keras workers) are built once.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(PY) -m pytest --benchmark-skip -n $(TEST_WORKERS) --dist loadfile

# The torch-side tests on torch's newest release: a second venv with torch 2.14.1
# (constraints-torch-latest.txt) and without JAX, so every test module that needs JAX skips
# (pytest.importorskip) and all the rest of tests/ runs; --require-tests fails a run in
# which no test ran. Not in CI (see README).
LATEST_VENV ?= .venv-torch-latest
LATEST_CONSTRAINTS ?= constraints-torch-latest.txt
LATEST_PY := $(LATEST_VENV)/bin/python
LATEST_STAMP := $(LATEST_VENV)/.installed

$(LATEST_STAMP): pyproject.toml $(LATEST_CONSTRAINTS)
	test -x $(LATEST_PY) || $(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_PY) -m pip install --quiet -c $(LATEST_CONSTRAINTS) -e ".[torch,dev]"
	touch $@

test-torch-latest: $(LATEST_STAMP)
	$(LATEST_PY) -c "import importlib.util as u, torch; assert u.find_spec('jax') is None, 'JAX is installed in $(LATEST_VENV): the selection would change'; print('torch', torch.__version__)"
	$(LATEST_PY) -m pytest --benchmark-skip -n $(TEST_WORKERS) --dist loadfile --require-tests tests

# The quick sweep (a subset of sizes and peers, minutes) into results/<machine>/quick/;
# bench-full: the whole sweep (every size, implementation and peer, fp32), into
# results/<machine>/, where the committed results come from (see README).
bench: $(STAMP)
	$(PY) -m bench run --quick

bench-full: $(STAMP)
	$(PY) -m bench run

# On a machine with a CUDA GPU: CUDA tests, then the CUDA sweep into results/gpu-<name>/.
# Fails at once without one. Install torch/jax with CUDA first (CONSTRAINTS pins CPU builds).
bench-gpu: $(STAMP)
	$(PY) -m bench gpu

report: $(STAMP)
	$(PY) -m bench report

clean-venv:
	rm -rf $(VENV)
