# mpe-ssl: every target installs what it needs into .venv/ first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
export PYTHONUNBUFFERED := 1

.PHONY: install demo test test-slow bench lint clean

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -e ".[dev]"
	# tinysoundfont declares pyaudio (only for live playback), which does not build here.
	$(PIP) install -q --no-deps "tinysoundfont>=0.3"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m mpe_ssl.demo --config demo

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) benchmarks/run.py

lint: $(STAMP)
	$(PY) -m compileall -q mpe_ssl tests benchmarks

clean:
	rm -rf $(VENV) runs data/cache
