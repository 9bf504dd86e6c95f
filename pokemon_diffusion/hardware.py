"""What this machine's processor does natively, and what ``mixed_precision: "auto"`` picks from it.

``TrainConfig.mixed_precision`` is ``false`` (float32), ``true`` (mixed precision wherever: a GPU's
mixed_float16, else mixed_bfloat16) or ``"auto"``: mixed precision only where it was measured faster
than float32 for this project's TensorFlow training step (docs/PERFORMANCE.md):

* a CPU with AMX (``amx_bf16``/``amx_tile`` in /proc/cpuinfo): mixed_bfloat16, 1.09–1.14× float32;
* a CPU with AVX512-BF16 but no AMX: mixed_bfloat16, 1.24× float32 at 32² (issue 28, one core);
* a CPU with neither: float32 (bfloat16 is emulated there: 6–7× slower);
* a GPU: float32. Its step is bound by launch overhead at this model's size (H200, Keras' torch
  backend: mixed 0.83–1.0× float32), and the TensorFlow step has not been measured on a GPU;
  ``true`` still gives mixed_float16 there.

The JAX backend's step has not been measured in bfloat16 on a CPU: there "auto" is float32.

``TrainConfig.branches`` is the other CPU choice made here: how many independent branches the
TensorFlow train step splits its batch into (:func:`train_branches`), each branch's convolutions
on its own cores (``threads.configure_threads``).

No TensorFlow or JAX import at module level: each backend's trainer says whether it runs on a GPU;
:func:`tensorflow_gpu` asks TensorFlow (imported then) for the TensorFlow code paths.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
import os
from typing import FrozenSet, Optional, Union

log = logging.getLogger(__name__)

AUTO = "auto"  # the third value of TrainConfig.mixed_precision


@functools.lru_cache(maxsize=None)
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> FrozenSet[str]:
    """The first processor's feature flags (empty where there is no /proc/cpuinfo, e.g. macOS)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def native_bfloat16(flags: FrozenSet[str]) -> str:
    """``"amx"``, ``"avx512_bf16"`` or ``"none"``: this CPU's fastest bfloat16 matrix instructions."""
    if {"amx_bf16", "amx_tile"} <= flags:
        return "amx"
    return "avx512_bf16" if "avx512_bf16" in flags else "none"


_LOGGED: set = set()


def use_mixed_precision(setting: Union[bool, str], gpu: bool, flags: Optional[FrozenSet[str]] = None,
                        backend: str = "tensorflow", quiet: bool = False) -> bool:
    """Whether to train (or sample) in mixed precision for ``mixed_precision = setting``.

    ``true``/``false`` are taken as they are; ``"auto"`` decides from the hardware and the backend
    (module docstring) and logs its choice once per process (at debug level when ``quiet``: a
    sampling command's output stays its own).
    """
    if setting != AUTO:
        return bool(setting)
    if backend != "tensorflow" and not gpu:
        use, why = False, f"{backend} on CPU, bfloat16 not measured there → float32"
    elif gpu:
        use, why = False, "a GPU, mixed precision not measured faster there → float32"
    else:
        native = native_bfloat16(cpu_flags() if flags is None else flags)
        use = native != "none"
        why = {"amx": "bfloat16: AMX found → mixed_bfloat16",
               "avx512_bf16": "bfloat16: AVX512-BF16 found → mixed_bfloat16",
               "none": "no native bfloat16 → float32"}[native]
    if quiet:
        log.debug("mixed_precision auto: %s", why)
    elif why not in _LOGGED:
        _LOGGED.add(why)
        log.info("mixed_precision auto: %s", why)
    return use


def tensorflow_gpu() -> bool:
    """Whether TensorFlow sees a GPU. Lists physical devices only: does not start TensorFlow, so
    thread pools and logical devices can still be set after it."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask: ``taskset`` counts), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity API (macOS)
        return max(1, os.cpu_count() or 1)


def train_branches(setting: Union[int, str], *, gpu: bool, norm: str, distributed: bool = False,
                   cores: Optional[int] = None) -> int:
    """How many branches the train step splits each replica's batch into, for ``branches = setting``.

    The TensorFlow step only: the JAX step is one XLA program, which XLA schedules itself (`train
    --backend jax` refuses a number above 1). A number is taken as it is. ``"auto"`` gives 2 on a TensorFlow CPU step
    with at least two cores, one replica (not ``distributed``) and a norm without batch statistics
    (GroupNorm normalises each example alone, so the update is the whole batch's), else 1. The
    reference's step on a 2-core CPU: 1.2x the one-branch step at 32², 1.1x at 64²
    (docs/PERFORMANCE.md); four branches were slower than two there. BatchNorm keeps one branch
    (each would have its own batch statistics); a GPU or several replicas already split the work.
    """
    if setting != AUTO:
        return int(setting)
    cores = available_cores() if cores is None else cores
    use = 2 if (not gpu and not distributed and norm != "batch" and cores >= 2) else 1
    log.debug("branches auto: %d (%s, %s, norm %s)", use, "a GPU" if gpu else f"{cores} CPU core(s)",
              "several replicas" if distributed else "one replica", norm)  # the run's own log line says it
    return use


def split_guided_pass(*, gpu: bool, cores: Optional[int] = None) -> bool:
    """Whether a guided sampling step runs its conditional and unconditional passes as two
    branches (side by side, one per core) instead of one pass over both halves: on a CPU with at
    least two cores (docs/PERFORMANCE.md). A GPU keeps the one pass: half the kernel launches."""
    return not gpu and (available_cores() if cores is None else cores) >= 2
