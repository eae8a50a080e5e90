# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make demo   -- runs the main job on the bundled toy model (no downloads)
#   make test   -- passes the tests
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast clean bench-scale gpu-bundle

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: a CPU machine gets the CPU build and no CUDA wheels are pulled
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	# bytecode for the editable sources, once: every Ray worker imports them, and where
	# PYTHONDONTWRITEBYTECODE is set each process would compile them again (~0.15 s each)
	$(PY) -m compileall -q gankit jobs
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gankit demo --out $(or $(OUT),demo_out)

test: $(STAMP)
	RAY_AUTH_MODE=disabled $(PY) -m pytest -q $(PYTEST_ARGS)

# Everything but the tests marked slow (those that start Ray actors or run > ~5 s)
test-fast: $(STAMP)
	RAY_AUTH_MODE=disabled $(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# Real scale on this machine's CPU, quick: benchmarks/bench_scale.py (GPU: see gpu_check.sh)
bench-scale: $(STAMP)
	RAY_AUTH_MODE=disabled $(PY) benchmarks/bench_scale.py --device cpu --quick --out $(or $(OUT),out/bench_scale)

# Offline bundle (stripped Ray + wheels) for benchmarks/gpu_check.sh on a GPU machine
gpu-bundle: $(STAMP)
	bash benchmarks/make_gpu_bundle.sh $(or $(BUNDLE),gpu_bundle) --python $(or $(GPU_PYTHON),3.12)

clean:
	rm -rf $(VENV) demo_out .pytest_cache
