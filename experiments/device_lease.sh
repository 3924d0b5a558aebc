#!/usr/bin/env bash
# Everything one GPU lease (about 10 minutes of a 16-core machine with one GPU) runs for the open
# issues, side by side, then packed into a few files under $OUT (the lease returns at most 8):
#   - issue 12: faithful SS-MPE conditions (experiments/device_ssmpe.sh);
#   - issue 11: score-informed separation with the harmonic prior (`ae_prior`) at the paper's
#     width (1500 hidden units) and budgets beyond the CPU's, beside NMF, on the GPU
#     (experiments/separation_experiments.py).
# (Issue 13's transcriber runs left this script when it was resolved: experiments/device_transcriber.sh
# and benchmarks/gpu_transcribe.py still run on their own.) PARTS picks what runs (default both).
# Run from the repo root with the dependencies importable (a lease: the wheels of
# experiments/lease_wheels.sh under .whl/, carried, installed with the line in its header). DEADLINE (seconds from the start) bounds the whole script. Dry run here:
#   DEVICE=cpu DEADLINE=300 SSMPE_MINUTES=1 ONLY=share/s16 COMPLEXITY=1 STEPS=20 SEP_PIECES=1 \
#   SEP_SCALE=0.05 PRECISION=32 bash experiments/device_lease.sh
# Measured on the first lease (2026-11-27, H200): renders take 2-3 minutes of it (the SS
# domain's with 6 processes).
set -u
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
OUT=${OUT:-runs/device}; mkdir -p "$OUT"; export OUT
DEADLINE=${DEADLINE:-550}; DEVICE=${DEVICE:-cuda}  # DEVICE=cpu: a dry run without a GPU
start=$(date +%s)
log() { echo "[$(date +%T)] lease: $*" | tee -a "$OUT/log.txt"; }
left() { echo $(( DEADLINE - ($(date +%s) - start) )); }
log "start"; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | tee -a "$OUT/log.txt"; nproc | tee -a "$OUT/log.txt"
# museval imports musdb/stempeg, which refuse to import without ffmpeg and ffprobe on PATH; the
# separation scores read no compressed audio, so placeholders will do on a machine without them
if ! command -v ffprobe >/dev/null; then
  mkdir -p /tmp/fakebin; for tool in ffmpeg ffprobe; do printf '#!/bin/sh\necho "%s version 4.4.2"\n' $tool >/tmp/fakebin/$tool; chmod +x /tmp/fakebin/$tool; done
  export PATH=/tmp/fakebin:$PATH
fi

PARTS=${PARTS:-"ssmpe separation"}
if [[ " $PARTS " == *" ssmpe "* ]]; then
  ONLY=${ONLY:-"closed/supervised closed/+geometric share/s16 remedy/ema remedy/energy"} STEPS=${STEPS:-1500} \
    COMPLEXITY=${COMPLEXITY:-2} MINUTES=${SSMPE_MINUTES:-7} RENDER_WORKERS=10 WORKERS=${SSMPE_WORKERS:-1} \
    timeout $(left) bash experiments/device_ssmpe.sh &
fi
separate() {  # TAG METHODS WARPS OVERRIDES: SEP_PIECES test pieces, piano task, 2 processes
  timeout $(( $(left) - 40 )) python3 experiments/separation_experiments.py --split test --pieces ${SEP_PIECES:-8} --tasks piano \
    --warps $3 --methods $2 --workers 2 --threads 1 --tag $1 --out "$OUT/separation" --overrides "$4" \
    > "$OUT/separation_log_$1.txt" 2>&1
  log "separation $1 rc $?"
}
if [[ " $PARTS " == *" separation "* ]]; then
  scale=${SEP_SCALE:-1}  # a dry run shrinks the step counts
  steps() { python3 -c "print(max(2, round($1 * $scale)))"; }
  # the prior at the paper's width: its 300 steps, and 1500 steps at the paper's lr
  separate gpu_prior_1500h "nmf ae_prior" "0 0.5" '{"hidden": 1500, "iterations": '$(steps 300)', "device": "'$DEVICE'"}' &
  (sleep 30; separate gpu_prior_1500h_long "ae_prior" "0" '{"hidden": 1500, "iterations": '$(steps 1500)', "lr": 1e-4, "device": "'$DEVICE'"}') &
fi
wait
log "packing"
cd "$OUT"
pack() { name=$1; shift; tar -cf $name.tar --ignore-failed-read "$@" 2>/dev/null; rm -rf "$@"; }
pack ssmpe ssmpe ssmpe_log.txt
pack separation separation separation_log_*.txt
ls -la | tee -a log.txt
