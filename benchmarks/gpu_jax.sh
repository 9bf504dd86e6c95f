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
SITE=/tmp/pokemon_diffusion_site
if ! "$PYTHON" -c "import keras, tqdm" 2>/dev/null; then
  if ! "$PYTHON" -m pip install -q --no-index --find-links "$CARRY/wheels" keras==3.15.1 tqdm==4.70.1; then
    # no pip (or no writable site-packages): unpack the wheels (this Python's optree) onto PYTHONPATH
    "$PYTHON" - "$CARRY/wheels" "$SITE" <<'PY'
import glob, sys, zipfile
tag = "cp%d%d" % sys.version_info[:2]
for wheel in glob.glob(sys.argv[1] + "/*.whl"):
    if "-cp3" not in wheel or "-" + tag + "-" in wheel:
        zipfile.ZipFile(wheel).extractall(sys.argv[2])
PY
  fi
fi
SMOKE=()
for arg in "$@"; do [ "$arg" = "--smoke" ] && SMOKE=(1); done
if [ ${#SMOKE[@]} -gt 0 ]; then  # CPU rehearsal: sizes halved (packs of 16 and 32), tiny model
  D32=${D32:-$CARRY/packed16.npz}; D64=${D64:-$CARRY/packed32.npz}
else
  D32=${D32:-$CARRY/packed32.npz}; D64=${D64:-$CARRY/packed64.npz}
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 PYTHONPATH=$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}
"$PYTHON" -c "import jax; print('jax', jax.__version__, jax.devices())"
set -o pipefail
"$PYTHON" benchmarks/gpu_jax.py --data32 "$D32" --data64 "$D64" --out "$OUT" "$@" 2>&1 | tee "$OUT/log.txt"
