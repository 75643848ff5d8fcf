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

# pytest exits 5 when nothing is collected/selected (e.g. no tests yet);
# treat that as success so CI doesn't fail on an empty suite.
test: $(VENV)/.installed
	$(PYTEST) -m "not gpu and not slow" tests || test $$? -eq 5

demo: $(VENV)/.installed
	$(PY) -m ember.demo

opinfo-sweep: $(VENV)/.installed
	$(PYTEST) -m slow tests/test_opinfo.py

clean:
	rm -rf $(VENV) *.egg-info build dist .pytest_cache .hypothesis
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
