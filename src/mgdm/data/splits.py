"""The in-memory form every loader returns, its checks, and the processed-dataset file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mgdm.files import FileError, read_npz, write_npz

SPLITS = ("train", "val", "test")


class DataError(FileError):
    """Input data that cannot be used; the message names the file and the problem."""


def check_splits(splits: dict[str, tuple[np.ndarray, np.ndarray]], where: str) -> int:
    """Check images/labels of each split; return the number of classes (labels are 0..K-1)."""
    channels = None
    all_labels = []
    for split in SPLITS:
        if split not in splits:
            raise DataError(f"{where}: split {split!r} missing")
        images, labels = splits[split]
        if images.dtype != np.uint8:
            raise DataError(f"{where}: {split}_images has dtype {images.dtype}; expected uint8")
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise DataError(f"{where}: {split}_images has shape {images.shape}; expected (N, H, W) or (N, H, W, 1|3)")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(f"{where}: {split}_labels has shape {labels.shape} for {len(images)} images")
        if len(images) == 0:
            raise DataError(f"{where}: split {split!r} is empty")
        if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
            raise DataError(f"{where}: {split}_labels must be integers >= 0")
        if channels is not None and images.shape[-1] != channels:
            raise DataError(f"{where}: {split}_images has {images.shape[-1]} channels, other splits {channels}")
        channels = images.shape[-1]
        all_labels.append(labels)
    num_classes = int(max(lab.max() for lab in all_labels)) + 1
    missing = sorted(set(range(num_classes)) - set(np.unique(splits["train"][1]).tolist()))
    if missing:
        raise DataError(f"{where}: classes {missing} have no training image")
    return num_classes


def as_nhwc(images: np.ndarray) -> np.ndarray:
    return images[..., None] if images.ndim == 3 else images


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """Return uint8 NHWC images resized to size x size (bicubic, as MedMNIST made its sizes)."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    mode = "L" if images.shape[-1] == 1 else "RGB"
    out = [np.asarray(Image.fromarray(im.squeeze(-1) if mode == "L" else im, mode)
                      .resize((size, size), Image.BICUBIC)) for im in images]
    return as_nhwc(np.stack(out))


def save_dataset(path: str | Path, splits, num_classes: int, ordinal: bool, name: str) -> None:
    arrays = {}
    for split in SPLITS:
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = splits[split][0], splits[split][1].astype(np.int64)
    write_npz(path, num_classes=np.int64(num_classes), ordinal=np.bool_(ordinal), name=np.str_(name), **arrays)


class Dataset:
    """A processed dataset file: uint8 NHWC images and int labels per split."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.arrays = read_npz(self.path)
        except FileNotFoundError:
            raise DataError(f"{path}: processed dataset not found (run the preprocess stage)") from None
        try:
            self.num_classes = int(self.arrays["num_classes"])
            self.ordinal = bool(self.arrays["ordinal"])
            self.name = str(self.arrays["name"])
            self.channels = self.arrays["train_images"].shape[-1]
            self.image_size = self.arrays["train_images"].shape[1]
        except KeyError as err:
            raise DataError(f"{path}: key {err} missing; not a processed dataset (rerun preprocess)") from None

    def numpy(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        return self.arrays[f"{split}_images"], self.arrays[f"{split}_labels"]

    def tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (images in [-1, 1], NCHW float32; labels int64)."""
        images, labels = self.numpy(split)
        return to_model_range(images), torch.from_numpy(labels).long()


def to_model_range(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)

