#!/usr/bin/env bash
# One GPU lease of the faithful SS-MPE experiment (issue 12, experiments/ssmpe_faithful.py): render
# the data, fit the conditions in ONLY side by side on the one GPU for at most MINUTES each, and
# copy their logs, wall times, throughput and the summary table to $OUT. Run from the repo root
# with the dependencies installed. A later lease with the same ONLY resumes nothing (a fresh
# machine): choose STEPS and ONLY so that the conditions finish in one lease, e.g.
#   ONLY="closed/supervised closed/+geometric share/s16 remedy/ema" STEPS=1500 MINUTES=8
set -u
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
OUT=${OUT:-runs/device}; mkdir -p "$OUT"
ONLY=${ONLY:-"closed/supervised closed/+geometric share/s16 remedy/ema"}
STEPS=${STEPS:-1500}; MINUTES=${MINUTES:-8}; COMPLEXITY=${COMPLEXITY:-3}
PRECISION=${PRECISION:-bf16-mixed}
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/log.txt"; }
log "start"; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$OUT/log.txt"
n=$(echo $ONLY | wc -w)
python3 experiments/ssmpe_faithful.py --only $ONLY --steps $STEPS --complexity $COMPLEXITY --parallel $n \
  --workers 3 --render-workers 15 --max-time 00:00:$(printf %02d $MINUTES):00 \
  --cli-args "--trainer.precision $PRECISION --trainer.enable_progress_bar false" >>"$OUT/log.txt" 2>&1
log "fits ended"
for dir in runs/ssmpe_faithful/*/*/; do
  name=$(echo ${dir#runs/ssmpe_faithful/} | tr / _ | sed 's/_$//')
  cp "$(ls -t $dir/csv/version_*/metrics.csv | head -1)" "$OUT/${name}_metrics.csv" 2>/dev/null
  cp $dir/time.json "$OUT/${name}_time.json" 2>/dev/null
done
cp runs/ssmpe_faithful/*.log "$OUT/" 2>/dev/null
cp -r docs/ssmpe/faithful "$OUT/summary" 2>/dev/null
log "done"
