# `make test` and `make bench` bootstrap .venv on a fresh machine, then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU development pins; a GPU machine installs with its own torch/jax (see README).
CONSTRAINTS ?= constraints-cpu.txt
# e.g. VENV_FLAGS=--system-site-packages to reuse a machine's own torch/jax
VENV_FLAGS ?=
STAMP := $(VENV)/.installed

.PHONY: install test bench bench-full report clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[torch,jax,dev]"
	touch $@

test: $(STAMP)
	$(PY) -m pytest --benchmark-skip

bench: $(STAMP)
	$(PY) -m bench run

bench-full: $(STAMP)
	$(PY) -m bench run --full

report: $(STAMP)
	$(PY) -m bench report

clean-venv:
	rm -rf $(VENV)
