# One task runner. `make run` and `make test` work on a fresh machine that has python3 and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PORT   ?= 8501
MIN_VENV  := .venv-min
MIN_STAMP := $(MIN_VENV)/.installed-$(shell cat pyproject.toml tests/min-versions.txt | cksum | cut -d' ' -f1)

.PHONY: run test test-min bench sample browser postgres clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# The lowest versions pyproject.toml allows (tests/min-versions.txt), in a second environment.
$(MIN_STAMP): pyproject.toml tests/min-versions.txt
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MIN_VENV)/bin/python -m pip install --quiet -r tests/min-versions.txt
	$(MIN_VENV)/bin/python -m pip install --quiet --no-deps -e .
	$(MIN_VENV)/bin/python -m pip check
	rm -f $(MIN_VENV)/.installed-*
	touch $(MIN_STAMP)

# Chromium: for the browser test and for PNG/SVG export (kaleido). Debian's package, installed when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing chromium (Debian package) for the browser test and PNG/SVG export..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	  else \
	    echo "note: no chromium; install it (apt-get install chromium) for the browser test and PNG/SVG export"; \
	  fi; }

# PostgreSQL: the library's tests run against a real server (a throwaway cluster per test session).
# Debian's package, installed when missing; the cluster the package creates is not used.
postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing postgresql (Debian package) for the library's tests..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; \
	  else \
	    echo "note: no PostgreSQL; install it (apt-get install postgresql) for the library's PostgreSQL tests"; \
	  fi; }

# The dashboard on the sample cohort, on http://127.0.0.1:$(PORT)
run: $(STAMP)
	$(VENV)/bin/cdasi-outcomes dashboard --port $(PORT)

test: $(STAMP) browser postgres
	$(PY) -m pytest -q

# The tests (all but the browser test) against the declared minimum versions.
test-min: $(MIN_STAMP) browser postgres
	$(MIN_VENV)/bin/python -m pytest -q -p no:cacheprovider --deselect tests/test_browser.py

bench: $(STAMP)
	$(PY) benchmarks/bench_foundation.py
	$(PY) benchmarks/bench_analyze.py
	$(PY) benchmarks/bench_dashboard.py
	$(PY) benchmarks/bench_export.py
	$(PY) benchmarks/bench_mixed.py
	$(PY) benchmarks/bench_scale.py

# Regenerate the committed sample cohort (deterministic).
sample: $(STAMP)
	$(VENV)/bin/cdasi-outcomes sample --patients 400 --seed 20210301 --out sample_data

clean:
	rm -rf $(VENV) $(MIN_VENV) out .pytest_cache .hypothesis
