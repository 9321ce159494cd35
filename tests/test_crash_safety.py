"""Killed jobs resume exactly: SIGKILL at seeded random moments, rerun, compare with an unbroken run.

Outputs are written atomically, so after a kill a declared output is either absent or complete; the
rerun continues from the shards (sample) or the last finished epoch (downstream training).
"""

import os
import random
import signal
import subprocess
import time

import numpy as np
import pytest
import yaml

from conftest import ROOT, mgdm_env, run

VOLATILE = {"wall_s", "train_s", "sample_s", "images_per_s", "resumed_batches", "resumed_from_epoch"}
TRIALS = 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A smoke workspace with data, DDPM and guidance net; small batches so that kills land mid-job."""
    root = tmp_path_factory.mktemp("crash")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["profiles"]["smoke"]["sampling"].update(batch_size=3, ddim_steps=20)
    raw["profiles"]["smoke"]["downstream"]["epochs"] = 6
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    for stage in ("preprocess", "train-reference-net", "train-ddpm", "train-guidance-net"):
        run(["mgdm", stage, "--profile", "smoke", "--dataset", "discs", "--no-mlflow", "--no-progress"], root)
    return root


JOBS = {  # stage: (arguments, output stem, output suffixes, the checkpoint a kill should land after)
    "sample": (["--set", "entropy-s2"], "results/smoke/discs/samples/entropy-s2", (".npz", ".png", ".json"),
               "results/smoke/discs/samples/.entropy-s2.shards/batch00000.npz"),
    "train-baseline": (["--network", "resnet18", "--seed", "0"],
                       "results/smoke/discs/downstream/resnet18/real/seed0", ("_test.npz", ".json"),
                       "results/smoke/discs/downstream/resnet18/real/seed0.resume.json"),
}


def outputs(root, stem, suffixes):
    return [root / f"{stem}{s}" for s in suffixes]


def result(root, stem, suffixes):
    """What must not depend on a kill: every array of the npz outputs and the metrics but wall clocks."""
    metrics = {k: v for k, v in yaml.safe_load((root / f"{stem}.json").read_text()).items() if k not in VOLATILE}
    arrays = {}
    for path in outputs(root, stem, suffixes):
        if path.suffix == ".npz":
            with np.load(path) as f:
                arrays.update({f"{path.name}:{k}": f[k] for k in f.files})
    return metrics, arrays


@pytest.mark.parametrize("stage", sorted(JOBS))
def test_killed_job_resumes_to_the_unbroken_result(trained, stage):
    args, stem, suffixes, checkpoint = JOBS[stage]
    cmd = ["mgdm", stage, "--profile", "smoke", "--dataset", "discs", *args, "--no-mlflow", "--no-progress",
           "--threads", "1"]
    run(cmd, trained)
    reference = result(trained, stem, suffixes)
    rng = random.Random(f"kill-{stage}")
    resumed = 0
    for trial in range(TRIALS):
        for path in outputs(trained, stem, suffixes):
            path.unlink()
        proc = subprocess.Popen(cmd, cwd=trained, env=mgdm_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        while not (trained / checkpoint).exists() and proc.poll() is None:  # the job is under way
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))  # then a seeded random moment: mid-batch, mid-epoch, or after
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for path in outputs(trained, stem, suffixes):  # atomic writes: absent or complete, never half
            assert not path.exists() or not path.name.startswith(".")
        leftovers = [p.name for p in (trained / stem).parent.iterdir() if p.name.startswith(f".{p.name.split('.')[0]}")
                     and p.suffix in (".npz", ".json", ".png") and not p.is_dir()]
        assert not leftovers, f"half-written temporary files left: {leftovers}"
        run(cmd, trained)
        metrics, arrays = result(trained, stem, suffixes)
        again = yaml.safe_load((trained / f"{stem}.json").read_text())
        resumed += bool(again.get("resumed_batches") or again.get("resumed_from_epoch"))
        assert metrics == reference[0], f"trial {trial}: metrics differ after a kill"
        assert arrays.keys() == reference[1].keys()
        for k, v in arrays.items():
            assert np.array_equal(v, reference[1][k]), f"trial {trial}: {k} differs after a kill"
    assert resumed, f"no trial resumed from a partial {stage}"
