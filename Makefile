# The two entry points of the README. Both set up what they need first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench lint fuzz docs

setup:
	bash scripts/setup.sh

demo: setup
	$(PY) examples/demo.py

test: setup
	bash scripts/test.sh

bench: setup
	$(PY) bench/run_all.py

lint: setup
	$(VENV)/bin/ruff check greenrt protocols lab tests bench examples

docs: setup
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html
