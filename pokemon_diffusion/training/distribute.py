"""Where training runs: the ``tf.distribute`` strategy, the mixed-precision policy and the CPU's threads.

Strategies (``TrainConfig.strategy``):
    auto         MirroredStrategy over all GPUs when there is more than one, else the default
                 (single-device) strategy.
    one          OneDeviceStrategy on the first GPU, else the CPU.
    mirrored     MirroredStrategy over all GPUs, or over all logical CPU devices when there is no GPU.
    multiworker  MultiWorkerMirroredStrategy (reads TF_CONFIG; without it, one worker).

Mixed precision: ``mixed_float16`` on a GPU (with a ``LossScaleOptimizer``, see trainer.py) and
``mixed_bfloat16`` on CPU, where float16 has no fast kernels and bfloat16's exponent range makes
loss scaling unnecessary; ``"auto"`` only where it is faster (``hardware.py``).

Branches (``TrainConfig.branches``): the step splits each replica's batch into independent
branches whose forward and backward passes TensorFlow runs side by side, each op on its share of
the cores (``threads.configure_threads``); their gradients are summed before one update. Unlike
replicas, the branches share one copy of the variables and need no all-reduce.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Tuple

import tensorflow as tf

from ..config import STRATEGIES, TrainConfig
from ..errors import ConfigError
from ..hardware import tensorflow_gpu, train_branches, use_mixed_precision

logger = logging.getLogger(__name__)

# (kind, devices) -> strategy: process-wide, like the devices and collective keys (see make_strategy)
_CREATED: Dict[Tuple[str, ...], tf.distribute.Strategy] = {}


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The ``tf.distribute.Strategy`` for a ``TrainConfig.strategy`` name (see the module docstring).

    Strategies are created once per process and name, then reused: two MirroredStrategy instances
    over the same devices allocate the same collective-op keys, and the second one's all-reduces
    fail against the first one's cached shapes (seen with TF 2.21 when ``train`` ran twice).

    Raises:
        ConfigError: ``name`` is not one of auto | one | mirrored | multiworker.
    """
    if name not in STRATEGIES:
        raise ConfigError(f"strategy: got {name!r}; allowed: {' | '.join(STRATEGIES)}")
    if name == "multiworker":
        return _multiworker()
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if name == "auto" and len(gpus) <= 1:
        return tf.distribute.get_strategy()  # the default strategy: no distribution overhead
    if name in ("auto", "mirrored"):
        devices = tuple(gpus or [d.name for d in tf.config.list_logical_devices("CPU")])
        key = ("mirrored",) + devices
        factory = lambda: tf.distribute.MirroredStrategy(list(devices))  # noqa: E731
    else:
        key = ("one", gpus[0] if gpus else "/cpu:0")
        factory = lambda: tf.distribute.OneDeviceStrategy(key[1])  # noqa: E731
    if key not in _CREATED:
        _CREATED[key] = factory()
        logger.info("strategy %s: %s with %d replica(s)", name, type(_CREATED[key]).__name__,
                    _CREATED[key].num_replicas_in_sync)
    return _CREATED[key]


def split_cpu(replicas: int) -> None:
    """Split the CPU into ``replicas`` logical devices, for ``strategy = "mirrored"`` on one CPU.

    Must run before TensorFlow's context starts (before any tensor, model or device listing);
    a second call with the same count is a no-op.

    Raises:
        ConfigError: ``replicas`` < 1, or TensorFlow has already started with another split.
    """
    if int(replicas) < 1:
        raise ConfigError(f"split_cpu: got {replicas!r}; allowed: an integer >= 1")
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(replicas))
    except RuntimeError:
        if len(tf.config.list_logical_devices("CPU")) != int(replicas):
            raise ConfigError(f"split_cpu: TensorFlow has already started with "
                              f"{len(tf.config.list_logical_devices('CPU'))} CPU device(s); split before it starts") from None


def step_branches(train: TrainConfig, norm: str, replicas: Optional[int] = None) -> int:
    """``train.branches`` resolved for this machine (``hardware.train_branches``) on TensorFlow.

    ``replicas``: the strategy's, once it exists; None = judged from ``train.strategy`` (before it
    exists: only "mirrored" and "multiworker" can give several replicas on a CPU).
    """
    distributed = train.strategy in ("mirrored", "multiworker") if replicas is None else replicas > 1
    return train_branches(train.branches, gpu=tensorflow_gpu(), norm=norm, distributed=distributed)


def _multiworker() -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy from TF_CONFIG, created before anything else touches TensorFlow.

    It configures the collective ops of the eager context, which TensorFlow allows only before the
    context is initialised (listing devices, creating a tensor or a model all initialise it):
    afterwards it raises ``RuntimeError: Collective ops must be configured at program startup``.
    """
    key = ("multiworker",)
    if key not in _CREATED:
        try:
            _CREATED[key] = tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as exc:
            if "program startup" not in str(exc):
                raise
            raise ConfigError("strategy: multiworker must be created before TensorFlow starts in this process "
                              "(call make_strategy('multiworker') first, before any model or tensor)") from None
        resolver = _CREATED[key].cluster_resolver
        logger.info("strategy multiworker: %s task %s of %s, %d replica(s) in all",
                    getattr(resolver, "task_type", None), getattr(resolver, "task_id", None),
                    resolver.cluster_spec().as_dict() if resolver and resolver.cluster_spec() else "no cluster",
                    _CREATED[key].num_replicas_in_sync)
    return _CREATED[key]


def local_tf_configs(workers: int) -> List[str]:
    """TF_CONFIG values for ``workers`` worker processes on this machine (127.0.0.1, free ports),
    one per worker in task order: what ``--strategy multiworker`` reads in each process."""
    import json
    import socket

    sockets = [socket.socket() for _ in range(workers)]
    for s in sockets:  # all bound at once, so that the ports differ
        s.bind(("127.0.0.1", 0))
    cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]}
    for s in sockets:
        s.close()
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(workers)]


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run folder (always, except on non-chief multi-worker tasks)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if task_type is None:
        return True
    task_id = getattr(resolver, "task_id", 0) or 0
    has_chief = "chief" in (resolver.cluster_spec().as_dict() if resolver.cluster_spec() else {})
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief)


def precision_policy(mixed_precision) -> str:
    """The Keras dtype policy name for ``TrainConfig.mixed_precision`` (false | true | "auto").

    float32, or mixed precision: mixed_float16 on a GPU, mixed_bfloat16 on CPU; "auto" uses it only
    where it was measured faster (``hardware.use_mixed_precision``).
    """
    gpu = tensorflow_gpu()
    if not use_mixed_precision(mixed_precision, gpu):
        return "float32"
    return "mixed_float16" if gpu else "mixed_bfloat16"
