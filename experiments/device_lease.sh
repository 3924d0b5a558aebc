#!/usr/bin/env bash
# Everything one GPU lease (about 10 minutes of a 16-core machine with one GPU) runs for the open
# issues, side by side, then packed into a few files under $OUT (the lease returns at most 8):
#   - issue 13: the one-block transcriber variants (experiments/device_transcriber.sh), then the
#     batched-file transcription figure on the GPU (benchmarks/gpu_transcribe.py);
#   - issue 12: faithful SS-MPE conditions (experiments/device_ssmpe.sh);
#   - issue 11: score-informed separation at the paper's scale (1500 hidden units, lr 1e-4, 5000
#     full-batch steps) on the GPU (experiments/separation_experiments.py).
# Run from the repo root with the dependencies importable (a lease: the wheels of
# experiments/lease_wheels.sh under .whl/, carried, installed with the line in its header). DEADLINE (seconds from the start) bounds the whole script. Dry run here:
#   TRANSCRIBER_CONFIG=<a config whose renders are cached> DEVICE=cpu DEADLINE=420 TRANSCRIBER_MINUTES=1 \
#   SSMPE_MINUTES=1 ONLY=share/s16 COMPLEXITY=1 STEPS=20 SEP_ITERATIONS=10 SEP_PIECES=1 PRECISION=32 \
#   bash experiments/device_lease.sh
# Measured on the first lease (2026-11-27, H200): renders take 2-3 minutes of it (the
# transcriber's two renders with 9 processes 131 s; the SS domain's with 6 processes longer).
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

VARIANTS=${VARIANTS:-"1/3 1/3/leaky_relu"} RENDERS=${RENDERS:-2} MINUTES=${TRANSCRIBER_MINUTES:-5} \
  RENDER_WORKERS=9 WORKERS=${TRANSCRIBER_WORKERS:-3} timeout $(left) bash experiments/device_transcriber.sh &
transcriber=$!
ONLY=${ONLY:-"closed/supervised closed/+geometric share/s16 remedy/ema remedy/energy"} STEPS=${STEPS:-1500} \
  COMPLEXITY=${COMPLEXITY:-2} MINUTES=${SSMPE_MINUTES:-5} RENDER_WORKERS=6 WORKERS=${SSMPE_WORKERS:-1} timeout $(left) bash experiments/device_ssmpe.sh &
ssmpe=$!
separate() {  # TAG METHODS OVERRIDES: 8 test pieces, piano task, exact scores, 2 processes
  timeout $(( $(left) - 40 )) python3 experiments/separation_experiments.py --split test --pieces ${SEP_PIECES:-8} --tasks piano \
    --warps 0 --methods $2 --workers 2 --threads 1 --tag $1 --out "$OUT/separation" --overrides "$3" \
    > "$OUT/separation_log_$1.txt" 2>&1
  log "separation $1 rc $?"
}
separate gpu_paper "ae_nonneg_ctx nmf ae_nonneg" '{"iterations": '${SEP_ITERATIONS:-5000}', "hidden": 1500, "lr": 1e-4, "device": "'$DEVICE'"}' &
(sleep 45; separate gpu_lr1e-3 "ae_nonneg_ctx ae_nonneg" '{"iterations": '${SEP_ITERATIONS:-5000}', "hidden": 1500, "lr": 1e-3, "device": "'$DEVICE'"}') &

wait $transcriber; log "transcriber rc $?"
if [ "$(left)" -gt 60 ]; then
  mkdir -p /tmp/bench_audio; i=0  # the mixes of rendered test chorales, whole pieces (stems left out)
  for mix in $(ls data/cache/chorales/*/test/*/mix.wav | head -32); do i=$((i + 1)); ln -sf "$PWD/$mix" /tmp/bench_audio/piece$i.wav; done
  model=$(ls $OUT/c1_d3_leaky_relu/version_*/best.ckpt 2>/dev/null | tail -1); [ -n "$model" ] && model="--ckpt $model"  # else the packaged one
  timeout $(( $(left) - 25 )) python3 benchmarks/gpu_transcribe.py --audio /tmp/bench_audio --limit 32 $model \
    --device $DEVICE --batches "1 8 32" --json "$OUT/gpu_transcribe.json" > "$OUT/gpu_transcribe_log.txt" 2>&1
  log "gpu transcribe rc $?"
fi
wait $ssmpe; log "ssmpe rc $?"
wait
log "packing"
cd "$OUT"
pack() { name=$1; shift; tar -cf $name.tar --ignore-failed-read "$@" 2>/dev/null; rm -rf "$@"; }
pack transcriber c[0-9]_d* transcriber_prepare.txt
pack ssmpe ssmpe ssmpe_log.txt
pack separation separation separation_log_*.txt
ls -la | tee -a log.txt
