# Set-up is part of each target: a fresh machine needs only Python 3.11 and pip.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo lint bench clean

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

demo: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) examples/demo.py

BENCHES := bench_explain bench_callbacks soak_callbacks bench_audit \
	bench_render bench_report

bench: $(STAMP)
	set -e; for b in $(BENCHES); do echo "== $$b"; TF_CPP_MIN_LOG_LEVEL=2 $(PY) benchmarks/$$b.py; done

clean:
	rm -rf $(VENV) runs demo_output audit_report test-artifacts
