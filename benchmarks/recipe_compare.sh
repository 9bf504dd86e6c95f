#!/usr/bin/env bash
# Recipe comparison at equal CPU time (issue 15, item 2): each recipe trains from scratch on the
# visual captions for MINUTES of wall time, pinned to one core with one TensorFlow thread, one after
# another, then `evaluate` scores it (held-out loss in ε space, colour following, conditioning).
#   bash benchmarks/recipe_compare.sh [MINUTES] [CORE] [RECIPE ...]
# RECIPE is one of: base lr1e-3 w48 v eps minsnr. base is the shipped model's config, v-prediction
# since reference v3 (2026-12-03), so v equals base there and eps is the ε recipe of the old tables. Data: data/pokemon_visual (collect --source pokedex
# + embed --text-encoder minilm). Runs land in runs/cmp<MINUTES>_<RECIPE>, reports beside them.
set -euo pipefail
minutes=${1:-15}; core=${2:-1}; shift 2 || true
recipes=("$@"); [ ${#recipes[@]} -gt 0 ] || recipes=(base lr1e-3 w48 v)
bin=${BIN:-.venv/bin/pokemon-diffusion}; data=${DATA:-data/pokemon_visual}
base=pokemon_diffusion/pretrained/config.json   # the shipped model's recipe
export TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
mkdir -p runs
for r in "${recipes[@]}"; do
  out=runs/cmp${minutes}_$r; flags=(); change='{}'
  case $r in
    base) ;;
    lr1e-3) flags=(--lr 1e-3) ;;
    w48) flags=(--base-width 48) ;;
    v) change='{"diffusion": {"prediction": "v"}}' ;;
    eps) change='{"diffusion": {"prediction": "epsilon"}}' ;;
    minsnr) change='{"train": {"loss_weighting": "min_snr"}}' ;;
    *) echo "unknown recipe $r (base lr1e-3 w48 v eps minsnr)" >&2; exit 2 ;;
  esac
  rm -rf "$out"
  # the shipped config with the recipe's change merged on top
  config=$(python3 -c 'import json, sys
c = json.load(open(sys.argv[1]))
for k, v in json.loads(sys.argv[2]).items(): c[k].update(v)
print(json.dumps(c))' "$base" "$change")
  taskset -c "$core" "$bin" train --data "$data" --out "$out" --config "$config" "${flags[@]}" \
    --steps 10000 --seed 0 --time-limit "$minutes" > "$out.log" 2>&1
  taskset -c "$core" "$bin" evaluate --run "$out" --data "$data" --num 22 --guidance 3 --colour-seeds 2 \
    --out "$out.eval.json" >> "$out.log" 2>&1
  echo "$r done $(date +%T)"
done
