"""The prepared GPU lease (workflow/gpu): rehearsed on the CPU with the smoke profile, from a checkout that holds
nothing but .lease/, as the device machine receives it."""

import json
import shutil
import subprocess
import sys
import tarfile

from conftest import finished_copy, mgdm_env, run

from mgdm.config import load
from mgdm.workflow.jobs import downstream_jobs
from mgdm.workflow.plan import Plan


def bash(script, cwd, *args, **env):
    res = subprocess.run(["bash", script, *args], cwd=cwd, env={**mgdm_env(), "PYTHON": sys.executable, **env},
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def test_a_lease_runs_the_grid_from_what_prepare_staged_and_brings_every_run_back(smoke_dag, tmp_path):
    work = finished_copy(smoke_dag, tmp_path / "w")
    bash("workflow/gpu/prepare.sh", work, "smoke", NO_WHEELS="1")  # the images, from the finished generator
    shutil.rmtree(work / "results")  # the device machine has the checkout and .lease/, nothing else
    (work / "results").mkdir()
    out = tmp_path / "out"
    res = bash("workflow/gpu/lease.sh", work, OUT=str(out), PROFILE="smoke", DEVICE="cpu", WORKERS="1")
    plan = Plan(load(work / "params.yaml", "smoke"), str(work / "params.yaml"))
    runs = [path for _, _, path in downstream_jobs(plan)]
    with tarfile.open(out / "runs.tar.gz") as tar:
        names = set(tar.getnames())
    assert names == {*runs, *(p.replace(".json", "_test.npz") for p in runs)}, res.stdout
    assert f"lease: {len(runs)} finished runs" in (out / "lease.log").read_text()
    bench = json.loads((out / "bench.json").read_text())
    assert set(bench["networks"]) == set(plan.config.profile.downstream.networks)
    assert bench["grid"]["steps_s"] > 0 and (out / "bench.md").exists()
    # back here: the runs unpacked beside the generator's files are reported like any others
    home = finished_copy(smoke_dag, tmp_path / "home")
    for path in runs:
        (home / path).unlink()
        (home / path.replace(".json", "_test.npz")).unlink()
    with tarfile.open(out / "runs.tar.gz") as tar:
        tar.extractall(home, filter="data")
    run(["mgdm", "report", "--profile", "smoke", "--no-mlflow"], home, mlflow=False)
    assert len((home / "results/smoke/records/runs.csv").read_text().splitlines()) == 1 + len(runs)
