#!/usr/bin/env bash
# One GPU lease: train the transcription model in variants side by side from
# experiments/transcriber.yaml; checkpoints and logs go to $OUT. Run from the repo root, with the
# non-torch dependencies installed (see docs/model.md). VARIANTS: "COMPLEXITY/DILATIONS[/ACTIVATION] ..."
# (TimbreTrapAE's model_complexity, residual dilations and activation), default the two sizes of
# the shipped model's first run; e.g. VARIANTS="1/3 1/3/leaky_relu" for the one-block networks
# (docs/model.md). RENDERS keeps the first N renders of the config (default all), MINUTES of
# training per variant, TRANSCRIBER_CONFIG another config (a dry run's); RENDER_WORKERS and
# WORKERS (data processes per fit) share the cores with whatever runs beside.
set -u
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
OUT=${OUT:-runs/device}; mkdir -p "$OUT"
VARIANTS=${VARIANTS:-"2/1,2,3 1/1,2,3"}; MINUTES=${MINUTES:-5}; RENDERS=${RENDERS:-0}
RENDER_WORKERS=${RENDER_WORKERS:-15}; WORKERS=${WORKERS:-6}
log() { echo "[$(date +%T)] transcriber: $*" | tee -a "$OUT/log.txt"; }
log "start"
REPO=$PWD
CONFIG=/tmp/transcriber.yaml
python3 - "$RENDERS" "$CONFIG" "${TRANSCRIBER_CONFIG:-experiments/transcriber.yaml}" <<'PY'
import sys, yaml
keep, out = int(sys.argv[1]), sys.argv[2]
config = yaml.safe_load(open(sys.argv[3]))
stream = config["data"]["init_args"]["train_streams"][0]["dataset"]["init_args"]
if keep:
    stream["renders"] = stream["renders"][:keep]
open(out, "w").write(yaml.safe_dump(config, sort_keys=False))
PY
python3 experiments/prepare_transcriber_data.py --config $CONFIG --workers $RENDER_WORKERS >"$OUT/transcriber_prepare.txt" 2>&1 \
  || { log "prepare failed"; tail -30 "$OUT/transcriber_prepare.txt"; exit 1; }
log "data ready"
names=()
for variant in $VARIANTS; do
  IFS=/ read -r c dil act <<<"$variant"; act=${act:-elu}
  name=c${c}_d${dil//,/}_${act}; names+=("$name")
  dir=/tmp/train_$name; mkdir -p $dir/runs "$OUT/$name"; ln -sfn "$REPO/data" $dir/data; ln -sfn "$OUT/$name" $dir/runs/transcriber
  (cd $dir && python3 -m mpe_ssl fit --config $CONFIG \
     --model.init_args.network.init_args.model_complexity $c --model.init_args.network.init_args.dilations "[$dil]" \
     --model.init_args.network.init_args.activation $act --data.init_args.num_workers $WORKERS \
     --trainer.enable_progress_bar false --trainer.max_time 00:00:$(printf %02d $MINUTES):00 > $dir/fit.log 2>&1; echo "exit $?" >> $dir/fit.log) &
done
wait
for name in "${names[@]}"; do
  log "$name: $(tail -3 /tmp/train_$name/fit.log | tr '\n' ' ')"
  cp /tmp/train_$name/fit.log "$OUT/$name/fit.log"
  cp "$(ls -t "$OUT"/$name/csv/version_*/metrics.csv | head -1)" "$OUT/$name/metrics.csv" 2>/dev/null
  rm -rf "$OUT/$name/csv"
done
log "done"
