"""Learning-rate schedule: linear warm-up, then cosine decay (or constant) to the last step.

``lr(s) = peak · (s + 1) / warmup`` for ``s < warmup`` (the first update already moves, at
``peak / warmup``), then for cosine ``final + (peak − final) · ½(1 + cos(π · p))`` with
``p = (s − warmup) / (total − warmup)`` clipped to [0, 1] (Loshchilov & Hutter 2017, SGDR eq. 5
without restarts). ``s`` is the optimizer's update count, so a resumed run continues the curve.
"""

from __future__ import annotations

import math
from typing import Any, Dict

import keras
from keras import ops

LR_SCHEDULES = ("cosine", "constant")


@keras.saving.register_keras_serializable(package="pokemon_diffusion")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak_lr`` over ``warmup_steps``, then cosine decay to ``final_lr`` at ``total_steps``.

    Args:
        peak_lr: the learning rate reached at the end of warm-up (> 0).
        total_steps: the step at which the cosine reaches ``final_lr`` (>= 1); later steps stay there.
        warmup_steps: steps of linear warm-up (0 = none).
        final_lr: the learning rate at ``total_steps`` (0 <= final_lr <= peak_lr).
        decay: "cosine", or "constant" (hold ``peak_lr`` after warm-up).

    Raises:
        ValueError: an argument is out of range.

    Example:
        >>> lr = WarmupCosineDecay(1e-3, total_steps=100, warmup_steps=10)
        >>> [round(float(lr(s)), 6) for s in (0, 9, 55, 100)]
        [0.0001, 0.001, 0.0005, 0.0]
    """

    def __init__(self, peak_lr: float, total_steps: int, warmup_steps: int = 0, final_lr: float = 0.0,
                 decay: str = "cosine") -> None:
        if not peak_lr > 0:
            raise ValueError(f"WarmupCosineDecay.peak_lr: got {peak_lr!r}; allowed: a positive number")
        if int(total_steps) < 1:
            raise ValueError(f"WarmupCosineDecay.total_steps: got {total_steps!r}; allowed: an integer >= 1")
        if int(warmup_steps) < 0:
            raise ValueError(f"WarmupCosineDecay.warmup_steps: got {warmup_steps!r}; allowed: an integer >= 0")
        if not 0.0 <= final_lr <= peak_lr:
            raise ValueError(f"WarmupCosineDecay.final_lr: got {final_lr!r}; allowed: 0 to peak_lr ({peak_lr})")
        if decay not in LR_SCHEDULES:
            raise ValueError(f"WarmupCosineDecay.decay: got {decay!r}; allowed: {' | '.join(LR_SCHEDULES)}")
        self.peak_lr = float(peak_lr)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.final_lr = float(final_lr)
        self.decay = decay

    def __call__(self, step: Any) -> Any:
        # keras.ops, not tf: the JAX trainer evaluates the schedule inside its jitted step
        step = ops.cast(step, "float32")
        peak = ops.convert_to_tensor(self.peak_lr, "float32")
        warm = peak * (step + 1.0) / float(max(self.warmup_steps, 1))
        if self.decay == "constant":
            after = peak
        else:
            span = float(max(self.total_steps - self.warmup_steps, 1))
            progress = ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
            after = self.final_lr + (self.peak_lr - self.final_lr) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        return ops.where(step < self.warmup_steps, warm, after)

    def get_config(self) -> Dict[str, Any]:
        return {"peak_lr": self.peak_lr, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "final_lr": self.final_lr, "decay": self.decay}
