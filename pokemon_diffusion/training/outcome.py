"""What both training loops (TensorFlow ``loop.py``, JAX ``jax_loop.py``) share, framework-free:
how a run ended (:class:`TrainResult`), the divergence error, and stop-on-signal handling.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

from ..errors import PokemonDiffusionError

logger = logging.getLogger(__name__)


class TrainingDivergedError(PokemonDiffusionError):
    """The training loss (or gradient) became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    """How a call to :func:`train` ended.

    Attributes:
        run_dir: the run folder.
        step: training steps done (resumes included).
        total_steps: the step budget of the run.
        stopped: "completed" | "time_limit" | "interrupted" (SIGINT/SIGTERM) | "callback".
        loss: mean training loss over the last logged interval.
        val_loss: the last held-out loss of the EMA model (None without a validation split).
        elapsed_s: training seconds, resumes included.
        images_per_s: training throughput of this call (tracing excluded), or None.
        checkpoint: path prefix of the last checkpoint written.
        model_path: the saved EMA model (``RUN/ema_model.keras``).
    """

    run_dir: Path
    step: int
    total_steps: int
    stopped: str
    loss: Optional[float]
    val_loss: Optional[float]
    elapsed_s: float
    images_per_s: Optional[float]
    checkpoint: Optional[str]
    model_path: Optional[Path]


@contextlib.contextmanager
def stop_on_signals(enabled: bool) -> Iterator[Dict[str, Optional[str]]]:
    """Turn the first SIGINT/SIGTERM into a request to stop after the current step (and checkpoint).

    A second signal of the same kind gets the previous handler (Ctrl-C twice aborts at once).
    """
    flag: Dict[str, Optional[str]] = {"signal": None}
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous: Dict[int, Any] = {}

    def handler(signum, frame):
        flag["signal"] = signal.Signals(signum).name
        logger.warning("%s: stopping after this step and saving a checkpoint (send it again to abort now)",
                       flag["signal"])
        signal.signal(signum, previous[signum])

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def progress_postfix(loss: Optional[float], img_per_s: Optional[float], val_loss: Optional[float]) -> Dict[str, str]:
    """The progress bar's loss / img/s / held-out loss fields (both loops show the same)."""
    shown = {"loss": f"{loss:.4f}" if loss is not None else "-"}
    if img_per_s:
        shown["img/s"] = f"{img_per_s:.1f}"
    if val_loss is not None:
        shown["val"] = f"{val_loss:.4f}"
    return shown
