"""A small generated image set for smoke runs: class k is a disc of radius growing with k, on noise.

The classes overlap a little (radius jitter, noise), so classifiers learn them but not perfectly,
which is what the guidance measures need to act on.
"""

from __future__ import annotations

import numpy as np


def make_discs(num_classes: int, channels: int, size: int, n: int, rng: np.random.Generator):
    """Return (uint8 NHWC images, int64 labels) of `n` generated discs."""
    labels = rng.integers(0, num_classes, n)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    radius = size * (0.15 + 0.25 * (labels + rng.normal(0, 0.3, n)) / num_classes)
    cy, cx = (size / 2 + rng.normal(0, size / 10, (2, n))).astype(np.float32)
    dist = np.sqrt((yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2)
    disc = 1 / (1 + np.exp((dist - radius[:, None, None]) * 2))
    tint = rng.uniform(0.6, 1.0, (n, 1, 1, channels))
    images = 0.15 + 0.7 * disc[..., None] * tint + rng.normal(0, 0.05, (n, size, size, channels))
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8), labels.astype(np.int64)


def make_procedural(num_classes: int, channels: int, size: int, n_train: int, n_val: int, n_test: int, seed: int):
    rng = np.random.default_rng(seed)
    return {split: make_discs(num_classes, channels, size, n, rng)
            for split, n in (("train", n_train), ("val", n_val), ("test", n_test))}
