#!/bin/bash
# Issue 27's neighbour-caption fine-tunes of v5, one pinned core each, one TensorFlow thread:
#   run.sh K CORE     (v6 = K 8 on core 0; the variant K 4 ran on core 1 at the same time)
# config.json = v5's config with caption_weights {"name": 3, "plain": 2, "neighbour": 0.5}, lr 2e-4, 6,500 steps.
# The K 4 run itself trained on a folder with the rows written into its metadata (make_nbr.py 4),
# checked equal row for row (all 1,008 entries) to what --caption-neighbours 4 adds.
cd /work/main
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TF_CPP_MIN_LOG_LEVEL=2 POKEMON_DIFFUSION_PROGRESS=0
export TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
k=$1 core=$2 out=runs/nbr/v6k$1; R="--init runs/v5"; [ -d "$out/checkpoints" ] && R="--resume"
exec taskset -c $core .venv/bin/pokemon-diffusion train --data data/pokemon_tagged --out $out \
  --config docs/results/issue27_neighbours/config.json --caption-neighbours $k --time-limit 85 $R
