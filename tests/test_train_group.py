"""Stage train_group: one Snakemake/DVC job per network for profiles with `downstream.grouped`, with the run
as the unit of rerun (a run whose inputs did not change is restored from the run cache, not retrained)."""

import json
from pathlib import Path

import pytest
import torch
from conftest import ROOT, finished_copy, grouped_params, run

from mgdm.config import load
from mgdm.workflow.dvc import dvc_yaml
from mgdm.workflow.estimate import estimate
from mgdm.workflow.plan import Plan

RUNS = "results/smoke/discs/downstream/convnext_atto"


def test_a_grouped_profile_runs_one_job_per_network_in_both_managers(tmp_path):
    plan = Plan(load(ROOT / "params.yaml", "smoke"))  # the committed smoke: one job per run
    assert "train_group" not in plan.stages and "train_classifier" in plan.stages
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    grouped = Plan(load(grouped_params(tmp_path / "params.yaml", networks=["resnet18", "convnext_atto"]), "smoke"))
    assert grouped.stages == [s if s != "train_baseline" else "train_group" for s in plan.stages
                              if s != "train_classifier"]
    targets = grouped.targets()
    assert f"{RUNS}/group.json" in targets and f"{RUNS}/real/seed0.json" in targets
    stages = dvc_yaml(grouped)["stages"]
    assert not any(name.startswith(("train_baseline", "train_classifier")) for name in stages)
    group = stages["train_group"]
    assert group["matrix"] == {"dataset": ["discs"], "network": "${profiles.smoke.downstream.networks}"}
    metrics = [next(iter(m)) for m in group["metrics"]]
    assert "results/smoke/${item.dataset}/downstream/${item.network}/entropy-s2/seed0.json" in metrics
    assert metrics[-1] == "results/smoke/${item.dataset}/downstream/${item.network}/group.json"
    lines = estimate(grouped, None).splitlines()
    assert any(line.split()[:2] == ["train_group", "2"] for line in lines)  # two networks: two jobs
    assert not any(line.startswith("train_classifier") for line in lines)


@pytest.mark.slow
def test_snakemake_trains_a_network_in_one_job_and_retrains_only_the_runs_that_are_new(smoke_dag, tmp_path):
    workdir = finished_copy(smoke_dag, tmp_path / "w")
    alone = {s: json.loads((workdir / RUNS / s / "seed0.json").read_text()) for s in ("real", "entropy-s2")}
    params = grouped_params(workdir / "params.yaml", sets=["entropy-s2"])  # one set: two runs a seed
    (workdir / "results/mlflow.db").unlink()
    res = run(["snakemake", "--cores", "2", "--config", "profile=smoke"], workdir, mlflow=False)
    assert "rule train_group:" in res.stdout + res.stderr
    assert not (workdir / "results/mlflow.db").exists(), "MGDM_NO_MLFLOW: neither the jobs nor Snakemake log"
    assert "rule train_classifier:" not in res.stdout + res.stderr
    group = json.loads((workdir / RUNS / "group.json").read_text())
    assert (group["runs"], group["trained"], group["restored"]) == (2, 2, 0)
    first = {s: (workdir / RUNS / s / "seed0.json").read_bytes() for s in alone}
    for s, old in alone.items():  # trained together, each run as it trained alone
        new = json.loads(first[s])
        assert {k: new[k] for k in ("acc", "auc", "best_epoch")} == {k: old[k] for k in ("acc", "auc", "best_epoch")}

    grouped_params(params, seeds=[0, 1])  # a seed more: its two runs train, the first two are restored
    res = run(["snakemake", "--cores", "2", "--config", "profile=smoke"], workdir, mlflow=False)
    group = json.loads((workdir / RUNS / "group.json").read_text())
    assert (group["runs"], group["trained"], group["restored"]) == (4, 2, 2)
    assert {s: (workdir / RUNS / s / "seed0.json").read_bytes() for s in alone} == first
    assert all((workdir / RUNS / s / "seed1.json").exists() for s in alone)
    res = run(["snakemake", "--cores", "2", "--config", "profile=smoke", "-n"], workdir)
    assert "Nothing to be done" in res.stdout + res.stderr


def smoke_workdir(tmp_path, monkeypatch) -> tuple[Path, Plan]:
    """tmp_path as the workdir of a smoke plan, with stand-in bytes for its data and its `none` set; returns
    (params.yaml, plan)."""
    monkeypatch.chdir(tmp_path)
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    plan = Plan(load(params, "smoke"), str(params))
    for path in (plan.dataset_file("discs"), plan.paths("sample", dataset="discs", set="none")["none.npz"]):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(b"images")
    return params, plan


def test_a_runs_key_follows_what_its_result_depends_on_and_nothing_else(tmp_path, monkeypatch):
    from mgdm.stages.train_group import run_key
    from mgdm.workflow.runner import job_args

    params, plan = smoke_workdir(tmp_path, monkeypatch)
    samples = plan.paths("sample", dataset="discs", set="none")["none.npz"]

    def key(stage="train_classifier", **wildcards):
        plan = Plan(load(params, "smoke"), str(params))  # as params.yaml now says
        w = {"dataset": "discs", "network": "convnext_atto", "seed": 0, "set": "none", **wildcards}
        w = {k: v for k, v in w.items() if k != "set" or stage == "train_classifier"}
        return run_key(plan.config, plan, stage, job_args(str(params), "smoke", stage, w))

    first = key()
    assert key() == first and len({first, key(seed=1), key("train_baseline"), key(network="vgg16_bn")}) == 4
    lr = plan.config.profile.downstream.lr
    grouped_params(params, checkpoint_s=60, seeds=[0, 1])  # which runs exist, how often they keep states
    assert key() == first
    grouped_params(params, lr=lr * 2)  # a setting the run reads
    assert key() != first
    grouped_params(params, lr=lr)
    assert key() == first
    (tmp_path / samples).write_bytes(b"resampled")
    assert key() != first
    (tmp_path / samples).write_bytes(b"images")
    threads = torch.get_num_threads()
    try:  # on a CPU the thread count changes the result (the order of the sums): a 2-thread run is not restored
        torch.set_num_threads(1 if threads > 1 else 2)
        assert key() != first
    finally:
        torch.set_num_threads(threads)
    assert key() == first


def test_a_runs_key_digests_the_code_that_trains_not_the_workdirs_src(tmp_path, monkeypatch):
    """A workdir may be another version's checkout (an older worktree holding a study's files, run with this
    package): its src/ neither trains nor keys. The key follows the running package's sources."""
    import shutil

    from mgdm.stages.train_group import run_key
    from mgdm.workflow import sources
    from mgdm.workflow.runner import job_args

    params, plan = smoke_workdir(tmp_path, monkeypatch)
    w = {"dataset": "discs", "network": "convnext_atto", "seed": 0}

    def key():
        sources.stage_sources.cache_clear()
        return run_key(plan.config, plan, "train_baseline", job_args(str(params), "smoke", "train_baseline", w))

    first = key()  # no src/ here: the package's own
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    assert key() == first  # the same code, named as in a checkout: the keys a checkout made stay valid
    (tmp_path / "src/mgdm/classifiers/train.py").write_text("# another version\n")
    assert key() == first
    monkeypatch.setattr(sources, "package_root", lambda: tmp_path / "src")  # now that version trains
    assert key() != first
    (tmp_path / "src/mgdm/classifiers/train.py").write_text((ROOT / "src/mgdm/classifiers/train.py").read_text())
    assert key() == first
    sources.stage_sources.cache_clear()


def two_runs_killed_in_the_second(tmp_path, monkeypatch):
    """A smoke plan in tmp_path with a real-only and a `none` run of convnext_atto, and a stand-in for the group's
    training that writes the first run's files, hands it back and dies in the second. Returns (plan, jobs)."""
    from mgdm.stages import StageResult, train_baseline
    from mgdm.workflow.runner import job_args, job_outputs

    params, plan = smoke_workdir(tmp_path, monkeypatch)
    w = {"dataset": "discs", "network": "convnext_atto", "seed": 0}
    jobs = [(stage, job_args(str(params), "smoke", stage, {**w, **extra}, progress=False, no_mlflow=True))
            for stage, extra in (("train_baseline", {}), ("train_classifier", {"set": "none"}))]

    def killed_in_the_second_run(config, plan, jobs):
        for stage, a in jobs:
            for f in job_outputs(stage, a, config, plan)[1]:  # what a run writes besides its metrics JSON
                Path(f).parent.mkdir(parents=True, exist_ok=True)
                Path(f).write_text("{}")
            if stage == "train_classifier":
                raise KeyboardInterrupt
            yield StageResult.of({"metrics": {"acc": 0.5}}), 1.0

    monkeypatch.setattr(train_baseline, "main_group", killed_in_the_second_run)
    return plan, jobs


def test_a_killed_group_keeps_in_the_cache_each_run_it_finished(tmp_path, monkeypatch):
    """Runs are kept as they finish, so a group killed in its second run retrains only that run and the next."""
    from mgdm.stages import train_baseline, train_group

    plan, jobs = two_runs_killed_in_the_second(tmp_path, monkeypatch)
    monkeypatch.setattr(train_group, "main_group", train_baseline.main_group)
    cache = train_group.RunCache(tmp_path / RUNS)
    with pytest.raises(KeyboardInterrupt):
        train_group.run(plan.config, plan, jobs, cache)
    kept = [(cache.dir / train_group.run_key(plan.config, plan, stage, a)).is_dir() for stage, a in jobs]
    assert kept == [True, False]


def test_a_failed_group_under_mgdm_jobs_removes_only_its_unfinished_runs(tmp_path, monkeypatch):
    from mgdm.workflow.runner import job_outputs, run_group

    plan, jobs = two_runs_killed_in_the_second(tmp_path, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_group(jobs)
    left = [all(Path(f).exists() for f in job_outputs(stage, a, plan.config, plan)[1]) for stage, a in jobs]
    assert left == [True, False]
    assert not any(Path(f).exists() for f in job_outputs(*jobs[1], plan.config, plan)[1])


def test_snakemake_starts_the_dearest_network_group_first():
    """Known answer: `study`'s group priorities are each network's cost per image and epoch in the committed zoo
    record (results/cpu/records/zoo.json, the study's images are cpu's) over the dearest's, minus 1."""
    from mgdm.files import read_json
    from mgdm.workflow.estimate import group_priority

    plan = Plan(load(ROOT / "params.yaml", "study"))
    surveyed = {r["network"]: r["s_per_epoch"] for r in read_json(ROOT / "results/cpu/records/zoo.json")["networks"]}
    dearest = max(surveyed[n] for n in plan.values["network"])
    priority = {n: group_priority(plan, "retinamnist", n) for n in plan.values["network"]}
    assert priority == {n: pytest.approx(surveyed[n] / dearest - 1) for n in priority}
    assert sorted(priority, key=priority.get, reverse=True) == [
        "inception_v3", "efficientnet_b0", "densenet121", "regnetx_002", "convnext_atto"]
    rules = (ROOT / "workflow/rules/stages.smk").read_text()
    assert "    priority: 10\n" in rules.split("rule train_ddpm:")[1].split("\nrule ")[0]  # the others keep the table's
    assert "priority: lambda wildcards: group_priority(PLAN, **wildcards)" in rules.split("rule train_group:")[1]
