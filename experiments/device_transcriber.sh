#!/usr/bin/env bash
# One GPU lease: train the transcription model in two variants side by side from
# experiments/transcriber.yaml; checkpoints and logs go to $OUT. Run from the repo root, with the
# non-torch dependencies installed (see docs/model.md). VARIANTS: "COMPLEXITY/DILATIONS ..."
# (TimbreTrapAE's model_complexity and residual dilations), default the two sizes of the shipped
# model's run; e.g. VARIANTS="1/1,2,3 1/3" for the cheaper one-block network (docs/model.md).
set -u
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
OUT=${OUT:-runs/device}; mkdir -p "$OUT"
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/log.txt"; }
log "start"; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$OUT/log.txt"
python3 experiments/prepare_transcriber_data.py --workers 15 >>"$OUT/log.txt" 2>&1 || { log "prepare failed"; tail -30 "$OUT/log.txt"; exit 1; }
log "data ready"
REPO=$PWD
VARIANTS=${VARIANTS:-"2/1,2,3 1/1,2,3"}
names=()
for variant in $VARIANTS; do
  c=${variant%%/*}; dil=${variant#*/}; name=c${c}_d${dil//,/}; names+=("$name")
  dir=/tmp/train_$name; mkdir -p $dir/runs "$OUT/$name"; ln -sfn "$REPO/data" $dir/data; ln -sfn "$OUT/$name" $dir/runs/transcriber
  (cd $dir && python3 -m mpe_ssl fit --config "$REPO/experiments/transcriber.yaml" \
     --model.init_args.network.init_args.model_complexity $c --model.init_args.network.init_args.dilations "[$dil]" \
     --data.init_args.num_workers 6 \
     --trainer.enable_progress_bar false --trainer.max_time 00:00:05:00 > $dir/fit.log 2>&1; echo "exit $?" >> $dir/fit.log) &
done
wait
for name in "${names[@]}"; do
  log "$name:"; tail -5 /tmp/train_$name/fit.log | tee -a "$OUT/log.txt"
  cp "$(ls -t "$OUT"/$name/csv/version_*/metrics.csv | head -1)" "$OUT/${name}_metrics.csv" 2>/dev/null
  rm -rf "$OUT/$name/csv"
done
log "done"
