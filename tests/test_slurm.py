"""The SLURM path on a real one-node cluster: the smoke DAG through workflow/profiles/slurm."""

import re
import shutil

import pytest
import slurm_cluster
from conftest import finished_copy, grouped_params, run


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = slurm_cluster.why_not()
    if reason:
        pytest.skip(f"no SLURM cluster on this machine: {reason}")
    root = tmp_path_factory.mktemp("slurm")
    slurm_cluster.start(root)
    yield root
    slurm_cluster.stop(root)


def snakemake(profile: str, *extra: str) -> list[str]:
    return ["snakemake", "--workflow-profile", f"workflow/profiles/{profile}", "--config", "profile=smoke",
            "--slurm-status-command", "squeue", "--slurm-no-account", "--slurm-init-seconds-before-status-checks",
            "5", *extra]


ONE_SET = "results/smoke/discs/samples/entropy-s2"  # removed from a finished run: its chain reruns


@pytest.mark.slow
def test_a_set_reruns_through_sbatch_with_the_shipped_profile(cluster, smoke_dag, tmp_path):
    """A finished smoke run less one synthetic set: the set, everything after it, nothing else, each job
    through sbatch (the full DAG runs in test_end_to_end; here SLURM's part is what is tested). Grouped, so
    the downstream runs are one job, train_group, as a GPU profile's are (two of the sets, to keep it short)."""
    work = finished_copy(smoke_dag, tmp_path / "w")
    for suffix in (".npz", ".png", ".json"):
        (work / f"{ONE_SET}{suffix}").unlink()
    grouped_params(work / "params.yaml", sets=["none", "entropy-s2"])
    cmd = snakemake("slurm")
    res = run(cmd, work, timeout=1800, mlflow=False)
    out = res.stdout + res.stderr
    total = int(re.search(r"^total\s+(\d+)", out, re.M).group(1))
    jobs = set(re.findall(r"^rule (\w+):", out, re.M)) - {"all"}
    assert jobs == {"sample", "fidelity", "train_group", "analyze", "report"}, jobs
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", out)
    assert len(set(submitted)) == total - 1, out[-3000:]  # every job but the local target rule `all`
    assert (work / f"{ONE_SET}.npz").exists() and (work / "results/smoke/tables/claims.md").exists()
    logs = list((work / "results/slurm-logs").rglob("*.log"))
    assert len(logs) == total - 1, "SLURM's logs of successful jobs are kept"
    rerun = run(cmd, work, timeout=600, mlflow=False)
    assert "Nothing to be done" in rerun.stdout + rerun.stderr


def test_the_stage_table_priorities_reach_slurm_as_nice(tmp_workflow):
    """The DDPM first, short jobs last: read off the full DAG's plan (no cluster needed)."""
    out = run(snakemake("slurm", "-n"), tmp_workflow).stdout
    nice = dict(re.findall(r"^rule (\w+):(?:\n .*)*?\n    resources: .*slurm_extra=--nice=(\d+)", out, re.M))
    assert nice["train_ddpm"] == "0" and nice["sample"] == "50" and nice["report"] == "100", nice


@pytest.mark.slow
def test_the_gpu_profile_asks_slurm_for_one_gpu_per_training_job(cluster, smoke_dag, tmp_path):
    """workflow/profiles/slurm-gpu on a node with one (stand-in) GPU: in the plan every training stage asks for
    a GPU and preprocessing for none; the reference net, removed from a finished run, trains through sbatch
    holding it (the smoke profile computes on the CPU)."""
    work = finished_copy(smoke_dag, tmp_path / "w")
    plan = run(snakemake("slurm-gpu", "-n", "--forceall"), work).stdout
    resources = dict(re.findall(r"^rule (\w+):(?:\n .*)*?\n    resources: (.*)", plan, re.M))
    assert all("gpu=1" in resources[r] for r in ("train_ddpm", "sample", "train_classifier")), resources
    assert "gpu" not in resources["preprocess"] and "gpu" not in resources["analyze"]
    shutil.rmtree(work / "results/smoke/discs/reference_net")
    res = run(snakemake("slurm-gpu", "--until", "train_reference_net"), work, timeout=900, mlflow=False)
    ids = set(re.findall(r"has been submitted with SLURM jobid (\d+)", res.stdout + res.stderr))
    jobs = {}
    for i in ids:
        line = run(["scontrol", "show", "job", i, "--oneliner"], work).stdout
        jobs[re.search(r"Comment=rule_([a-z_]+?)_wildcards", line).group(1)] = line
    assert set(jobs) == {"train_reference_net"}, jobs
    assert re.search(r"TresPer\w+=gres[:/]gpu:1", jobs["train_reference_net"])
    assert "JobState=COMPLETED" in jobs["train_reference_net"]
    assert (work / "results/smoke/discs/reference_net/metrics.json").exists()
