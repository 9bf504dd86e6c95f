#!/bin/bash
# Issue 28's quality A/B: the same 1,000-step run of the shipped reference's configuration (32², batch 32,
# from scratch) in float32 and in mixed_precision "auto", two seeds, one after the other on one pinned core
# with one TensorFlow thread. Compare the last held-out loss (val_loss) of each OUT/s*/metrics.jsonl.
#   bash benchmarks/precision_ab.sh DATA OUT [CORE]
set -euo pipefail
data=${1:?dataset folder}; out=${2:?output folder}; core=${3:-1}
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2 POKEMON_DIFFUSION_PROGRESS=0 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
mkdir -p "$out"
.venv/bin/python - "$out/config.json" <<'PY'
import json, sys
from pokemon_diffusion.pretrained import pretrained_dir
c = json.loads((pretrained_dir() / "config.json").read_text())
c["train"].update(steps=1000, eval_every=250, checkpoint_every=500, time_limit_minutes=None, sample_every=100000)
c["train"].pop("mixed_precision", None)
open(sys.argv[1], "w").write(json.dumps(c, indent=1))
PY
for seed in 0 1; do
  for mp in fp32 auto; do
    flag=$([ $mp = fp32 ] && echo "--no-mixed-precision" || echo "--mixed-precision auto")
    [ -f "$out/s${seed}_$mp/ema_model.keras" ] && continue
    taskset -c "$core" .venv/bin/pokemon-diffusion train --data "$data" --out "$out/s${seed}_$mp" \
      --config "$out/config.json" --seed $seed $flag
  done
done
