# Set-up is part of each target: a fresh machine needs only Python 3.11 and pip.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo tensorboard lint bench clean

# __init__.py holds the version, which the installed metadata must follow
$(STAMP): pyproject.toml keras_audit/__init__.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check keras_audit tests benchmarks examples

test: lint
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q tests

# TF_CPP_MIN_LOG_LEVEL=3: no cuInit/absl start-up lines on machines without a GPU
demo: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) examples/demo.py

# the demo's runs (make demo first); keeps every logged epoch of every picture
tensorboard: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=3 $(VENV)/bin/tensorboard --logdir runs --samples_per_plugin images=0 \
		--host 127.0.0.1 --port $${PORT:-6006}

BENCHES := bench_explain bench_callbacks soak_callbacks bench_audit \
	bench_render bench_report

bench: $(STAMP)
	set -e; for b in $(BENCHES); do echo "== $$b"; TF_CPP_MIN_LOG_LEVEL=2 $(PY) benchmarks/$$b.py; done

clean:
	rm -rf $(VENV) runs demo_output audit_report test-artifacts
