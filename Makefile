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

# Debian packages the tests need, installed when missing (as root, with apt-get); otherwise a note.
# $(call apt_install,PACKAGE,CHECK,WHAT FOR): CHECK is a shell test that the package is there.
apt_install = @{ $(2); } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing $(1) (Debian package) for $(3)..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(1) >/dev/null; \
	  else \
	    echo "note: no $(1); install it (apt-get install $(1)) for $(3)"; \
	  fi; }

# Chromium: for the browser test and for PNG/SVG export (kaleido).
browser:
	$(call apt_install,chromium,command -v chromium || command -v chromium-browser,the browser test and PNG/SVG export)

# PostgreSQL: the library's tests run against a real server (a throwaway cluster per test session;
# the cluster the package creates is not used).
postgres:
	$(call apt_install,postgresql,ls /usr/lib/postgresql/*/bin/pg_ctl || command -v pg_ctl,the library's PostgreSQL tests)

# The dashboard on the sample cohort, on http://127.0.0.1:$(PORT)
run: $(STAMP)
	$(VENV)/bin/cdasi-outcomes dashboard --port $(PORT)

test: $(STAMP) browser postgres
	$(PY) -m pytest -q --durations=25

# The tests (all but the browser test) against the declared minimum versions.
test-min: $(MIN_STAMP) browser postgres
	$(MIN_VENV)/bin/python -m pytest -q -p no:cacheprovider --deselect tests/test_browser.py

bench: $(STAMP)
	$(PY) benchmarks/bench_targets.py
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
