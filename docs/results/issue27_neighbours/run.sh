#!/bin/bash
# issue 27 variety experiment: v5 fine-tuned on data/pokemon_nbr (neighbour descriptions), one core
cd /work/main
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TF_CPP_MIN_LOG_LEVEL=2 POKEMON_DIFFUSION_PROGRESS=0
export TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
out=runs/nbr/v6n; R="--init runs/v5"; [ -d "$out/checkpoints" ] && R="--resume"
exec taskset -c 1 .venv/bin/pokemon-diffusion train --data /work/main/data/pokemon_nbr --out $out \
  --config runs/nbr/config.json --time-limit 80 $R "$@"
