"""`mgdm jobs`: run a profile's downstream jobs in a pool of worker processes, without Snakemake.

For a machine where Snakemake is not installed (a lent GPU node, a container) and many small jobs
share one accelerator: each worker imports torch once and runs job after job in-process through the
same CLI entry point as `snakemake` would, so outputs, metrics and failure handling are the stage's
own. Jobs run seed by seed, so that whatever finishes before `deadline_s` is whole (network, seed)
pairs; a job whose metrics JSON exists is skipped, so a stopped pool resumes where it stopped.
"""

from __future__ import annotations

import multiprocessing
import shlex
import time
from pathlib import Path

from mgdm.analysis.tables import downstream_job
from mgdm.pipeline import Plan


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


def _work(job: tuple[list[str], float]) -> tuple[list[str], int | None, float]:
    argv, deadline = job
    if time.time() > deadline:
        return argv, None, 0.0  # not started: past the deadline
    from mgdm.cli import main

    start = time.time()
    try:
        rc = main([*argv, "--no-progress", "--no-mlflow", "--threads", "1"])
    except Exception as err:  # the stage removed its outputs; report and go on with the others
        print(f"mgdm jobs: {' '.join(argv)}: {type(err).__name__}: {err}", flush=True)
        rc = 1
    return argv, rc, time.time() - start


def run(plan: Plan, workers: int, deadline_s: float | None = None, networks: list[str] | None = None,
        seeds: list[int] | None = None, device: str | None = None) -> int:
    """Run the unfinished downstream jobs (of `networks` and `seeds`, default all) on `workers` processes,
    on `device` (default: the profile's); return how many failed."""
    # the stage's own command line, as Snakemake runs it, less the leading `mgdm`
    todo = [shlex.split(plan.command(stage).format(**w))[1:] for stage, w, path in downstream_jobs(plan)
            if not Path(path).exists() and (not networks or w["network"] in networks)
            and (not seeds or int(w["seed"]) in seeds)]
    if device:
        todo = [[*argv, "--device", device] for argv in todo]
    deadline = time.time() + (deadline_s if deadline_s is not None else float("inf"))
    print(f"mgdm jobs: {len(todo)} jobs to run on {workers} workers", flush=True)
    failed = skipped = 0
    ctx = multiprocessing.get_context("spawn")  # no CUDA state forked into the workers
    with ctx.Pool(workers) as pool:
        for i, (argv, rc, seconds) in enumerate(pool.imap_unordered(_work, [(a, deadline) for a in todo]), 1):
            if rc is None:
                skipped += 1
                continue
            failed += rc != 0
            print(f"mgdm jobs: [{i}/{len(todo)}] {'done' if rc == 0 else 'FAILED'} in {seconds:.1f} s: "
                  f"{' '.join(argv[4:])}", flush=True)
    print(f"mgdm jobs: {len(todo) - failed - skipped} done, {failed} failed, {skipped} not started "
          "(deadline)", flush=True)
    return failed
