"""Evaluation of a trained run: sample quality and conditioning metrics.

- :mod:`.metrics`: pure NumPy/SciPy maths (FID, KID, colour statistics, nearest-neighbour accuracy).
- :mod:`.features`: feature extractors (InceptionV3 pool features, download-free pixel features).
- :mod:`.evaluate`: :func:`evaluate` ties a run, a dataset and a sampler into one JSON report.

Importing this package is cheap; TensorFlow loads only when a feature extractor or
:func:`evaluate` runs.
"""
