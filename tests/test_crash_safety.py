"""Killed jobs resume exactly: SIGKILL at seeded random moments, rerun, compare with an unbroken run.

Outputs are written atomically, so after a kill a declared output is either absent or complete; the
rerun continues from the shards (sample), the last checkpoint (DDPM, guidance net) or the last finished
epoch (downstream training).
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

VOLATILE = {"wall_s", "train_s", "sample_s", "images_per_s", "resumed_batches", "resumed_from_epoch", "resumed_from"}
TRIALS = 2  # each a cold start, a kill and a rerun: the suite's largest module (README, Reliability)
D = "results/smoke/discs"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A smoke workspace with data, DDPM and guidance net; small batches and more steps, so that kills
    land mid-job."""
    root = tmp_path_factory.mktemp("crash")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    smoke = raw["profiles"]["smoke"]
    smoke["sampling"].update(batch_size=3, ddim_steps=20)
    smoke["downstream"]["epochs"] = 6
    smoke["ddpm"].update(steps=160, checkpoint_every=20, probe_every=80)
    smoke["guidance_net"].update(steps=300, checkpoint_every=20)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    references = {}
    for stage in ("preprocess", "train-reference-net", "train-ddpm", "train-guidance-net"):
        run(["mgdm", stage, "--profile", "smoke", "--dataset", "discs", "--no-mlflow", "--no-progress",
             "--threads", "1"], root)
        if stage in JOBS:  # an unbroken run of the same command: the reference its killed reruns must equal
            references[stage] = (*result(root, JOBS[stage][1]), work_seconds(root, JOBS[stage][1]))
    return root, references


# stage: (arguments, outputs (the metrics JSON first), the resume state a kill should land after, and the
# files a fresh start must not find)
JOBS = {
    "sample": (["--set", "entropy-s2"], [f"{D}/samples/entropy-s2.{x}" for x in ("json", "npz", "png")],
               f"{D}/samples/.entropy-s2.shards/batch00000.npz", []),
    "train-baseline": (["--network", "convnext_atto", "--seed", "0"],
                       [f"{D}/downstream/convnext_atto/real/seed0{x}" for x in (".json", "_test.npz")],
                       f"{D}/downstream/convnext_atto/real/seed0.resume.json", []),
    "train-ddpm": ([], [f"{D}/ddpm/{x}" for x in ("metrics.json", "model.safetensors", "model.json")],
                   f"{D}/ddpm/resume.json", [f"{D}/ddpm/resume.json", f"{D}/ddpm/resume.safetensors"]),
    "train-guidance-net": ([], [f"{D}/guidance_net/{x}" for x in ("metrics.json", "model.safetensors", "model.json")],
                           f"{D}/guidance_net/resume.json",
                           [f"{D}/guidance_net/resume.json", f"{D}/guidance_net/resume.safetensors"]),
}


def result(root, files):
    """What must not depend on a kill: every array and tensor of the outputs and the metrics but wall clocks."""
    from safetensors.numpy import load_file

    metrics = {k: v for k, v in yaml.safe_load((root / files[0]).read_text()).items() if k not in VOLATILE}
    arrays = {}
    for path in (root / f for f in files):
        if path.suffix == ".npz":
            with np.load(path) as f:
                arrays.update({f"{path.name}:{k}": f[k] for k in f.files})
        elif path.suffix == ".safetensors":
            arrays.update({f"{path.name}:{k}": v for k, v in load_file(path).items()})
    return metrics, arrays


def work_seconds(root, files) -> float:
    """How long the job's own work took (sampling or training, without the process start)."""
    metrics = yaml.safe_load((root / files[0]).read_text())
    return metrics.get("sample_s", metrics.get("train_s"))


def whole(path) -> bool:
    """The file reads back completely in its format."""
    from PIL import Image
    from safetensors.numpy import load_file

    if path.suffix == ".npz":
        with np.load(path) as f:
            return all(f[k] is not None for k in f.files)
    if path.suffix == ".safetensors":
        return load_file(path) is not None
    if path.suffix == ".png":
        with Image.open(path) as im:
            im.load()
        return True
    return yaml.safe_load(path.read_text()) is not None


def killed_mid_job(cmd, root, outputs, checkpoint, delay: float) -> bool:
    """Start the job afresh and SIGKILL it `delay` seconds after its first resume state; False where it ended
    (successfully) before that."""
    for path in outputs:
        (root / path).unlink(missing_ok=True)
    proc = subprocess.Popen(cmd, cwd=root, env=mgdm_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    while not (root / checkpoint).exists() and proc.poll() is None:  # the job is under way
        time.sleep(0.05)
    try:
        assert proc.wait(timeout=delay) == 0, f"{cmd}: failed before its kill"
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


@pytest.mark.parametrize("stage", sorted(JOBS))
def test_killed_job_resumes_to_the_unbroken_result(trained, stage):
    trained, references = trained
    args, files, checkpoint, fresh = JOBS[stage]
    cmd = ["mgdm", stage, "--profile", "smoke", "--dataset", "discs", *args, "--no-mlflow", "--no-progress",
           "--threads", "1"]
    if stage not in references:  # the generator's stages were run unbroken by the fixture
        run(cmd, trained)
        references[stage] = (*result(trained, files), work_seconds(trained, files))
    reference = references[stage]
    rng = random.Random(f"kill-{stage}")
    resumed = 0
    for trial in range(TRIALS):
        # a seeded random moment within half the unbroken run's work time after the first resume state (which
        # comes at most a quarter of the way in): mid-batch, mid-epoch or mid-write, on a fast machine as on a slow
        # one. Where the job still ends first (the reference was timed while the machine was busier), sooner.
        delay = rng.uniform(0.0, 0.5 * reference[2])
        for _ in range(4):
            if killed_mid_job(cmd, trained, [*files, *fresh], checkpoint, delay):
                break
            delay /= 4
        else:
            pytest.fail(f"trial {trial}: the job ended before every kill")
        for path in (trained / f for f in files):  # atomic writes: a declared output is whole or absent
            assert not path.exists() or whole(path), f"trial {trial}: {path.name} half-written"
        run(cmd, trained)
        folder = (trained / files[0]).parent  # a kill mid-write leaves a temporary file; the rerun clears it
        leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".") and not p.is_dir()]
        assert not leftovers, f"trial {trial}: temporary files left after the rerun: {leftovers}"
        metrics, arrays = result(trained, files)
        again = yaml.safe_load((trained / files[0]).read_text())
        resumed += bool(again.get("resumed_batches") or again.get("resumed_from_epoch") or again.get("resumed_from"))
        assert metrics == reference[0], f"trial {trial}: metrics differ after a kill"
        assert arrays.keys() == reference[1].keys()
        for k, v in arrays.items():
            assert np.array_equal(v, reference[1][k]), f"trial {trial}: {k} differs after a kill"
    assert resumed == TRIALS, f"{TRIALS - resumed} of {TRIALS} trials did not resume from a partial {stage}"


@pytest.mark.parametrize("sig", [signal.SIGTERM])  # SIGINT (Ctrl-C) takes the same path: test_grid_training.py
def test_a_signalled_job_keeps_its_state_and_says_so_in_one_line(tmp_path, sig):
    """scancel (SIGTERM) mid-training, with an hour between resume states: the job keeps its state
    at the end of the epoch under way, names it in one line, exits 128 + the signal's number (as a shell reports
    it), and its declared outputs are absent (that a rerun resumes from such a state exactly: test_grid_training.py
    and test_training.py)."""
    import re

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["profiles"]["smoke"]["reference_net"] = {"epochs": 40, "checkpoint_s": 3600}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    cmd = ["mgdm", "--profile", "smoke", "--dataset", "discs", "--no-mlflow", "--threads", "1"]
    run([cmd[0], "preprocess", *cmd[1:]], tmp_path)
    proc = subprocess.Popen([cmd[0], "train-reference-net", *cmd[1:]], cwd=tmp_path, env=mgdm_env(),
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal has it
    said = ""
    while not re.search(r" [1-9]\d*/40 ", said) and proc.poll() is None:  # the progress bar: an epoch is done
        said += proc.stderr.read(1)
    proc.send_signal(sig)
    said += proc.stderr.read()
    assert proc.wait() == 128 + sig, said[-2000:]
    last = said.strip().splitlines()[-1]
    stopped = re.fullmatch(rf"mgdm train_reference_net: interrupted \({signal.Signals(sig).name}\) at epoch (\d+) "
                           r"of 40 \(seed 0\), its resume state kept; rerun to continue from there", last)
    assert stopped and 1 <= int(stopped[1]) < 40, last  # the epoch whose end it saw, or a later one
    folder = tmp_path / D / "reference_net"
    assert sorted(p.name for p in folder.iterdir()) == ["resume.json", "resume.safetensors"]  # outputs absent
    assert yaml.safe_load((folder / "resume.json").read_text())["step"] == int(stopped[1])
