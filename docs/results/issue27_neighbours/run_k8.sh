#!/bin/bash
# issue 27 variety, variant: 8 neighbours (the library's --caption-neighbours), core 0
cd /work/main
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TF_CPP_MIN_LOG_LEVEL=2 POKEMON_DIFFUSION_PROGRESS=0
export TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
out=runs/nbr/v6k8; R="--init runs/v5"; [ -d "$out/checkpoints" ] && R="--resume"
exec taskset -c 0 .venv/bin/pokemon-diffusion train --data /work/main/data/pokemon_tagged --out $out \
  --config runs/nbr/config_k8.json --time-limit 85 $R "$@"
