"""`mgdm jobs`: a profile's downstream jobs without Snakemake (e.g. on a lent GPU), with Snakemake's results."""

import json

from conftest import ROOT, finished_copy, run

from mgdm.config import load
from mgdm.workflow.jobs import downstream_jobs, groups
from mgdm.workflow.plan import Plan

JOB = "results/smoke/discs/downstream/convnext_atto/{}/seed0.json"


def test_jobs_go_seed_by_seed_so_that_whole_pairs_finish_first():
    jobs = downstream_jobs(Plan(load(ROOT / "params.yaml", "paper-downstream")))
    assert len(jobs) == 3 * 10 * (1 + 5)  # seeds x networks x (real + sets)
    seeds = [int(w["seed"]) for _, w, _ in jobs]
    assert seeds == sorted(seeds)
    assert [stage for stage, _, _ in jobs[:6]] == ["train_baseline"] + ["train_classifier"] * 5
    assert jobs[0][2] == "results/paper-downstream/retinamnist/downstream/resnet18/real/seed0.json"


def test_groups_are_networks_split_in_order_until_every_worker_has_one():
    plan = Plan(load(ROOT / "params.yaml", "paper-downstream-cpu"))
    jobs, n = [(stage, w) for stage, w, _ in downstream_jobs(plan)], len(plan.values["network"])
    assert [len(g) for g in groups(jobs)] == [18] * n  # a network's 3 seeds x 6 training sets
    assert [len(g) for g in groups(jobs, workers=n)] == [18] * n  # as many networks as workers: whole
    assert [len(g) for g in groups(jobs, workers=n + 1)] == [9, 9] + [18] * (n - 1)  # one more: the first halved
    one = [j for j in jobs if j[1]["network"] == "regnetx_002"]
    halves = groups(one, workers=2)
    assert [len(g) for g in halves] == [9, 9] and halves[0] + halves[1] == one  # in order, nothing lost
    assert [len(g) for g in groups(one, workers=3)] == [5, 4, 9]  # the larger half first, then the other
    assert [len(g) for g in groups(one[:1], workers=2)] == [1]  # one job cannot be split
    assert groups([], workers=2) == []


def test_jobs_redo_only_the_missing_jobs_with_the_result_snakemake_got(smoke_dag, tmp_path):
    workdir = finished_copy(smoke_dag, tmp_path / "w")
    missing = [workdir / JOB.format(s) for s in ("real", "entropy-s2")]
    before = [json.loads(m.read_text()) for m in missing]
    for m in missing:
        m.unlink()
    res = run(["mgdm", "jobs", "--profile", "smoke", "--deadline-min", "0"], workdir)
    assert "2 jobs to run" in res.stdout and "0 done, 0 failed, 2 not started" in res.stdout
    assert not any(m.exists() for m in missing)
    res = run(["mgdm", "jobs", "--profile", "smoke", "--workers", "2", "--device", "cpu"], workdir)
    assert "2 jobs to run" in res.stdout and "2 done, 0 failed, 0 not started" in res.stdout
    for m, old in zip(missing, before):
        new = json.loads(m.read_text())
        assert {k: new[k] for k in ("acc", "auc", "best_epoch")} == {k: old[k] for k in ("acc", "auc", "best_epoch")}
        assert new["machine"] == old["machine"]
        assert new["threads"] == old["threads"] == 1  # both run a job at one thread: the same result


def test_report_of_some_networks_names_them_and_refuses_unknown_ones(smoke_dag, tmp_path):
    workdir = finished_copy(smoke_dag, tmp_path / "w")
    res = run(["mgdm", "report", "--profile", "smoke", "--networks", "vgg16_bn", "--no-mlflow"], workdir, check=False)
    assert res.returncode == 2 and "--networks ['vgg16_bn'] not among downstream.networks" in res.stderr
    run(["mgdm", "report", "--profile", "smoke", "--networks", "convnext_atto", "--no-mlflow"], workdir)
    assert "networks ['convnext_atto']" in (workdir / "results/smoke/tables/paired.md").read_text()


def test_jobs_refuse_networks_and_seeds_outside_the_profile():
    for option, value in (("--networks", "nonet"), ("--seeds", "7")):
        res = run(["mgdm", "jobs", "--profile", "paper-downstream", option, value], ROOT, check=False)
        assert res.returncode == 2 and f"{option} [{value if option == '--seeds' else repr(value)}] not among" in res.stderr


def test_ctrl_c_stops_each_group_at_an_epochs_end_with_its_state_and_starts_no_other(smoke_dag, tmp_path):
    """Ctrl-C reaches the whole process group (the pool and its workers): the workers leave it to their parent,
    which tells each running group to keep its state at its next epoch's end and stop, starts no other group,
    counts what finished, and exits 130 without waiting on a worker (a worker a signal ended would have left the
    pool waiting for its result: it hung)."""
    import os
    import re
    import signal
    import subprocess
    import time

    import yaml
    from conftest import mgdm_env

    workdir = finished_copy(smoke_dag, tmp_path / "w")
    raw = yaml.safe_load((workdir / "params.yaml").read_text())
    raw["profiles"]["smoke"]["downstream"].update(epochs=40, checkpoint_s=0)  # a state each epoch: training shows
    (workdir / "params.yaml").write_text(yaml.safe_dump(raw))
    runs = workdir / "results/smoke/discs/downstream"
    for job in runs.rglob("seed0*"):
        job.unlink()
    proc = subprocess.Popen(["mgdm", "jobs", "--profile", "smoke", "--workers", "2"], cwd=workdir, env=mgdm_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal has it
    while not list(runs.rglob("*.resume.json")) and proc.poll() is None:  # a group has trained an epoch
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, out
    assert "mgdm jobs: SIGINT: each running group keeps its states at its next epoch's end and stops" in out
    summary = re.search(r"mgdm jobs: (\d+) done, 0 failed, (\d+) stopped \(the run under way in each group kept "
                        r"its state\), (\d+) not started \(stopped\)", out)
    assert summary and sum(map(int, summary.groups())) == 7 and int(summary[2]) > 0, out
    stopped_at = [int(e) for e in re.findall(r"interrupted \(SIGINT\) at epoch (\d+) of 40 \(seed 0\)", out)]
    assert stopped_at and all(1 <= e < 40 for e in stopped_at), out
    states = sorted(json.loads(p.read_text())["step"] for p in runs.rglob("*.resume.json"))
    assert states == sorted(stopped_at), out  # the state of each run under way, at the epoch it stopped at
    assert out.strip().splitlines()[-1] == "mgdm jobs: interrupted (SIGINT)"
