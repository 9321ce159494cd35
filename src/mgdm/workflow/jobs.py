"""`mgdm jobs`: run a profile's downstream jobs in a pool of worker processes, without Snakemake.

For a machine where Snakemake is not installed (a lent GPU node, a container) and many small jobs
share one accelerator: each worker takes a group (a dataset's unfinished runs of one network, or part of
them where workers outnumber networks) and trains its runs together in one process
(`mgdm.classifiers.train.train_runs`: data on the device once, no process start per run), writing what
each job writes alone, with the stages' own metrics and failure handling.
A group not started before `deadline_s` is left whole; a job whose metrics JSON exists is skipped, and a
killed group resumes each run from its last state, so a stopped pool resumes where it stopped.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from collections import Counter
from pathlib import Path

from mgdm.analysis.tables import downstream_job
from mgdm.config import load
from mgdm.interrupts import SIGNALS, Interrupted, request_stop
from mgdm.workflow.plan import Plan
from mgdm.workflow.runner import checked_device


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


def groups(jobs: list[tuple[str, dict]], workers: int = 1) -> list[list[tuple[str, dict]]]:
    """The jobs by (dataset, network), in the order they come: each group trains in one process. With fewer
    groups than workers the largest is halved (in order) until every worker has one: a run's result does
    not depend on the runs it is grouped with, so one network's 18 runs on two workers are 9 and 9."""
    out: dict[tuple, list] = {}
    for stage, w in jobs:
        out.setdefault((w["dataset"], w["network"]), []).append((stage, w))
    grouped = list(out.values())
    while 0 < len(grouped) < workers:
        i = max(range(len(grouped)), key=lambda k: len(grouped[k]))
        big = grouped[i]
        if len(big) < 2:
            break
        grouped[i:i + 1] = [big[:(len(big) + 1) // 2], big[(len(big) + 1) // 2:]]
    return grouped


_stop = None  # a worker's copy of the pool's stop event and signal (set by `_worker_start`)


def _worker_start(stop, signum) -> None:
    """A worker leaves Ctrl-C and SIGTERM to its parent, which tells it through `stop`: a signal to the whole
    process group (a terminal's Ctrl-C, scancel) would otherwise reach it twice, and a worker a signal ended would
    leave the pool waiting for its result."""
    global _stop
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    _stop = stop

    def told():
        stop.wait()
        request_stop(signum.value)  # the group keeps its states at its next boundary and ends

    threading.Thread(target=told, daemon=True).start()


def _work(job: tuple[list[tuple[str, dict]], str, str, str | None, float]) -> tuple[list, int | None, float]:
    group, params, profile, device, deadline = job
    if time.time() > deadline or (_stop is not None and _stop.is_set()):
        return group, None, 0.0  # not started: past the deadline, or the pool is stopping
    from mgdm.workflow.runner import job_args, run_group

    start = time.time()
    try:
        rc = run_group([(stage, job_args(params, profile, stage, w, device=device, progress=False, no_mlflow=True,
                                         threads=1)) for stage, w in group])
    except Exception as err:  # the group removed its outputs; report and go on with the others
        print(f"mgdm jobs: {group[0][1]['network']}: {type(err).__name__}: {err}", flush=True)
        rc = 1
    return group, rc, time.time() - start


def _outcome(plan: Plan, group: list[tuple[str, dict]], rc: int | None) -> dict[str, int]:
    """How many of a group's jobs are done, failed, stopped or not started, from its exit code: a failed or
    stopped group's runs that finished first are whole (each writes its metrics JSON last)."""
    if rc is None:
        return {"not started": len(group)}
    done = len(group) if rc == 0 else sum(Path(plan.metrics_path(stage, **w)).exists() for stage, w in group)
    return {"done": done, "stopped" if rc >= 128 else "failed": len(group) - done}


def run(plan: Plan, workers: int, deadline_s: float | None = None, networks: list[str] | None = None,
        seeds: list[int] | None = None, device: str | None = None) -> int:
    """Run the unfinished downstream jobs (of `networks` and `seeds`, default all) on `workers` processes,
    on `device` (default: the profile's), one group of a dataset and network at a time per worker;
    return how many jobs failed."""
    todo = [(stage, {k: (int(v) if k == "seed" else v) for k, v in w.items()}) for stage, w, path in
            downstream_jobs(plan) if not Path(path).exists() and (not networks or w["network"] in networks)
            and (not seeds or int(w["seed"]) in seeds)]
    grouped = groups(todo, workers)
    deadline = time.time() + (deadline_s if deadline_s is not None else float("inf"))
    print(f"mgdm jobs: {len(todo)} jobs to run on {workers} workers, in {len(grouped)} groups (one process "
          "trains a dataset's runs of one network together)", flush=True)
    tally = Counter()
    ctx = multiprocessing.get_context("spawn")  # no CUDA state forked into the workers
    stop, signum = ctx.Event(), ctx.Value("i", 0)
    with ctx.Pool(workers, initializer=_worker_start, initargs=(stop, signum)) as pool:
        work = [(g, plan.params_file, plan.profile, device, deadline) for g in grouped]
        results, i = pool.imap_unordered(_work, work), 0
        try:
            while True:
                try:
                    group, rc, seconds = next(results)
                    i += 1
                    tally.update(_outcome(plan, group, rc))
                    if rc is not None:
                        w, said = group[0][1], "done" if rc == 0 else "stopped" if rc >= 128 else "FAILED"
                        print(f"mgdm jobs: [{i}/{len(grouped)}] {said} in {seconds:.1f} s: {w['dataset']} "
                              f"{w['network']}, {len(group)} runs", flush=True)
                except StopIteration:
                    break
                except Interrupted as err:
                    if stop.is_set():
                        raise  # a second signal: now, at the cost of the epochs under way
                    signum.value = err.signum
                    stop.set()
                    print(f"mgdm jobs: {signal.Signals(err.signum).name}: each running group keeps its states at "
                          "its next epoch's end and stops, no other starts (again to stop at once)", flush=True)
        except BaseException:
            for worker in multiprocessing.active_children():  # they ignore the SIGTERM that terminate() sends
                worker.kill()
            raise
        pool.close()  # the workers end on the pool's "no more work", not on the SIGTERM they ignore
        pool.join()
    kept = f"{tally['stopped']} stopped (the run under way in each group kept its state), " if stop.is_set() else ""
    print(f"mgdm jobs: {tally['done']} done, {tally['failed']} failed, {kept}{tally['not started']} not started "
          f"({'stopped' if stop.is_set() else 'deadline'})", flush=True)
    if stop.is_set():
        raise Interrupted(signum.value)  # the command ends as a signal ends it: 128 + its number
    return tally["failed"]


def main(a) -> int:
    config = load(a.params, a.profile)
    networks, seeds = config.chosen("networks", a.networks), config.chosen("seeds", a.seeds)
    checked_device(a, config)  # here, not in each worker's first job
    deadline = None if a.deadline_min is None else 60 * a.deadline_min
    failed = run(Plan(config, a.params), a.workers, deadline, networks, seeds, a.device)
    return 1 if failed else 0
