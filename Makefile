# Two-command quickstart: `make demo` (install + evaluate the demo models) and `make test`.
# `make gate-baseline`: regenerate scopebench's own CI gate baseline (tests/baselines/demo-gate) on purpose.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

$(BIN)/scopebench: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	touch $(BIN)/scopebench

install: $(BIN)/scopebench

demo: install
	$(BIN)/scopebench eval

test: install
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q

GATE := tests/baselines/demo-gate
gate-baseline: install
	rm -rf $(GATE).new
	SCOPEBENCH=$(BIN)/scopebench bash tests/baselines/demo_gate.sh $(GATE).new
	-test ! -d $(GATE) || $(BIN)/scopebench check $(GATE).new --baseline $(GATE) \
		--tolerances tests/baselines/tolerances.yaml
	rm -rf $(GATE).new/parts $(GATE).new/.lock $(GATE)
	mv $(GATE).new $(GATE)
	@echo "wrote $(GATE): commit it with the change that moved the demo's answers"

bench: install
	$(BIN)/python benchmarks/bench_cli.py
	$(BIN)/python benchmarks/bench_eval.py
	$(BIN)/python benchmarks/bench_flops.py

.PHONY: install demo test gate-baseline bench
