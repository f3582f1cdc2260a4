# One task runner. `make run` and `make test` work on a fresh machine that has python3 and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
OUT    ?= out/sample

.PHONY: run test bench sample clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# Until the dashboard lands (issue 4), `make run` analyses the sample cohort.
run: $(STAMP)
	$(VENV)/bin/cdasi-outcomes analyze sample_data/visits.csv --therapies sample_data/therapies.csv --out $(OUT)
	@echo "Results written to $(OUT)/ (results.json, lines.csv, trajectories.csv)"

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_foundation.py
	$(PY) benchmarks/bench_analyze.py

# Regenerate the committed sample cohort (deterministic).
sample: $(STAMP)
	$(VENV)/bin/cdasi-outcomes sample --patients 400 --seed 20210301 --out sample_data

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
