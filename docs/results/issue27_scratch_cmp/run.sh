#!/bin/bash
# issue 27 item 4: fine-tune v3 vs from scratch at equal CPU time, one core each, side by side
cd /work/main
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TF_CPP_MIN_LOG_LEVEL=2 POKEMON_DIFFUSION_PROGRESS=0
export TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
mkdir -p runs/scratch_cmp; rm -rf runs/scratch_cmp/finetune runs/scratch_cmp/scratch
bin=.venv/bin/pokemon-diffusion; data=data/pokemon_tagged
common=(--config runs/v5_config.json --steps 2300 --time-limit 20 --seed 0)
taskset -c 0 $bin train --data $data --out runs/scratch_cmp/finetune "${common[@]}" --init runs/v3_pretrained --lr 3e-4 > runs/scratch_cmp/finetune.log 2>&1 &
taskset -c 1 $bin train --data $data --out runs/scratch_cmp/scratch "${common[@]}" --lr 1e-3 > runs/scratch_cmp/scratch.log 2>&1 &
wait
taskset -c 0 .venv/bin/python -m pokemon_diffusion.evaluation.prompt_forms runs/scratch_cmp/finetune --data data/pokemon_multi --pokemon 12 --seeds 3 --cads 0 --out runs/scratch_cmp/finetune_forms.json > runs/scratch_cmp/finetune_forms.log 2>&1 &
taskset -c 1 .venv/bin/python -m pokemon_diffusion.evaluation.prompt_forms runs/scratch_cmp/scratch --data data/pokemon_multi --pokemon 12 --seeds 3 --cads 0 --out runs/scratch_cmp/scratch_forms.json > runs/scratch_cmp/scratch_forms.log 2>&1 &
wait
echo done
