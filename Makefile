# The README's two commands: `make demo` and `make test`. Both create .venv on a fresh machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STEEL_DATA ?= $(abspath ../shared/datasets/neu-det)
export STEEL_DATA
DEMO_DIR ?= var/demo
MODEL ?= models/neu-yolo-n

.PHONY: demo test lint format bench install clean gpu-check gpu-session

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev,export,postgres,plc]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	@echo "== 1. Audit of the NEU-DET development split ($(STEEL_DATA)) =="
	$(BIN)/steel data audit $(STEEL_DATA)/annotations --images $(STEEL_DATA)/images --report $(DEMO_DIR)/audit
	@echo
	@echo "== 2. The shipped model ($(MODEL)) on its validation split =="
	$(BIN)/steel eval --model $(MODEL) --data $(STEEL_DATA)/annotations --split configs/splits/neu-det-dev.json --plots $(DEMO_DIR)/eval
	@echo
	@echo "== 3. The inspection daemon over a simulated line-scan strip (NEU-DET training-side images, never the fixed evaluation set) =="
	$(BIN)/steel inspect --once --model $(MODEL) --db sqlite:///$(DEMO_DIR)/inspection.db --set output.dir=$(DEMO_DIR)/inspection --log-level ERROR
	@echo
	@echo "== Done. Results are in $(DEMO_DIR)/inspection.db; open the QA dashboard with:"
	@echo "   $(BIN)/steel dashboard --db sqlite:///$(abspath $(DEMO_DIR))/inspection.db"

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/bench_read.py
	$(BIN)/python bench/bench_models.py
	$(BIN)/python bench/bench_daemon.py
	$(BIN)/python bench/bench_dashboard.py

# Training step (AMP + channels_last), predictor parity and the daemon on CUDA: one JSON report, < 8 min.
# Without a GPU it prints {"status": "skipped", "reason": "skipped: no CUDA device"} and exits 0.
gpu-check: $(STAMP)
	$(BIN)/python bench/gpu_check.py --out var/gpu-check.json

# A lent GPU session in one command: the check, then the accuracy levers over seeds until the deadline.
gpu-session: $(STAMP)
	OUT=var/gpu-session bash bench/gpu_session.sh

clean:
	rm -rf $(VENV) var runs .pytest_cache .ruff_cache
