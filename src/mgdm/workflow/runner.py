"""Run one stage as the CLI, Snakemake, DVC and `mgdm jobs` all do: validate the settings and wildcards,
check the outputs are writable, call the stage's handler (found through the stage table), write its
metrics JSON with wall clock and machine, log the run to MLflow; on failure print one line, remove the
job's outputs and exit non-zero."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

from mgdm.config import ConfigError, load, parse_set_name
from mgdm.interrupts import Interrupted, interruptible
from mgdm.workflow.plan import Plan
from mgdm.workflow.stages import DATA, SAMPLES, STAGES


def remove(outputs: list[str]) -> None:
    """A failed job leaves nothing that looks finished (older outputs of the job included)."""
    for p in outputs:
        try:
            Path(p).unlink(missing_ok=True)
        except OSError:  # e.g. under a path that is a file: nothing there to remove
            pass


def job_args(params: str, profile: str, stage: str, wildcards: dict, **options) -> argparse.Namespace:
    """The arguments `mgdm <stage>` would parse for one job (for running stages in-process)."""
    defaults = dict(params=params, profile=profile, threads=0, device=None, progress=True, no_mlflow=False,
                    images_only=False, from_records=False, seeds=None, networks=None)
    return argparse.Namespace(**{**defaults, **wildcards, **options})


def checked_device(a: argparse.Namespace, config) -> str:
    """The device a job computes on (--device, else the profile's), refused in one line where torch cannot use it."""
    from mgdm.machine import check_device

    if getattr(a, "device", None):  # (most tools have no --device)
        return check_device(a.device)
    return check_device(config.profile.device, f"{a.params} (profile {config.profile.name!r}): device")


def _load(a: argparse.Namespace) -> tuple:
    """The settings and plan a job runs under (the card at hand replaces the profile's device; the metrics JSON
    names the machine it ran on)."""
    config = load(a.params, a.profile)
    if a.device:
        config.profile = config.profile.model_copy(update={"device": a.device})
    return config, Plan(config, a.params)


def check_in_profile(a: argparse.Namespace, plan: Plan, key: str, value, values: list[str], hint: str = "") -> None:
    """Refuse a wildcard value (a dataset, set, network, seed) the profile does not have, in one line."""
    if str(value) not in values:
        raise ConfigError(f"{a.params} (profile {plan.profile!r}): {key} {value!r} is not in this profile's "
                          f"{key}s ({', '.join(values)}){hint}")  # values as in params.yaml: seeds unquoted


def job_outputs(stage: str, a: argparse.Namespace, config, plan: Plan):
    """Wildcards and outputs of one job, its wildcards checked against the profile."""
    wildcards = {k: getattr(a, k) for k in STAGES[stage].matrix}
    values = plan.owner(stage).values
    for k, v in wildcards.items():
        check_in_profile(a, plan, k, v, values[k], " (a dvc.yaml written for other settings? `mgdm dvc-yaml`)")
    outputs = [p.format(**wildcards) for p in plan.outputs(stage)]
    if getattr(a, "from_records", False):  # the records are this run's input: never removed on failure
        outputs = [p for p in outputs if "/records/" not in p]
    return wildcards, outputs


def _finish(stage: str, a: argparse.Namespace, config, plan: Plan, wildcards: dict, result, start: float,
            wall_s: float) -> None:
    """Write a finished job's metrics JSON (with wall clock and machine) and log it to MLflow."""
    from mgdm.files import write_json
    from mgdm.machine import cpu_threads, device_name

    summary = dict(result.metrics)
    summary["wall_s"] = wall_s
    summary["machine"] = device_name(config.profile.device)  # what wall_s was measured on
    summary["threads"] = cpu_threads(config.profile.device)  # a CPU result depends on them too
    metrics_path = plan.metrics_path(stage, **wildcards)
    write_json(metrics_path, summary)
    if not a.no_mlflow:
        from mgdm.workflow.tracking import DEFAULT_URI, dataset_input, git_commit, log_stage

        uri = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI)
        tags = {"stage": stage, "profile": plan.profile, "git_commit": git_commit(),
                **{k: str(v) for k, v in wildcards.items()}}
        if "set" in wildcards:
            tags["guidance"] = parse_set_name(wildcards["set"])[0]
        params = {**result.params, **json.loads(plan.settings(stage, **wildcards))}
        name = "/".join([stage, *map(str, wildcards.values())])
        inputs = []  # the data it read, as MLflow datasets: the real training split, and a synthetic set
        if DATA in (*STAGES[stage].deps, *STAGES[stage].outs):
            inputs.append(dataset_input(plan.paths("preprocess", dataset=a.dataset)["dataset.npz"],
                                        f"{a.dataset}-train", "training"))
        if SAMPLES in STAGES[stage].deps and "set" in wildcards:  # one set (analyze gathers them all)
            inputs.append(dataset_input(plan.paths("sample", dataset=a.dataset, set=a.set)[f"{a.set}.npz"],
                                        f"{a.dataset}-{a.set}", "synthetic"))
        log_stage(uri, f"mgdm-{plan.profile}", name, tags, params, summary, result.history,
                  [metrics_path, *result.artifacts], start=start, end=start + wall_s, inputs=inputs)
    print(f"mgdm {stage}: done in {wall_s:.1f} s -> {metrics_path}")


def _fail(err: BaseException, stage: str, outputs: list[str], made: list) -> int:
    from mgdm.files import FileError, remove_empty

    remove(outputs)
    remove_empty(made)  # the folders this job made for its outputs, if nothing else is in them
    if isinstance(err, Interrupted):
        kept = ", its resume state kept; rerun to continue from there" if err.where else \
            "; a rerun continues from what it kept (resume states, finished sample batches), if anything"
        print(f"mgdm {stage}: {err}{kept}", file=sys.stderr)
        return 128 + err.signum  # as a shell reports a process a signal ended
    if isinstance(err, (ConfigError, FileError, FileNotFoundError)):
        print(f"mgdm {stage}: error: {err}", file=sys.stderr)
        return 2
    raise err


def run_stage(stage: str, a: argparse.Namespace) -> int:
    from mgdm.files import check_writable, new_folders, remove_temporaries

    config, plan = _load(a)
    wildcards, outputs = job_outputs(stage, a, config, plan)
    if STAGES[stage].on_device or a.device:  # the machine after the arguments
        checked_device(a, config)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    start, made = time.time(), new_folders(outputs)
    try:
        with interruptible():  # Ctrl-C and SIGTERM end the job in one line, a training loop's state kept
            check_writable(outputs)  # before work starts, not after an hour of training
            if not a.no_mlflow:
                from mgdm.workflow.tracking import DEFAULT_URI, check_server

                check_server(os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI))
            remove_temporaries(outputs)
            result = importlib.import_module(STAGES[stage].module).main(config, plan, a)
            _finish(stage, a, config, plan, wildcards, result, start, time.time() - start)
            if result.recorded is not None:
                result.recorded()
    except BaseException as err:
        return _fail(err, stage, outputs, made)
    return 0


def train_together(config, plan: Plan, jobs: list[tuple[str, argparse.Namespace]], main_group,
                   finished=lambda i: None) -> None:
    """Downstream jobs of one dataset and network trained together in this process by `main_group`
    (mgdm.stages.train_baseline's): each writes what it writes alone (metrics JSON, MLflow run) as it
    finishes, then `finished(its index)` is called; a job's wall clock is its own training and scoring.
    Raises on failure; the caller removes the outputs."""
    prepared = [(stage, a, *job_outputs(stage, a, config, plan)) for stage, a in jobs]
    start = time.time()
    for i, ((stage, a, wildcards, _), (result, wall_s)) in enumerate(zip(prepared, main_group(config, plan, jobs))):
        _finish(stage, a, config, plan, wildcards, result, start, wall_s)
        finished(i)


def run_group(jobs: list[tuple[str, argparse.Namespace]]) -> int:
    """`train_together` for `mgdm jobs`, with a stage's checks and failure handling: on failure the jobs that
    had not finished are removed (the finished ones are whole, and a rerun skips them). The device is checked
    once by `mgdm jobs` before its workers start."""
    from mgdm.files import check_writable, new_folders, remove_temporaries

    config, plan = _load(jobs[0][1])  # one group: one params file, profile and device
    outputs = [job_outputs(stage, a, config, plan)[1] for stage, a in jobs]
    if jobs[0][1].threads:
        import torch

        torch.set_num_threads(jobs[0][1].threads)
    every = [p for o in outputs for p in o]
    done: set[int] = set()
    made = new_folders(every)
    try:
        with interruptible():
            check_writable(every)
            remove_temporaries(every)
            main_group = importlib.import_module(STAGES["train_baseline"].module).main_group  # stages sit above
            train_together(config, plan, jobs, main_group, finished=done.add)
    except BaseException as err:
        return _fail(err, "train group", [p for i, o in enumerate(outputs) if i not in done for p in o], made)
    return 0
