"""Class folders of images: <root>/<label>/*.png, labels ordered numerically when they are numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mgdm.data.splits import DataError, as_nhwc

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def class_order(names: list[str]) -> list[str]:
    """Sort class folder names: numerically when all are integers ("2" before "10"), else as text."""
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def load_imagefolder(root: str | Path, size: int, val_fraction: float, test_fraction: float, seed: int = 0):
    """Return ({split: (uint8 NHWC, int64 labels)}, class names); a stratified random split."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected one sub-folder of images per class)")
    classes = class_order([p.name for p in root.iterdir() if p.is_dir()])
    if len(classes) < 2:
        raise DataError(f"{root}: found {len(classes)} class folder(s); need at least 2")
    images, labels = [], []
    mode = None
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in EXTENSIONS)
        if not files:
            raise DataError(f"{root / name}: no images ({', '.join(sorted(EXTENSIONS))})")
        for p in files:
            try:
                im = Image.open(p)
                im.load()
            except (UnidentifiedImageError, OSError) as err:
                raise DataError(f"{p}: cannot read image ({err})") from None
            mode = mode or ("L" if im.mode in ("L", "I", "I;16", "1") else "RGB")
            images.append(np.asarray(im.convert(mode).resize((size, size), Image.BICUBIC)))
            labels.append(label)
    images, labels = as_nhwc(np.stack(images)), np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    parts = {"train": [], "val": [], "test": []}
    for label in range(len(classes)):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_test, n_val = round(len(idx) * test_fraction), round(len(idx) * val_fraction)
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test:n_test + n_val])
        parts["train"].append(idx[n_test + n_val:])
    splits = {s: (images[np.concatenate(i)], labels[np.concatenate(i)]) for s, i in parts.items()}
    return splits, classes
