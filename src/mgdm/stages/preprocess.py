"""Stage `preprocess`: raw data (MedMNIST .npz, image folder, or generated) -> one checked .npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mgdm.config import DatasetSpec
from mgdm.data.imagefolder import load_imagefolder
from mgdm.data.medmnist import load_medmnist
from mgdm.data.procedural import make_procedural
from mgdm.data.splits import SPLITS, DataError, check_splits, resize, save_dataset
from mgdm.files import write_image_grid
from mgdm.stages import StageResult


def load_raw(name: str, spec: DatasetSpec, data_dir: str | None, seed: int = 0):
    """Return ({split: (uint8 NHWC, labels)}, where) for one dataset spec."""
    if spec.source == "procedural":
        return make_procedural(spec.num_classes, spec.channels, spec.image_size,
                               spec.n_train, spec.n_val, spec.n_test, seed), f"procedural:{name}"
    if data_dir and Path(data_dir).exists() and not Path(data_dir).is_dir():
        raise DataError(f"{data_dir}: the data folder (MGDM_DATA_DIR or data_dir in params.yaml) is a file; "
                        "set it to the folder holding the file")
    if spec.source == "medmnist":
        if not data_dir:
            raise DataError(f"dataset {name!r}: no data folder; set MGDM_DATA_DIR or data_dir in params.yaml")
        path = Path(data_dir) / spec.file
        return load_medmnist(path, spec.md5, spec.url), str(path)
    root = Path(spec.path) if Path(spec.path).is_absolute() or not data_dir else Path(data_dir) / spec.path
    splits, _ = load_imagefolder(root, spec.image_size, spec.val_fraction, spec.test_fraction, seed)
    return splits, str(root)


def run(name: str, spec: DatasetSpec, data_dir: str | None, out_dir: str | Path, seed: int = 0) -> dict:
    """Write <out_dir>/dataset.npz and preview.png; return the dataset summary."""
    out_dir = Path(out_dir)
    splits, where = load_raw(name, spec, data_dir, seed)
    num_classes = check_splits(splits, where)
    splits = {s: (resize(im, spec.image_size), lab) for s, (im, lab) in splits.items()}
    summary = {
        "dataset": name, "source": where, "num_classes": num_classes, "ordinal": spec.ordinal,
        "image_size": spec.image_size, "channels": int(splits["train"][0].shape[-1]),
        **{f"n_{s}": int(len(splits[s][1])) for s in SPLITS},
        "train_class_counts": np.bincount(splits["train"][1], minlength=num_classes).tolist(),
    }
    save_dataset(out_dir / "dataset.npz", splits, num_classes, spec.ordinal, name)
    write_image_grid(out_dir / "preview.png", *splits["train"])
    return {"metrics": summary}


def main(config, plan, a) -> StageResult:
    out = plan.paths("preprocess", dataset=a.dataset)
    result = run(a.dataset, config.dataset(a.dataset), config.data_dir(), Path(out["dataset.npz"]).parent)
    return StageResult.of(result, [out["preview.png"]])
