#!/usr/bin/env bash
# The wheels a GPU lease needs (docs/model.md, experiments/device_lease.sh): the project's
# runtime dependencies that the lent machine's image (Python 3.12, torch, lightning,
# torchmetrics, numpy, scipy, matplotlib, pandas, ... already there) lacks, at the versions of
# this machine's .venv, for CPython 3.12 on x86-64, into .whl/ (git-ignored; 29 wheels, ~32 MB).
# A lease then carries .whl and starts with
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
set -eu
NAMES="cffi pycparser chardet docstring_parser future importlib_resources jsonargparse jsonpickle jsonschema
jsonschema-specifications referencing rpds-py mido mir_eval more-itertools musdb museval music21 nnaudio
omegaconf pretty_midi pyaml soundfile tinysoundfont typeshed_client webcolors stempeg ffmpeg-python decorator"
pins=$(.venv/bin/python -m pip freeze 2>/dev/null | python3 -c '
import re, sys
names = {re.sub("[-_.]+", "-", n).lower() for n in sys.argv[1].split()}
for line in sys.stdin:
    name = line.split("==")[0]
    if "==" in line and re.sub("[-_.]+", "-", name).lower() in names:
        print(line.strip())' "$NAMES")
echo "$pins" | wc -l
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl $pins
ls .whl | wc -l; du -sh .whl
