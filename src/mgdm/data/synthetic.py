"""Synthetic sets as the sample stage writes them: uint8 images and labels, checked against the real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mgdm.data.splits import DataError, Dataset
from mgdm.files import read_npz


def load_synthetic(path: str | Path, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Return (uint8 NHWC images, labels) of a synthetic set, checked against the real dataset."""
    try:
        arrays = read_npz(path)
        images, labels = arrays["images"], arrays["labels"]
    except FileNotFoundError:
        raise DataError(f"{path}: synthetic set not found (run the sample stage)") from None
    except KeyError as err:
        raise DataError(f"{path}: key {err} missing; expected 'images' and 'labels'") from None
    real = dataset.numpy("train")[0]
    if images.dtype != np.uint8 or images.shape[1:] != real.shape[1:]:
        raise DataError(f"{path}: images {images.shape} {images.dtype} do not match the dataset's "
                        f"{real.shape[1:]} uint8")
    if labels.min() < 0 or labels.max() >= dataset.num_classes:
        raise DataError(f"{path}: labels outside 0..{dataset.num_classes - 1}")
    return images, labels.astype(np.int64)
