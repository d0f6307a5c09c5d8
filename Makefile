# Two commands do all the set-up on a fresh machine:
#   make demo   — install into .venv, then simulate a campaign and decide every event (the main job)
#   make test   — install into .venv, then lint and run the whole test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/woolguard demo --json out/demo.json --html out/demo.html

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

test: lint
	$(BIN)/python -m pytest -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python bench/engine.py --json bench/results/engine.json

clean:
	rm -rf $(VENV) out build *.egg-info
