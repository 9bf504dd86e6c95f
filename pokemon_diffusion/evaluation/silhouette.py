"""Shape statistics of the figures: is a sample a blob or a creature-like silhouette?

Each image's figure is its pixels off the white background (``captions.figure_mask``, the mask
the colour words use). Two numbers per image:

* **area**: the figure's share of the image. The Pokédex artworks are cropped to the figure, so
  a real one covers 44 % of its 32² frame on average; a frame-filling blob covers more.
* **solidity**: the largest (8-connected) figure part's pixels over the pixels of its convex
  hull (as in scikit-image's ``regionprops``; holes count as gaps). Limbs, ears and tails leave concave gaps: real figures
  average ~0.80, a compact blob ~0.9 and a disc 1.0.

The report gives both means for the samples and the real images, and the 1-D Wasserstein
distance between the two distributions of each (0 = the same distribution). They measure the
outline, not identity or detail: a model can match them with wrong creatures, but not with blobs.
"""

from __future__ import annotations

from typing import Any, Dict

import cv2
import numpy as np
from scipy.stats import wasserstein_distance

from ..collection.captions import figure_mask

FEATURES = ("area", "solidity")


def silhouette_features(images_uint8: np.ndarray) -> np.ndarray:
    """``(N, 2)`` float64: each image's figure area share and its largest part's solidity.

    Args:
        images_uint8: (N, H, W, 3) uint8 RGB images on white.

    An image with no figure pixels has area 0 and solidity 1 (nothing concave); when the whole
    image is near-white, ``figure_mask`` calls all of it figure (area 1, solidity 1).
    """
    images = np.asarray(images_uint8)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images: got {images.dtype} {images.shape}; allowed: uint8 (N, H, W, 3)")
    out = np.empty((len(images), 2))
    for i, image in enumerate(images):
        mask = figure_mask(image).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        out[i, 0] = mask.mean()
        if count < 2:  # no figure at all
            out[i, 1] = 1.0
            continue
        part = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
        contours, _ = cv2.findContours(part, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        hull = np.zeros_like(part)
        cv2.fillConvexPoly(hull, cv2.convexHull(np.concatenate(contours)), 1)  # the hull's pixels, boundary included
        out[i, 1] = part.sum() / max(int(hull.sum()), 1)
    return out


def silhouette_report(generated_uint8: np.ndarray, real_features: np.ndarray) -> Dict[str, Any]:
    """Means of each feature for the samples and the real images, and the Wasserstein-1 distance.

    Args:
        generated_uint8: (N, H, W, 3) uint8 samples.
        real_features: :func:`silhouette_features` of the real images (computed once per evaluation).
    """
    gen, real = silhouette_features(generated_uint8), np.asarray(real_features, np.float64)
    return {
        "generated": {name: float(gen[:, j].mean()) for j, name in enumerate(FEATURES)},
        "real": {name: float(real[:, j].mean()) for j, name in enumerate(FEATURES)},
        "wasserstein": {name: float(wasserstein_distance(gen[:, j], real[:, j])) for j, name in enumerate(FEATURES)},
        "num_generated": int(len(gen)),
        "num_real": int(len(real)),
    }
