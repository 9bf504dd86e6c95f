#!/usr/bin/env bash
# Does self-attention help the shipped model's shapes? (issue 15) Two fine-tuning runs from the
# shipped reference at equal CPU time, side by side, each pinned to one core with one TensorFlow
# thread: "attn" adds self-attention at 16x16 and 8x8 (`train --init reference` grows the model;
# the new blocks start as identities), "same" keeps the architecture (the control). Same recipe
# (the reference's config: lr 3e-4, warm-up 200, cosine over STEPS), seed, data and split.
#   bash benchmarks/grow_compare.sh [STEPS] [MINUTES]
# Then: evaluate each run (see RESULTS.md). Runs land in runs/grow_attn and runs/grow_same.
set -euo pipefail
steps=${1:-4000}; minutes=${2:-95}
bin=${BIN:-.venv/bin/pokemon-diffusion}; data=${DATA:-data/pokemon_visual}
export TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
mkdir -p runs
config() {  # the shipped config, attention resolutions $1
  python3 -c 'import json, sys
c = json.load(open("pokemon_diffusion/pretrained/config.json"))
c["model"]["attention_resolutions"] = json.loads(sys.argv[1])
print(json.dumps(c))' "$1"
}
core=0
for arm in attn same; do
  out=runs/grow_$arm; rm -rf "$out"
  [ $arm = attn ] && res='[16, 8]' || res='[]'
  nice -n 5 taskset -c $core "$bin" train --data "$data" --out "$out" --config "$(config "$res")" --init reference \
    --steps "$steps" --seed 0 --time-limit "$minutes" > "$out.log" 2>&1 &
  core=$((core + 1))
done
wait
echo "both done $(date +%T)"
