# The two set-up commands of the README: `make quickstart` and `make test` (+ `make docs`: the documentation site).
# torch is installed first, pinned to the CPU wheel (an unpinned torch pulls a multi-GB CUDA build).
PYTHON ?= python3
PIP = $(PYTHON) -m pip
EXTRAS ?= cpu,train,serve,ray,dev,docs

.PHONY: install quickstart test lint docs
install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[$(EXTRAS)]"

quickstart: install
	bertdeploy quickstart

lint:
	$(PYTHON) -m ruff check bertdeploy tests docs/gen_reference.py
	$(PYTHON) -m ruff format --check bertdeploy tests docs/gen_reference.py

test: install lint
	$(PYTHON) -m pytest -q

docs: install
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs build --strict
