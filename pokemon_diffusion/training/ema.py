"""Exponential moving average of a model's weights, BatchNorm moving statistics included.

The shadow is a second Keras model of the same architecture, so it can be called, checkpointed
and saved like the raw one. Every variable is averaged, trainable or not: BatchNorm's moving
mean/variance of the EMA model must describe the EMA weights' activations, not lag behind them.
Integer variables (Keras dropout seed states) are copied, since averaging them means nothing.

The decay warms up as ``min(decay, (1 + n) / (10 + n))`` for the n-th update (n = 0, 1, ...), as in
diffusers' ``EMAModel``: a fixed 0.999 from step 0 keeps ~37 % of the random initialisation after
1,000 steps (0.999^1000), and the EMA model samples noise for most of a short run.
"""

from __future__ import annotations

from typing import Any, List, Tuple

import tensorflow as tf

from . import objective


def ema_decay(num_updates: Any, max_decay: float) -> tf.Tensor:
    """The decay of update number ``num_updates`` (0-based): ``min(max_decay, (1 + n) / (10 + n))``.

    Example:
        >>> [round(float(ema_decay(n, 0.999)), 4) for n in (0, 10, 10_000)]
        [0.1, 0.55, 0.999]
    """
    return objective.ema_decay(num_updates, max_decay)  # shared with the JAX trainer


class ExponentialMovingAverage:
    """Keeps ``ema_model``'s variables an exponential moving average of ``model``'s.

    Args:
        model: the model being trained.
        ema_model: a model of the same architecture (same variables in the same order); its
            variables are overwritten with ``model``'s on construction.
        decay: the maximum decay (0 <= decay < 1); 0 makes the EMA a copy.

    Raises:
        ValueError: the two models' variables differ in number, shape or dtype, or ``decay`` is out of range.
    """

    def __init__(self, model: Any, ema_model: Any, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ExponentialMovingAverage.decay: got {decay!r}; allowed: 0 <= decay < 1")
        self.model = model
        self.ema_model = ema_model
        self.decay = float(decay)
        self.averaged, self.copied = _pair_variables(model.variables, ema_model.variables)
        self.copy_from_model()

    def copy_from_model(self) -> None:
        """Set the shadow to the model's current values (the start of training)."""
        for shadow, source in self.averaged + self.copied:
            shadow.assign(source)

    def update(self, num_updates: Any) -> tf.Tensor:
        """One EMA step: ``shadow ← d·shadow + (1 − d)·value`` with ``d = ema_decay(num_updates, decay)``.

        Call it after the optimizer step, in cross-replica context under a ``tf.distribute``
        strategy (the model's variables are then identical on every replica).

        Returns:
            The decay used, a float32 scalar.
        """
        d = ema_decay(num_updates, self.decay)
        for shadow, source in self.averaged:
            shadow.assign(objective.ema_update(shadow, source, d))
        for shadow, source in self.copied:
            shadow.assign(source)
        return d


def _pair_variables(source: List[Any], shadow: List[Any]) -> Tuple[List[Tuple[Any, Any]], List[Tuple[Any, Any]]]:
    """Split matching (shadow, source) pairs into floating-point (averaged) and other (copied)."""
    if len(source) != len(shadow):
        raise ValueError(f"EMA model has {len(shadow)} variables but the model has {len(source)}; "
                         "allowed: two builds of the same architecture")
    averaged, copied = [], []
    for s, v in zip(shadow, source):
        if tuple(s.shape) != tuple(v.shape) or str(s.dtype) != str(v.dtype):
            raise ValueError(f"EMA variable {s.path} {tuple(s.shape)} {s.dtype} does not match "
                             f"{v.path} {tuple(v.shape)} {v.dtype}")
        is_float = tf.as_dtype(str(v.dtype)).is_floating
        (averaged if is_float else copied).append((s, v))
    return averaged, copied
