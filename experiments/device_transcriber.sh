#!/usr/bin/env bash
# One GPU lease: train the transcription model at two sizes side by side (complexity 2 and 1)
# from experiments/transcriber.yaml; checkpoints and logs go to $OUT. Run from the repo root,
# with the non-torch dependencies installed (see docs/model.md).
set -u
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
OUT=${OUT:-runs/device}; mkdir -p "$OUT"
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/log.txt"; }
log "start"; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$OUT/log.txt"
python3 experiments/prepare_transcriber_data.py --workers 15 >>"$OUT/log.txt" 2>&1 || { log "prepare failed"; tail -30 "$OUT/log.txt"; exit 1; }
log "data ready"
REPO=$PWD
for c in 2 1; do
  dir=/tmp/train_c$c; mkdir -p $dir/runs "$OUT/c$c"; ln -sfn "$REPO/data" $dir/data; ln -sfn "$OUT/c$c" $dir/runs/transcriber
  (cd $dir && python3 -m mpe_ssl fit --config "$REPO/experiments/transcriber.yaml" \
     --model.init_args.network.init_args.model_complexity $c --data.init_args.num_workers 6 \
     --trainer.enable_progress_bar false --trainer.max_time 00:00:05:00 > $dir/fit.log 2>&1; echo "exit $?" >> $dir/fit.log) &
done
wait
for c in 2 1; do
  log "complexity $c:"; tail -5 /tmp/train_c$c/fit.log | tee -a "$OUT/log.txt"
  cp "$(ls -t "$OUT"/c$c/csv/version_*/metrics.csv | head -1)" "$OUT/c${c}_metrics.csv" 2>/dev/null
  rm -rf "$OUT/c$c/csv"
done
log "done"
