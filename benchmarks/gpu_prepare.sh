#!/usr/bin/env bash
# Run HERE (the CPU machine with the project venv and the dataset): fills gpu_carry/ (git-ignored)
# with what the GPU machine lacks for `gpu_jax.sh`: the two packed datasets and the wheels of Keras
# and the pure-Python packages it needs there (that machine has JAX with CUDA, numpy, h5py,
# ml-dtypes, rich, torch; no TensorFlow, no OpenCV). About 25 MiB; the carry limit is 64 MiB.
#   bash benchmarks/gpu_prepare.sh            # DATA=data/pokemon PYTHON=.venv/bin/python by default
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
DATA=${DATA:-data/pokemon}
DEST=${DEST:-gpu_carry}
mkdir -p "$DEST/wheels"
for size in 16 32 64; do  # 16: for the --smoke rehearsal
  PYTHONPATH=$PWD "$PYTHON" benchmarks/pack_dataset.py --data "$DATA" --size $size --out "$DEST/packed$size.npz"
done
# keras 3.15.1 Requires-Dist: absl-py, h5py, ml-dtypes, namex, numpy, optree, packaging, rich;
# optree needs typing-extensions; the project's progress bars need tqdm. optree is compiled: one
# wheel per Python version the GPU machine might have.
"$PYTHON" -m pip download -q --no-deps -d "$DEST/wheels" keras==3.15.1 namex==0.1.0 absl-py==2.5.1 \
  packaging==26.4 tqdm==4.70.1 typing_extensions==4.16.0
for py in 3.10 3.11 3.12 3.13; do
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version $py \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d "$DEST/wheels" optree==0.20.0
done
du -sh "$DEST"; ls "$DEST" "$DEST/wheels"
