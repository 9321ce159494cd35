"""Stage `train_group`: every downstream run of one network (real-only and each synthetic set, each seed)
trained together in one process, for profiles with `downstream.grouped`: one Snakemake, DVC or SLURM job per
network instead of one per run. Each run writes what train_baseline or train_classifier writes alone, with
the same result (`mgdm.classifiers.train.train_runs`: a run's result does not depend on its group).

The unit of rerun stays the run. Both workflow managers delete a job's outputs before they run it, so each
finished run is also kept in its network's run cache (`.runs/` beside the runs), under a key of everything
its result depends on: stage, network, seed and set, the stage's settings, the digests of the data and of the
synthetic set, the training code, the device and, on a CPU, the thread count. Adding a seed or a set, or
resampling one set, retrains only the runs whose key is new; the others are restored as they were written
(their wall clock is the one measured when they trained).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

from mgdm.stages import StageResult
from mgdm.stages.train_baseline import main_group  # the training code of this stage (mgdm.workflow.sources)


def group_jobs(plan, a) -> list[tuple[str, argparse.Namespace]]:
    """The group's runs as (stage, the arguments `mgdm <stage>` would parse), seed by seed."""
    from mgdm.workflow.jobs import downstream_jobs
    from mgdm.workflow.runner import job_args

    return [(stage, job_args(a.params, a.profile, stage, {**w, "seed": int(w["seed"])}, device=a.device,
                             progress=a.progress, no_mlflow=a.no_mlflow, threads=a.threads))
            for stage, w, _ in downstream_jobs(plan) if w["dataset"] == a.dataset and w["network"] == a.network]


def _digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_key(config, plan, stage: str, a: argparse.Namespace) -> str:
    """What one run's result depends on, hashed: a run with the same key would train to the same files."""
    from importlib.metadata import version

    from mgdm.machine import cpu_threads
    from mgdm.workflow.sources import SOURCE_ROOT, package_root, stage_sources
    from mgdm.workflow.stages import STAGES

    wildcards = {k: str(getattr(a, k)) for k in STAGES[stage].matrix}
    files = [plan.dataset_file(a.dataset)]
    if stage == "train_classifier":
        files.append(plan.paths("sample", dataset=a.dataset, set=a.set)[f"{a.set}.npz"])
    # the code that trains, wherever the process started (a workdir's src/ may be another version's), named as
    # in a checkout (src/mgdm/...); none where the modules are not files (a zipped install): the version then
    root = package_root()
    code = {(SOURCE_ROOT / Path(f).relative_to(root)).as_posix(): _digest(f)
            for f in stage_sources(str(root)).get(stage, [])}
    what = {"stage": stage, **wildcards, "settings": plan.settings(stage, **wildcards),
            "device": config.profile.device, "threads": cpu_threads(config.profile.device),
            "version": None if code else version("mgdm"),
            "files": [_digest(f) for f in files], "code": code}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:20]


class RunCache:
    """Finished runs of one network, by key: <runs folder>/.runs/<key>/<file name>."""

    def __init__(self, folder: str | Path):
        self.dir = Path(folder) / ".runs"

    def restore(self, key: str, files: list[str]) -> bool:
        cached = [self.dir / key / Path(f).name for f in files]
        if not all(c.exists() for c in cached):
            return False
        for c, f in zip(cached, files):
            Path(f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(c, f)
        return True

    def store(self, key: str, files: list[str]) -> None:
        tmp = self.dir / f"{key}.tmp"  # renamed into place whole: a killed store leaves no half entry
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for f in files:
            shutil.copyfile(f, tmp / Path(f).name)
        shutil.rmtree(self.dir / key, ignore_errors=True)
        tmp.rename(self.dir / key)


def run(config, plan, jobs: list[tuple[str, argparse.Namespace]], cache: RunCache) -> dict:
    """Restore the runs the cache has, train the others together (each writing its files and MLflow run as
    it would alone), keep each in the cache as it finishes; return how many of each."""
    from mgdm.workflow.runner import job_outputs, train_together

    todo = []
    for stage, a in jobs:
        key, files = run_key(config, plan, stage, a), job_outputs(stage, a, config, plan)[1]
        if cache.restore(key, files):
            print(f"mgdm train_group: {stage} {getattr(a, 'set', 'real')} seed {a.seed}: restored from "
                  f"{cache.dir / key}", flush=True)
        else:
            todo.append((stage, a, key, files))
    if todo:  # each run kept as it finishes: a killed group loses only the run it was training
        train_together(config, plan, [(stage, a) for stage, a, _, _ in todo], main_group,
                       finished=lambda i: cache.store(todo[i][2], todo[i][3]))
    return {"runs": len(jobs), "trained": len(todo), "restored": len(jobs) - len(todo)}


def main(config, plan, a) -> StageResult:
    jobs = group_jobs(plan, a)
    folder = Path(plan.metrics_path("train_group", dataset=a.dataset, network=a.network)).parent
    return StageResult.of({"metrics": run(config, plan, jobs, RunCache(folder))})
