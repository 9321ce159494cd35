"""`mgdm jobs`: run a profile's downstream jobs in a pool of worker processes, without Snakemake.

For a machine where Snakemake is not installed (a lent GPU node, a container) and many small jobs
share one accelerator: each worker imports torch once and runs job after job in-process through the
same CLI entry point as `snakemake` would, so outputs, metrics and failure handling are the stage's
own. Jobs run seed by seed, so that whatever finishes before `deadline_s` is whole (network, seed)
pairs; a job whose metrics JSON exists is skipped, so a stopped pool resumes where it stopped.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from mgdm.analysis.tables import downstream_job
from mgdm.config import load
from mgdm.workflow.plan import Plan


def downstream_jobs(plan: Plan) -> list[tuple[str, dict, str]]:
    """Every (stage, wildcards, metrics path) of the profile's downstream, seed-major: pairs finish first."""
    jobs = []
    for seed in plan.values["seed"]:
        for dataset in plan.values["dataset"]:
            for network in plan.values["network"]:
                for s in ["real", *plan.values["set"]]:
                    stage, extra = downstream_job(s)
                    w = {"dataset": dataset, "network": network, "seed": seed, **extra}
                    jobs.append((stage, w, plan.metrics_path(stage, **w)))
    return jobs


def _work(job: tuple[str, dict, str, str, str | None, float]) -> tuple[str, dict, int | None, float]:
    stage, wildcards, params, profile, device, deadline = job
    if time.time() > deadline:
        return stage, wildcards, None, 0.0  # not started: past the deadline
    from mgdm.workflow.runner import job_args, run_stage

    start = time.time()
    try:
        rc = run_stage(stage, job_args(params, profile, stage, wildcards, device=device, progress=False,
                                       no_mlflow=True, threads=1))
    except Exception as err:  # the stage removed its outputs; report and go on with the others
        print(f"mgdm jobs: {stage} {wildcards}: {type(err).__name__}: {err}", flush=True)
        rc = 1
    return stage, wildcards, rc, time.time() - start


def run(plan: Plan, workers: int, deadline_s: float | None = None, networks: list[str] | None = None,
        seeds: list[int] | None = None, device: str | None = None) -> int:
    """Run the unfinished downstream jobs (of `networks` and `seeds`, default all) on `workers` processes,
    on `device` (default: the profile's); return how many failed."""
    todo = [(stage, {k: (int(v) if k == "seed" else v) for k, v in w.items()}) for stage, w, path in
            downstream_jobs(plan) if not Path(path).exists() and (not networks or w["network"] in networks)
            and (not seeds or int(w["seed"]) in seeds)]
    deadline = time.time() + (deadline_s if deadline_s is not None else float("inf"))
    print(f"mgdm jobs: {len(todo)} jobs to run on {workers} workers", flush=True)
    failed = skipped = 0
    ctx = multiprocessing.get_context("spawn")  # no CUDA state forked into the workers
    with ctx.Pool(workers) as pool:
        work = [(st, w, plan.params_file, plan.profile, device, deadline) for st, w in todo]
        for i, (stage, w, rc, seconds) in enumerate(pool.imap_unordered(_work, work), 1):
            if rc is None:
                skipped += 1
                continue
            failed += rc != 0
            print(f"mgdm jobs: [{i}/{len(todo)}] {'done' if rc == 0 else 'FAILED'} in {seconds:.1f} s: "
                  f"{stage} {' '.join(f'--{k} {v}' for k, v in w.items())}", flush=True)
    print(f"mgdm jobs: {len(todo) - failed - skipped} done, {failed} failed, {skipped} not started "
          "(deadline)", flush=True)
    return failed


def main(a) -> int:
    config = load(a.params, a.profile)
    deadline = None if a.deadline_min is None else 60 * a.deadline_min
    failed = run(Plan(config, a.params), a.workers, deadline, config.chosen("networks", a.networks),
                 config.chosen("seeds", a.seeds), a.device)
    return 1 if failed else 0
