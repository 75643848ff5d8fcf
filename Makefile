PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST := TRITON_INTERPRET=1 $(PY) -m pytest -q

.PHONY: venv test demo opinfo-sweep clean

# Stamp file: the venv is rebuilt only when the dependency spec changes.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV) && $(VENV)/bin/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

test: $(VENV)/.installed
	$(PYTEST) -m "not gpu and not slow" tests

demo: $(VENV)/.installed
	$(PY) -m ember.demo

# The whole OpInfo database through ember; prints the figures recorded in docs/opinfo.md.
opinfo-sweep: $(VENV)/.installed
	TRITON_INTERPRET=1 $(PY) tests/opinfo_sweep.py --out opinfo_results.json

clean:
	rm -rf $(VENV) *.egg-info build dist .pytest_cache .hypothesis
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
