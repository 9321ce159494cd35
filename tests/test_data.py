"""Data loading: MedMNIST files, image folders, generated sets, and clear errors on bad input."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, run
from mgdm.data.imagefolder import class_order, load_imagefolder
from mgdm.data.medmnist import load_medmnist, md5sum
from mgdm.data.procedural import make_procedural
from mgdm.data.splits import DataError, check_splits


def medmnist_file(path: Path, drop: str | None = None, colour: bool = True, n=(20, 5, 5)):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, k in zip(("train", "val", "test"), n):
        shape = (k, 28, 28, 3) if colour else (k, 28, 28)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(k) % 3).reshape(-1, 1)
    arrays.pop(drop, None)
    np.savez(path, **arrays)
    return path


def test_medmnist_layout_is_read(tmp_path):
    splits = load_medmnist(medmnist_file(tmp_path / "x.npz", colour=False))
    assert splits["train"][0].shape == (20, 28, 28, 1) and splits["train"][1].shape == (20,)
    assert check_splits(splits, "x.npz") == 3


def test_missing_key_names_the_file_and_the_key(tmp_path):
    path = medmnist_file(tmp_path / "x.npz", drop="val_labels")
    with pytest.raises(DataError, match=r"x\.npz: keys \['val_labels'\] missing"):
        load_medmnist(path)


def test_md5_mismatch_and_corrupt_file_are_refused(tmp_path):
    path = medmnist_file(tmp_path / "x.npz")
    with pytest.raises(DataError, match="md5"):
        load_medmnist(path, md5="0" * 32)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="bad.npz: not a readable .npz"):
        load_medmnist(bad)


def test_absent_file_without_url_says_where_to_put_it(tmp_path):
    with pytest.raises(DataError, match="MGDM_DATA_DIR"):
        load_medmnist(tmp_path / "absent.npz")


def test_a_failed_download_leaves_no_folder_behind(tmp_path):
    """A mistyped MGDM_DATA_DIR is not created by a download that fails (offline, or a wrong md5)."""
    source = medmnist_file(tmp_path / "source.npz")
    with pytest.raises(DataError, match=r"typo/x\.npz: not found locally and download from file:.* failed"):
        load_medmnist(tmp_path / "typo" / "x.npz", url=(tmp_path / "absent.npz").as_uri())
    with pytest.raises(DataError, match="downloaded file has md5"):
        load_medmnist(tmp_path / "typo" / "deeper" / "x.npz", md5="0" * 32, url=source.as_uri())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source.npz"]
    load_medmnist(tmp_path / "fresh" / "x.npz", md5=md5sum(source), url=source.as_uri())  # the folder made
    assert md5sum(tmp_path / "fresh" / "x.npz") == md5sum(source)


def test_a_data_folder_that_is_a_file_is_named():
    from mgdm.config import load
    from mgdm.stages.preprocess import load_raw

    spec = load(ROOT / "params.yaml", "cpu").dataset("retinamnist")
    with pytest.raises(DataError, match=r"params.yaml: the data folder \(MGDM_DATA_DIR or data_dir in params.yaml\) "
                                        "is a file"):
        load_raw("retinamnist", spec, str(ROOT / "params.yaml"))


def test_class_without_training_images_is_refused():
    splits = make_procedural(3, 1, 8, 30, 10, 10, seed=0)
    images, labels = splits["train"]
    splits["train"] = (images[labels != 1], labels[labels != 1])
    with pytest.raises(DataError, match=r"classes \[1\] have no training image"):
        check_splits(splits, "here")


def test_numeric_class_folders_sort_as_numbers(tmp_path):
    assert class_order(["10", "2", "1"]) == ["1", "2", "10"]
    for label in ("2", "10"):
        (tmp_path / label).mkdir()
        for i in range(5):
            Image.fromarray(np.full((12, 12), int(label) * 10, np.uint8)).save(tmp_path / label / f"{i}.png")
    splits, classes = load_imagefolder(tmp_path, 8, 0.2, 0.2)
    assert classes == ["2", "10"]
    images, labels = splits["train"]
    assert images.shape[1:] == (8, 8, 1)
    assert set(images[labels == 0].mean(axis=(1, 2, 3)).round()) == {20}  # label 0 is folder "2"


def test_unreadable_image_is_named(tmp_path):
    for label in ("0", "1"):
        (tmp_path / label).mkdir()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / label / "a.png")
    (tmp_path / "1" / "broken.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="broken.png: cannot read image"):
        load_imagefolder(tmp_path, 8, 0.0, 0.0)


def test_preprocess_cli_fails_cleanly_on_a_bad_file(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    medmnist_file(data / "retinamnist.npz", drop="train_images")
    params = (ROOT / "params.yaml").read_text().replace("data_dir: null", f"data_dir: {data}")
    params = params.replace("md5: bd4c0672f1bba3e3a89f0e4e876791e4", "md5: null")
    (tmp_path / "params.yaml").write_text(params)
    res = run(["mgdm", "preprocess", "--profile", "cpu", "--dataset", "retinamnist", "--no-mlflow"], tmp_path,
              check=False)
    assert res.returncode == 2
    assert "retinamnist.npz: keys ['train_images'] missing" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "results").exists()  # no output, nor the folders made for them


@pytest.mark.skipif(not os.environ.get("MGDM_DATA_DIR"), reason="MGDM_DATA_DIR not set")
def test_official_retinamnist_matches_its_md5_and_counts():
    path = Path(os.environ["MGDM_DATA_DIR"]) / "retinamnist.npz"
    splits = load_medmnist(path, md5="bd4c0672f1bba3e3a89f0e4e876791e4")
    assert [len(splits[s][1]) for s in ("train", "val", "test")] == [1080, 120, 400]
    assert np.bincount(splits["train"][1]).tolist() == [486, 128, 206, 194, 66]
    assert md5sum(path) == "bd4c0672f1bba3e3a89f0e4e876791e4"


def test_fractional_labels_are_refused_and_whole_floats_accepted(tmp_path):
    path = medmnist_file(tmp_path / "x.npz")
    arrays = dict(np.load(path))
    arrays["train_labels"] = arrays["train_labels"] + 0.5
    np.savez(tmp_path / "half.npz", **arrays)
    with pytest.raises(DataError, match=r"half\.npz: train_labels are not whole numbers"):
        load_medmnist(tmp_path / "half.npz")
    arrays["train_labels"] = arrays["train_labels"] - 0.5  # 0.0, 1.0, 2.0: class indices stored as floats
    np.savez(tmp_path / "whole.npz", **arrays)
    assert load_medmnist(tmp_path / "whole.npz")["train"][1].dtype == np.int64


class Planted:
    """A pickle that would leave a file behind if it were ever unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def bad_checkpoint(kind: str, path: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    from mgdm.guidance.noisy_classifier import NoisyClassifier

    good = {k: v.contiguous() for k, v in NoisyClassifier(1, 3, width=8).state_dict().items()}
    if kind == "truncated":
        save_file(good, str(path))
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "pickle":
        torch.save({"state": good, "planted": Planted(path.parent / "unpickled")}, path)
    elif kind == "foreign":  # another architecture's weights
        save_file({k: v.contiguous() for k, v in NoisyClassifier(3, 5, width=16).state_dict().items()}, str(path))
    elif kind == "empty":
        path.write_bytes(b"")
    return path


@pytest.mark.parametrize("kind,needle", [("truncated", "not a readable safetensors checkpoint"),
                                         ("pickle", "not a readable safetensors checkpoint"),
                                         ("empty", "not a readable safetensors checkpoint"),
                                         ("foreign", "weights do not fit the NoisyClassifier")])
def test_bad_checkpoints_are_refused_in_one_line_and_never_unpickled(tmp_path, kind, needle):
    from mgdm.files import FileError, load_weights
    from mgdm.guidance.noisy_classifier import NoisyClassifier

    path = bad_checkpoint(kind, tmp_path / "model.safetensors")
    with pytest.raises(FileError) as err:
        load_weights(path, NoisyClassifier(1, 3, width=8))
    message = str(err.value)
    assert message.startswith(f"{path}: {needle}") and "\n" not in message
    assert not (tmp_path / "unpickled").exists()


@pytest.mark.parametrize("kind", ["truncated", "pickle"])
def test_sample_refuses_a_bad_ddpm_checkpoint_naming_it(tmp_path, kind):
    import shutil

    from mgdm.config import load
    from mgdm.diffusion.unet import unet_config
    from mgdm.files import write_json

    shutil.copy(ROOT / "params.yaml", tmp_path)
    run(["mgdm", "preprocess", "--profile", "smoke", "--dataset", "discs", "--no-mlflow"], tmp_path)
    ddpm = tmp_path / "results/smoke/discs/ddpm/model.safetensors"
    ddpm.parent.mkdir(parents=True)
    write_json(ddpm.with_suffix(".json"), {"unet": unet_config(load(ROOT / "params.yaml", "smoke").profile.ddpm,
                                                                16, 1, 3)})
    bad_checkpoint(kind, ddpm)
    res = run(["mgdm", "sample", "--profile", "smoke", "--dataset", "discs", "--set", "none", "--no-mlflow"],
              tmp_path, check=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith(
        "mgdm sample: error: results/smoke/discs/ddpm/model.safetensors: not a readable safetensors checkpoint")
    assert not (tmp_path / "results/smoke/discs/samples").exists() or \
        not any((tmp_path / "results/smoke/discs/samples").iterdir())
    assert not (ddpm.parent / "unpickled").exists()
