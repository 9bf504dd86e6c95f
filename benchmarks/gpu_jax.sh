#!/usr/bin/env bash
# Run THERE (the GPU machine, repo root, after gpu_prepare.sh filled gpu_carry/ here and the device
# call carried it): installs the carried wheels if Keras is missing, then one call of gpu_jax.py
# (step grid + bf16 matmul peak + a 64x64 training run) writing everything into $OUT.
#   OUT=/some/dir bash benchmarks/gpu_jax.sh [--seconds 480] [--smoke]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
CARRY=${CARRY:-gpu_carry}
: "${OUT:?set OUT to the folder for the results}"
mkdir -p "$OUT"
if ! "$PYTHON" -c "import keras, tqdm" 2>/dev/null; then
  "$PYTHON" -m pip install -q --no-index --find-links "$CARRY/wheels" keras==3.15.1 tqdm==4.70.1
fi
SMOKE=()
for arg in "$@"; do [ "$arg" = "--smoke" ] && SMOKE=(1); done
if [ ${#SMOKE[@]} -gt 0 ]; then  # CPU rehearsal: sizes halved (packs of 16 and 32), tiny model
  D32=${D32:-$CARRY/packed16.npz}; D64=${D64:-$CARRY/packed32.npz}
else
  D32=${D32:-$CARRY/packed32.npz}; D64=${D64:-$CARRY/packed64.npz}
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
"$PYTHON" -c "import jax; print('jax', jax.__version__, jax.devices())"
set -o pipefail
"$PYTHON" benchmarks/gpu_jax.py --data32 "$D32" --data64 "$D64" --out "$OUT" "$@" 2>&1 | tee "$OUT/log.txt"
