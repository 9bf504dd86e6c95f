"""Stage 3b, train: one run loop, two backends.

``run_loop`` (backend-neutral: :class:`~.run_loop.RunLoop`, the trainer protocol
:class:`~.run_loop.StepTrainer`, run-folder checks, :class:`~.run_loop.TrainResult`) drives a
trainer of either backend:

* TensorFlow: ``loop`` (``train``: tf.data, strategies, ``--init``), ``trainer`` (the compiled
  step), ``checkpoint`` (``tf.train.Checkpoint``), ``distribute`` (strategies, mixed precision),
  ``ema``, ``init_from``;
* JAX: ``jax_loop`` (``train --backend jax``), ``jax_trainer`` (the jitted step), ``jax_data``
  (NumPy batches), ``jax_checkpoint`` (``.npz`` checkpoints).

Shared by both: ``objective`` (loss, null condition, EMA, clipping, AdamW, held-out loss in
``keras.ops``), ``lr_schedule``, ``metrics`` (``metrics.jsonl``, TensorBoard).
"""
