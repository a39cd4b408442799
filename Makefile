# knowcast: `make run` installs and serves (dashboard + API on the embedded SQLite store, demo data on first
# run); `make test` installs everything the tests need and runs them. Both work from a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: install install-test browser run test test-slow lint bench

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

# Debian's Chromium and CJK fonts for the browser tests (never `playwright install`); skipped tests say why
# if this cannot run (no root, no network).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  (apt-get update -qq && apt-get install -y -qq chromium fonts-noto-cjk fonts-noto-color-emoji >/dev/null) \
	  || echo "note: could not install chromium; browser tests will be skipped"; }

run: install
	$(VENV)/bin/knowcast serve

test: install-test browser
	$(PY) -m pytest

test-slow: install-test browser
	$(PY) -m pytest -m slow

lint: install-test
	$(VENV)/bin/ruff check src tests benchmarks
