#!/usr/bin/env bash
# One GPU lease of the faithful SS-MPE experiment (issue 12, experiments/ssmpe_faithful.py): render
# the data, fit the conditions in ONLY side by side on the one GPU for at most MINUTES each, and
# copy their logs, wall times, throughput and the summary table to $OUT. Run from the repo root
# with the dependencies installed. A later lease with the same ONLY resumes nothing (a fresh
# machine): choose STEPS and ONLY so that the conditions finish in one lease, e.g.
#   ONLY="closed/supervised closed/+geometric share/s16 remedy/ema" STEPS=1500 MINUTES=8
# RENDER_WORKERS and WORKERS (data processes per fit) share the machine's cores with other jobs
# (experiments/device_lease.sh runs this beside the transcriber's training).
set -u
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
OUT=${OUT:-runs/device}; mkdir -p "$OUT"
ONLY=${ONLY:-"closed/supervised closed/+geometric share/s16 remedy/ema"}
STEPS=${STEPS:-1500}; MINUTES=${MINUTES:-8}; COMPLEXITY=${COMPLEXITY:-3}
MAX_TIME=${MAX_TIME:-00:00:$(printf %02d $MINUTES):00}  # or DD:HH:MM:SS itself
PRECISION=${PRECISION:-bf16-mixed}; RENDER_WORKERS=${RENDER_WORKERS:-15}; WORKERS=${WORKERS:-3}
CHECKPOINTING=${CHECKPOINTING:-false}  # activation checkpointing: a GPU has the memory, so skip the recompute
log() { echo "[$(date +%T)] ssmpe: $*" | tee -a "$OUT/log.txt"; }
log "start"
n=$(echo $ONLY | wc -w)
python3 experiments/ssmpe_faithful.py --only $ONLY --steps $STEPS --complexity $COMPLEXITY --parallel $n \
  --workers $WORKERS --render-workers $RENDER_WORKERS --max-time $MAX_TIME \
  --cli-args "--trainer.precision $PRECISION --trainer.enable_progress_bar false --model.init_args.activation_checkpointing $CHECKPOINTING" >"$OUT/ssmpe_log.txt" 2>&1
log "fits ended"
mkdir -p "$OUT/ssmpe"
for dir in runs/ssmpe_faithful/*/*/; do
  name=$(echo ${dir#runs/ssmpe_faithful/} | tr / _ | sed 's/_$//')
  cp "$(ls -t $dir/csv/version_*/metrics.csv | head -1)" "$OUT/ssmpe/${name}_metrics.csv" 2>/dev/null
  cp $dir/time.json "$OUT/ssmpe/${name}_time.json" 2>/dev/null
done
cp runs/ssmpe_faithful/*.log "$OUT/ssmpe/" 2>/dev/null
cp -r docs/ssmpe/faithful "$OUT/ssmpe/summary" 2>/dev/null
log "done"
