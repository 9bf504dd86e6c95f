"""TensorFlow's CPU thread pools, set for work that runs as independent branches.

On a CPU, one op on one core wastes less than one op spread over several (no hand-offs between
threads), so two independent halves of the work, each op on its own share of the cores, beat the
same work done op by op on all of them: the train step's branches (``TrainConfig.branches``,
1.3× at 32² on 2 cores) and a guided sampling step's conditional and unconditional passes
(``hardware.split_guided_pass``, 1.8× for one 32² image). Measured: docs/PERFORMANCE.md.

Thread pools are fixed when TensorFlow starts (its first tensor, model or logical device), so
these run first: ``train`` (``training/loop.py``) from its branches, and the ``sample``,
``evaluate`` and ``app`` commands (``cli.py``) for sampling. In your own script, call
:func:`configure_threads` (or :func:`configure_for_sampling`) before anything else uses TensorFlow.
"""

from __future__ import annotations

import logging
import os

import tensorflow as tf

from .hardware import available_cores, split_guided_pass, tensorflow_gpu

logger = logging.getLogger(__name__)


def configure_threads(branches: int) -> bool:
    """Give each of ``branches`` independent branches its own cores: ``cores // branches`` threads
    per op (intra-op) and ``branches`` ops at a time (inter-op), so the branches run side by side
    instead of each op spreading over every core. Nothing for one branch. Logged at debug level:
    a command's output stays its own (``train`` names its branches in its first line).

    Acts only before TensorFlow starts, and leaves pools set by ``TF_NUM_INTRAOP_THREADS`` /
    ``TF_NUM_INTEROP_THREADS`` alone.

    Returns:
        Whether the pools were set.
    """
    if branches <= 1 or {"TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"} & set(os.environ):
        return False
    intra = max(1, available_cores() // branches)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(branches)
    except RuntimeError:  # TensorFlow has started: its pools stay (the branches still run, less apart)
        logger.debug("thread pools already fixed; %d branches run on them", branches)
        return False
    logger.debug("threads: %d per op, %d ops at a time (%d branches)", intra, branches, branches)
    return True


def configure_for_sampling() -> bool:
    """The pools for sampling: two branches where a guided step splits its passes (a CPU with two
    or more cores), else TensorFlow's own. Returns whether the pools were set."""
    return configure_threads(2 if split_guided_pass(gpu=tensorflow_gpu()) else 1)
