# Two commands on a fresh machine with Python 3.11: `make demo` and `make test`.
# Each creates .venv when it is missing. torch is pinned through constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pip extras of the venv; CI adds browser (selenium) for tests/serve/test_browser.py
EXTRAS ?= test
export OMP_WAIT_POLICY := PASSIVE

.PHONY: demo test test-slow test-avx2 lint bench-setup clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/seqlab demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# oneDNN and ATen capped at AVX2, as on a CPU without AVX-512, where oneDNN has no bf16 LSTM:
# train.precision=auto must fall back to fp32 and an explicit bf16 must fail in one line. Runs
# a smoke subset (~2 min) and the demo's code path with a short budget.
AVX2_ENV := ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2
SMOKE := tests/test_precision.py tests/test_diagnose.py tests/models/test_recurrent.py \
	tests/nn/test_recurrent_stack.py tests/nn/test_cells.py tests/test_cli.py

test-avx2: $(STAMP)
	$(AVX2_ENV) $(BIN)/python -m pytest -q $(SMOKE)
	tmp=$$(mktemp -d) && $(AVX2_ENV) $(BIN)/seqlab demo --minutes 0.2 --out "$$tmp/demo" \
		&& rm -rf "$$tmp"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .mypy_cache
