#!/usr/bin/env bash
# MAJL's two stages on a CPU in one command (docs/majl/README.md): stage I, pseudo labels (with
# the adaptive thresholds' calibration), stage II; leaves runs/majl_cpu/stage2/version_N/best.ckpt
# (each fit gets the next free version_N folder) for
#   mpe-ssl separate song.wav --ckpt runs/majl_cpu/stage2/version_0/best.ckpt
# Each step is timed into runs/majl_cpu/times.txt. Run from the repository root.
set -euo pipefail
out=runs/majl_cpu
mkdir -p "$out"
: > "$out/times.txt"
timed() {  # NAME COMMAND...: run it and append its wall time
    local name=$1 start=$SECONDS
    shift
    "$@"
    echo "$name $((SECONDS - start)) s" | tee -a "$out/times.txt"
}
# the renders the configs' datasets make on first use (cached under data/cache: instant when there)
timed render python -c 'import yaml
from mpe_ssl.data.majl import render_root
config = yaml.safe_load(open("experiments/majl_cpu.yaml"))["data"]["init_args"]["train_streams"][0]
for split in ("train", "val"):
    render_root(config["dataset"]["init_args"]["render"], split)' 
latest() {  # the newest version_N folder of a fit's root
    ls -d "$1"/version_* | sort -V | tail -1
}
timed stage1 mpe-ssl fit --config experiments/majl_cpu.yaml
stage1=$(latest "$out/stage1")/best.ckpt
rm -rf "$out/pseudo"  # labels of this run's stage I only
timed pseudo-label mpe-ssl pseudo-label --ckpt "$stage1" --config experiments/majl_cpu.yaml \
    --out "$out/pseudo" --calibrate --calibrate-pieces 16
timed stage2 mpe-ssl fit --config experiments/majl_cpu_stage2.yaml
echo "stage-II checkpoint: $(latest "$out/stage2")/best.ckpt" | tee -a "$out/times.txt"
