"""A miniature of the `paper` profile through Snakemake: its datasets, UNet, guidance net, reference net,
sampler and networks as committed, with steps, images and the grid cut to seconds."""

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import run

from mgdm.config import deep_merge

pytestmark = pytest.mark.slow

CUT = {  # what the miniature changes: how long things run, never what they are
    "device": "cpu",
    "ddpm": {"steps": 2, "batch_size": 4, "checkpoint_every": 2, "probe_every": 2, "probe_images": 4, "probe_steps": 2},
    "guidance_net": {"steps": 2, "batch_size": 8, "checkpoint_every": 2},
    "reference_net": {"epochs": 1},
    "sampling": {"ddim_steps": 2, "per_class": 4, "batch_size": 20},
    # the attention network of the ten (the other nine are built and stepped in test_profiles_build.py)
    "downstream": {"networks": ["vit_tiny_patch16_224"], "seeds": [0], "epochs": 1,
                   "sets": ["none", "entropy-s1", "mgdm-s1"]},
    "fidelity": {"kid_subset_size": 4},
}


def cut_dataset(source: Path, dest: Path, n: dict) -> None:
    """The first n images of each split of a MedMNIST file, every class kept in the training split."""
    with np.load(source) as f:
        arrays = {k: f[k] for k in f.files}
    out = {}
    for split, k in n.items():
        labels = arrays[f"{split}_labels"].reshape(-1)
        keep = np.concatenate([np.flatnonzero(labels == c)[:2] for c in np.unique(labels)])
        keep = np.unique(np.concatenate([keep, np.arange(k)]))
        out[f"{split}_images"], out[f"{split}_labels"] = arrays[f"{split}_images"][keep], arrays[f"{split}_labels"][keep]
    np.savez(dest, **out)


def test_a_miniature_of_the_paper_profile_runs_every_stage(tmp_workflow, tmp_path):
    raw = yaml.safe_load((tmp_workflow / "params.yaml").read_text())
    paper = raw["profiles"]["paper"]
    data = tmp_path / "data"
    data.mkdir()
    folder = Path(raw.get("data_dir") or __import__("os").environ.get("MGDM_DATA_DIR", ""))
    # one of paper's two datasets (RGB, 5 grades); test_profiles_build.py builds every model for both
    paper = {**paper, "datasets": paper["datasets"][:1]}
    for name in paper["datasets"]:
        spec = raw["datasets"][name]
        if not (folder / spec["file"]).exists():
            pytest.skip(f"{spec['file']} not found (set MGDM_DATA_DIR to the folder holding the MedMNIST files)")
        cut_dataset(folder / spec["file"], data / spec["file"], {"train": 40, "val": 10, "test": 20})
        spec["md5"] = None
    raw["data_dir"] = str(data)
    mini = deep_merge(copy.deepcopy(paper), CUT)
    # the first scale of the guidances the claims compare; the others (one measure each on the same sampler,
    # sampled in the smoke DAG) off
    kept = ("none", "classifier", "entropy", "mgdm")
    mini["sampling"]["scales"] = {k: v[:1] if k in kept else None for k, v in
                                  {**raw["defaults"]["sampling"]["scales"], **paper["sampling"]["scales"]}.items()}
    for section in ("ddpm", "guidance_net", "reference_net"):  # the architectures are the paper's
        for key in ("channels", "layers_per_block", "width", "network"):
            if key in paper.get(section, {}):
                assert mini[section][key] == paper[section][key]
    raw["profiles"]["paper-mini"] = mini
    (tmp_workflow / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    res = run(["snakemake", "--cores", "2", "--config", "profile=paper-mini"], tmp_workflow, timeout=1500,
              mlflow=False)
    assert "steps (100%) done" in res.stdout + res.stderr
    root = tmp_workflow / "results/paper-mini"
    runs = (root / "records/runs.csv").read_text().splitlines()
    assert len(runs) == 1 + 1 * 1 * 4  # header + datasets x networks x (real + 3 sets)
    assert "retinamnist" in (root / "tables/claims.md").read_text()
    assert sorted(p.stem for p in (root / "retinamnist/samples").glob("*.npz")) == [
        "classifier-s1", "entropy-s1", "mgdm-s1", "none"]
    model = yaml.safe_load((root / "retinamnist/ddpm/model.json").read_text())
    assert model["unet"]["block_out_channels"] == paper["ddpm"]["channels"]
