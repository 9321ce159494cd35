"""The SLURM path on a real one-node cluster: the smoke DAG through workflow/profiles/slurm."""

import re

import pytest
import slurm_cluster
from conftest import run


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = slurm_cluster.why_not()
    if reason:
        pytest.skip(f"no SLURM cluster on this machine: {reason}")
    root = tmp_path_factory.mktemp("slurm")
    slurm_cluster.start(root)
    yield root
    slurm_cluster.stop(root)


@pytest.mark.slow
def test_the_smoke_dag_runs_through_sbatch_with_the_shipped_profile(cluster, tmp_workflow):
    cmd = ["snakemake", "--workflow-profile", "workflow/profiles/slurm", "--config", "profile=smoke",
           "--slurm-status-command", "squeue", "--slurm-no-account", "--slurm-init-seconds-before-status-checks", "5"]
    res = run(cmd, tmp_workflow, timeout=1800)
    out = res.stdout + res.stderr
    total = int(re.search(r"^total\s+(\d+)", out, re.M).group(1))
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", out)
    assert len(set(submitted)) == total - 1, out[-3000:]  # every job but the local target rule `all`
    # the stage table's priorities reach SLURM's queue as --nice: the DDPM first, short jobs last
    nice = dict(re.findall(r"^rule (\w+):(?:\n .*)*?\n    resources: .*slurm_extra=--nice=(\d+)", out, re.M))
    assert nice["train_ddpm"] == "0" and nice["sample"] == "50" and nice["report"] == "100", nice
    assert (tmp_workflow / "results/smoke/tables/claims.md").exists()
    logs = list((tmp_workflow / "results/slurm-logs").rglob("*.log"))
    assert len(logs) == total - 1, "SLURM's logs of successful jobs are kept"
    rerun = run(cmd, tmp_workflow, timeout=600)
    assert "Nothing to be done" in rerun.stdout + rerun.stderr
