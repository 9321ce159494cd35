"""MedMNIST .npz files: official keys, optional md5 pin, download when absent and online."""

from __future__ import annotations

import hashlib
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from mgdm.data.splits import SPLITS, DataError, as_nhwc
from mgdm.files import atomic_path, new_folders, remove_empty

KEYS = tuple(f"{s}_{k}" for s in SPLITS for k in ("images", "labels"))


def md5sum(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, path: Path, md5: str | None) -> None:
    """Fetch `url` to `path`, checking its md5 before the file takes its final name."""
    print(f"downloading {url} -> {path}")
    made = new_folders([path])  # a mistyped data folder is not left behind by a failed download
    try:
        with atomic_path(path) as tmp:
            try:
                urllib.request.urlretrieve(url, tmp)
            except OSError as err:
                raise DataError(f"{path}: not found locally and download from {url} failed ({err}); "
                                "put the file there or set MGDM_DATA_DIR / data_dir to its folder") from None
            if md5 and md5sum(tmp) != md5:
                raise DataError(f"{url}: downloaded file has md5 {md5sum(tmp)}, expected {md5}")
    except BaseException:
        remove_empty(made)
        raise


def load_medmnist(path: str | Path, md5: str | None = None, url: str | None = None):
    """Return {split: (uint8 NHWC images, int64 labels)} from a MedMNIST-format .npz."""
    path = Path(path)
    if not path.exists():
        if not url:
            raise DataError(f"{path}: file not found and no url to download it from; "
                            "set MGDM_DATA_DIR or data_dir in params.yaml to the folder holding it")
        download(url, path, md5)
    if md5 and (actual := md5sum(path)) != md5:
        raise DataError(f"{path}: md5 {actual} differs from the expected {md5} "
                        "(a different or corrupt copy; fix the file or the md5 in params.yaml)")
    try:
        with np.load(path) as f:
            missing = [k for k in KEYS if k not in f.files]
            if missing:
                raise DataError(f"{path}: keys {missing} missing; expected the MedMNIST keys {list(KEYS)}")
            arrays = {k: f[k] for k in KEYS}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"{path}: not a readable .npz file ({err})") from None
    for s in SPLITS:
        labels = arrays[f"{s}_labels"]
        if not np.issubdtype(labels.dtype, np.number) or np.any(labels != np.round(labels)):
            raise DataError(f"{path}: {s}_labels are not whole numbers (e.g. {labels.reshape(-1)[:3].tolist()}); "
                            "labels must be class indices")
    return {s: (as_nhwc(arrays[f"{s}_images"]), arrays[f"{s}_labels"].reshape(-1).astype(np.int64))
            for s in SPLITS}
