# dubbok — every target sets itself up: `make demo`, `make test`, `make bench`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv test lint typecheck unit demo bench protos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check dubbok tests examples bench tools
	$(VENV)/bin/ruff format --check dubbok tests examples bench tools

typecheck: venv
	$(VENV)/bin/mypy dubbok

test: lint typecheck
	$(VENV)/bin/pytest -q

unit: venv
	$(VENV)/bin/pytest -q tests/unit

demo: venv
	$(PY) examples/greeter/demo.py

bench: venv
	$(PY) -m bench

protos: venv
	$(PY) tools/gen_protos.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
