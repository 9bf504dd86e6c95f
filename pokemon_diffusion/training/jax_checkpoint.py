"""JAX checkpoints: one ``jax-ckpt-<step>.npz`` per checkpoint, holding the whole training state.

The arrays are :meth:`JaxTrainer.state_arrays` (weights, BatchNorm statistics, seed states,
optimizer slots, EMA, named ``part/0000``...) plus a JSON ``meta`` entry (step, stream position,
elapsed seconds); written atomically, the newest ``keep`` kept. NumPy only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from ..atomic import atomic_path
from ..errors import CheckpointError

CHECKPOINT_RE = re.compile(r"^jax-ckpt-(\d+)\.npz$")


def list_checkpoints(folder: Path) -> Dict[int, Path]:
    """``{step: path}`` of the JAX checkpoints in ``folder``."""
    found = {}
    for path in Path(folder).glob("jax-ckpt-*.npz"):
        match = CHECKPOINT_RE.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def latest_step(folder: Path) -> Optional[int]:
    """The step of the newest JAX checkpoint in ``folder``, or None."""
    found = list_checkpoints(folder)
    return max(found) if found else None


def save_checkpoint(folder: Path, step: int, arrays: Dict[str, np.ndarray], meta: Dict[str, Any], keep: int) -> Path:
    """Write ``jax-ckpt-<step>.npz`` atomically, then delete all but the newest ``keep``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"jax-ckpt-{step}.npz"
    with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, meta=np.array(json.dumps(meta)), **arrays)
    for old in sorted(list_checkpoints(folder))[:-keep]:
        list_checkpoints(folder)[old].unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path):
    """``(arrays, meta)`` of a checkpoint. Raises CheckpointError when it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        return arrays, json.loads(str(arrays.pop("meta")))
    except (OSError, KeyError, ValueError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc!r}") from None
