"""Training metrics: one JSON object per logged step in ``RUN/metrics.jsonl``, and TensorBoard scalars.

Each line holds ``step``, ``loss`` (mean training loss since the previous line), ``lr``,
``img_per_s``, ``elapsed_s`` (training seconds since the run began, resumes included) and, when the
held-out loss was evaluated at that step, ``val_loss`` (EMA model) and ``val_loss_raw`` (raw weights).

TensorBoard events are written with TensorFlow's own ``tf.summary.write`` and the metadata of
TensorBoard's "scalars" and "images" plugins, so they need no ``tensorboard`` package to be
written (only to be viewed: ``pip install tensorboard; tensorboard --logdir RUN/tensorboard``).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..atomic import atomic_write_text, writing

logger = logging.getLogger(__name__)


def read_metrics(path: os.PathLike | str) -> List[Dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file.

    Unreadable lines (a torn last line, bytes that are not UTF-8, not a JSON record) are skipped;
    when any other than a torn last line is, one warning says how many.
    """
    path = Path(path)
    if not path.is_file():
        return []
    records, bad = [], 0
    lines = path.read_bytes().splitlines()
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)  # bytes: UTF-8 decoded here; bad bytes are a ValueError too
        except ValueError:
            if number < len(lines) and line.strip():  # a torn last line is what a kill leaves: no warning
                bad += 1
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    if bad:
        logger.warning("%s: skipped %d unreadable line(s) (not UTF-8 JSON records)", path, bad)
    return records


def _plugin_metadata(plugin: str) -> bytes:
    """SummaryMetadata naming the TensorBoard plugin that displays a summary."""
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = plugin
    if plugin == "scalars":
        metadata.data_class = summary_pb2.DATA_CLASS_SCALAR
    return metadata.SerializeToString()


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsWriter:
    """Appends records to ``metrics.jsonl`` and mirrors the scalars to TensorBoard.

    Args:
        path: the JSONL file.
        tensorboard_dir: folder for TensorBoard event files, or None for none.
        keep_until: on resume, the step restored: later records (from steps that were redone)
            are dropped so the file has one record per step. None starts a new file.
        enabled: False makes every call a no-op (non-chief workers).
    """

    def __init__(self, path: os.PathLike | str, tensorboard_dir: Optional[os.PathLike | str] = None, *,
                 keep_until: Optional[int] = None, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self._writer = None
        self._tensorboard_dir = tensorboard_dir
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_metrics(self.path) if r["step"] <= keep_until] if keep_until is not None else []
        # rewritten atomically: a crash here must not lose the records of the steps being kept
        atomic_write_text(self.path, "".join(json.dumps(record) + "\n" for record in kept))

    def _tensorboard(self):
        """The event-file writer, created at the first record (not at start-up), or None."""
        if self._writer is None and self._tensorboard_dir is not None:
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(str(self._tensorboard_dir))
            self._tensorboard_dir = None  # once: close() does not reopen it
        return self._writer

    def write(self, record: Dict[str, Any], extra_scalars: Optional[Dict[str, float]] = None) -> None:
        """Append one record (must hold ``step``); ``extra_scalars`` go to TensorBoard only."""
        if not self.enabled:
            return
        record = {k: _clean(v) for k, v in record.items()}
        with writing(self.path), open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
        if self._tensorboard() is not None:
            import tensorflow as tf

            step = int(record["step"])
            metadata = _plugin_metadata("scalars")
            with self._writer.as_default(step=step):
                for key, value in {**record, **(extra_scalars or {})}.items():
                    if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                        tf.summary.write(key, tf.constant(float(value), tf.float32), metadata=metadata)
            self._writer.flush()

    def image(self, name: str, image: Any, step: int) -> None:
        """Write one uint8 ``(H, W, C)`` image to TensorBoard (the "images" plugin's format)."""
        if self.enabled and self._tensorboard() is not None:
            import tensorflow as tf

            image = tf.convert_to_tensor(image, tf.uint8)
            height, width = int(image.shape[0]), int(image.shape[1])
            # the images plugin reads [width, height, png, ...] as strings
            tensor = tf.stack([tf.constant(str(width)), tf.constant(str(height)), tf.image.encode_png(image)])
            with self._writer.as_default(step=step):
                tf.summary.write(name, tensor, metadata=_plugin_metadata("images"))
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
