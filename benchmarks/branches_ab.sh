#!/bin/bash
# Issue 28's quality A/B for the step branches: the same 1,000-step run of the shipped reference's
# configuration (32², batch 32, from scratch, the package's precision) with one branch and with the
# default ("auto": two on a 2-core CPU), two seeds, one after the other on the whole machine (the CLI
# sets the threads). Compare the last held-out loss (val_loss) of each OUT/s*/metrics.jsonl.
#   bash benchmarks/branches_ab.sh DATA OUT
set -euo pipefail
data=${1:?dataset folder}; out=${2:?output folder}
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2 POKEMON_DIFFUSION_PROGRESS=0
mkdir -p "$out"
.venv/bin/python - "$out/config.json" <<'PY'
import json, sys
from pokemon_diffusion.pretrained import pretrained_dir
c = json.loads((pretrained_dir() / "config.json").read_text())
c["train"].update(steps=1000, eval_every=250, checkpoint_every=500, time_limit_minutes=None, sample_every=100000)
for default in ("mixed_precision", "branches"):  # the package's defaults
    c["train"].pop(default, None)
open(sys.argv[1], "w").write(json.dumps(c, indent=1))
PY
for seed in 0 1; do
  for branches in 1 auto; do
    [ -f "$out/s${seed}_b$branches/ema_model.keras" ] && continue
    /usr/bin/time -f "%e s wall" .venv/bin/pokemon-diffusion train --data "$data" --out "$out/s${seed}_b$branches" \
      --config "$out/config.json" --seed $seed --branches $branches
  done
done
