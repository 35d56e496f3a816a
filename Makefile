# Set-up is part of each target: a fresh machine needs only Python 3.11 and pip.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check keras_audit tests benchmarks examples
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q tests

demo: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) examples/demo.py

bench: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) benchmarks/bench_explain.py

clean:
	rm -rf $(VENV) runs demo_output
