# The two set-up commands of the README: `make quickstart` and `make test` (+ `make docs`: the documentation site).
# torch is installed first, pinned to the CPU wheel (an unpinned torch pulls a multi-GB CUDA build).
PYTHON ?= python3
PIP = $(PYTHON) -m pip
EXTRAS ?= cpu,train,serve,ray,dev,docs

.PHONY: install quickstart test lint docs bench-runtime bench-seq bench-serve drcd-reader
install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[$(EXTRAS)]"

quickstart: install
	bertdeploy quickstart

lint:
	$(PYTHON) -m ruff check bertdeploy tests benchmarks docs/gen_reference.py
	$(PYTHON) -m ruff format --check bertdeploy tests benchmarks docs/gen_reference.py

test: install lint
	$(PYTHON) -m pytest -q

docs: install
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs build --strict

# The runtime's benchmark in one command (benchmarks/runtime/README.md): a MiniLM-L6 fine-tuned on emotion and a
# bert-tiny trained on it from scratch (trained here when runs/ lacks them), each exported with --all, every engine
# over the whole emotion test file in its own process, then the README headline block. Idle machine only; the
# OpenVINO peers and the fp32_ov_bf16 variant need the [openvino] and [openvino-ep] extras (installed first).
DATA ?= ../shared/datasets/emotion
RUNTIME_OUT ?= benchmarks/runtime/idle-2026-12-07-intel
MINILM ?= minilm-emotion-e2
TINY ?= bert-tiny-emotion
ENGINES ?= pipeline:fp32,torch:int8,torch:bf16,ortmodel:fp32,ortmodel:qint8,openvino:fp32,openvino:bf16,openvino:fp32_ov_bf16,openvino:nncf,bertdeploy:fp32,bertdeploy:qint8,bertdeploy:qint8_checked,bertdeploy:fp32_ov_bf16,bertdeploy:auto,bertdeploy:auto:bucketed:streams=2
WHOLE_FILE = bertdeploy bench --scenario whole-file --data $(DATA)/test.csv --engines $(ENGINES) --threads 2 --repeats 3 --latency 300
SEQ_ENGINES ?= bertdeploy:fp32,bertdeploy:fp32:static,bertdeploy:qint8,bertdeploy:qint8:static

runs/$(MINILM)/config.json:
	bertdeploy train --recipe recipes/minilm_emotion.yaml --epochs 2 --output runs/$(MINILM)
runs/$(TINY)/config.json:
	bertdeploy train --model bert-tiny --data $(DATA) --epochs 5 --lr 5e-4 --batch-size 32 --max-length 64 \
	    --padding dynamic --group-by-length --output runs/$(TINY)
models/%/bertdeploy.json: runs/%/config.json
	bertdeploy export runs/$* -o models/$* --all

bench-runtime: models/$(MINILM)/bertdeploy.json models/$(TINY)/bertdeploy.json
	$(PIP) install -q -c constraints.txt openvino nncf onnxruntime-ep-openvino
	$(WHOLE_FILE) models/$(MINILM) runs/$(MINILM) -o $(RUNTIME_OUT)/minilm
	$(WHOLE_FILE) models/$(TINY) runs/$(TINY) -o $(RUNTIME_OUT)/bert-tiny
	$(PYTHON) -m bertdeploy.benchmark.scenarios.headline README.md $(RUNTIME_OUT)/minilm $(RUNTIME_OUT)/bert-tiny

# The sequence-length rows (synthetic texts of 128 / 256 / 512 tokens) of benchmarks/runtime/final.
models/$(MINILM)-512/bertdeploy.json: runs/$(MINILM)/config.json
	bertdeploy export runs/$(MINILM) -o models/$(MINILM)-512 --int8 --max-length 512
bench-seq: models/$(MINILM)-512/bertdeploy.json
	for L in 128 256 512; do \
	    bertdeploy bench --scenario whole-file models/$(MINILM)-512 --data synthetic:$$L@$(DATA)/test.csv \
	        -o benchmarks/runtime/final/seq-$$L --engines $(SEQ_ENGINES) --threads 2 --repeats 3 || exit 1; \
	done

# `bertdeploy serve` under load beside offline predict; rewrites the table of benchmarks/serve/README.md.
bench-serve: models/$(MINILM)/bertdeploy.json
	bertdeploy bench --scenario serve models/$(MINILM) --data $(DATA)/test.csv -o benchmarks/serve --threads 2 --repeats 3

# The DRCD reader from scratch (benchmarks/drcd/README.md, "The cloze stage with question-match types"): cloze
# questions made from the training paragraphs, one epoch on them alone, then the real questions; both stages with
# --question-match. About 2 h of training on 2 CPU cores; then the export gate and the two-stage reader end to end.
SHARED ?= ../shared/datasets
runs/drcd-cloze/train.jsonl:
	bertdeploy data cloze $(SHARED)/drcd_select -o runs/drcd-cloze --only --per-paragraph 40 --per-sentence 4 \
	    --context-chars 160
runs/drcd-qa-cloze/config.json: runs/drcd-cloze/train.jsonl
	bertdeploy train --model bert-mini --vocab-from-data --data runs/drcd-cloze --task question-answering \
	    --epochs 1 --lr 5e-4 --batch-size 32 --max-length 256 --doc-stride 64 --warmup-ratio 0.1 --group-by-length \
	    --seed 42 --question-match -o runs/drcd-qa-cloze
runs/drcd-qa-match/config.json: runs/drcd-qa-cloze/config.json
	bertdeploy train --model runs/drcd-qa-cloze --data $(SHARED)/drcd_select --task question-answering \
	    --epochs 3 --lr 2.5e-4 --batch-size 8 --max-length 384 --doc-stride 128 --warmup-ratio 0.1 --seed 42 \
	    --question-match -o runs/drcd-qa-match
models/drcd-qa-match/bertdeploy.json: runs/drcd-qa-match/config.json
	bertdeploy export runs/drcd-qa-match -o models/drcd-qa-match --data $(SHARED)/drcd --int8
drcd-reader: models/drcd-qa-match/bertdeploy.json
	bertdeploy predict overlap --then models/drcd-qa-match -i $(SHARED)/drcd_select/test.json \
	    -o runs/drcd-answers.jsonl
