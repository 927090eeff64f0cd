# The two set-up commands of the README: `make quickstart` and `make test` (+ `make docs`: the documentation site).
# torch is installed first, pinned to the CPU wheel (an unpinned torch pulls a multi-GB CUDA build).
PYTHON ?= python3
PIP = $(PYTHON) -m pip
EXTRAS ?= cpu,train,serve,ray,dev,docs

.PHONY: install quickstart test lint docs bench-runtime bench-serve
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

# The runtime's benchmark in one command (benchmarks/runtime/README.md): every engine over the whole emotion test
# file, the sequence-length rows, the peers as bench backends, then the README headline block. Idle machine only.
BUNDLE ?= models/minilm-emotion-e6
HF ?= runs/minilm-emotion-e6
DATA ?= ../shared/datasets/emotion
RUNTIME_OUT ?= benchmarks/runtime/final
WHOLE_FILE_ENGINES ?= pipeline:fp32,torch:int8,ortmodel:fp32,ortmodel:qint8,openvino:fp32,openvino:qint8,openvino:nncf,bertdeploy:fp32,bertdeploy:qint8,bertdeploy:qint8_qkv,bertdeploy:qint8:static
SEQ_ENGINES ?= bertdeploy:fp32,bertdeploy:fp32:static,bertdeploy:qint8,bertdeploy:qint8:static

$(BUNDLE)-512/bertdeploy.json:
	bertdeploy export $(HF) -o $(BUNDLE)-512 --int8 --max-length 512

bench-runtime: $(BUNDLE)-512/bertdeploy.json
	bertdeploy bench --scenario whole-file $(BUNDLE) $(HF) --data $(DATA)/test.csv -o $(RUNTIME_OUT)/whole-file \
	    --engines $(WHOLE_FILE_ENGINES) --threads 2 --repeats 3 --latency 300
	for L in 128 256 512; do \
	    bertdeploy bench --scenario whole-file $(BUNDLE)-512 --data synthetic:$$L@$(DATA)/test.csv \
	        -o $(RUNTIME_OUT)/seq-$$L --engines $(SEQ_ENGINES) --threads 2 --repeats 3 || exit 1; \
	done
	bertdeploy bench --config benchmarks/runtime/peers.yaml
	$(PYTHON) -m bertdeploy.benchmark.scenarios.headline $(RUNTIME_OUT)/bench README.md

# `bertdeploy serve` under load beside offline predict; rewrites the table of benchmarks/serve/README.md.
bench-serve:
	bertdeploy bench --scenario serve $(BUNDLE) --data $(DATA)/test.csv -o benchmarks/serve --threads 2 --repeats 3
