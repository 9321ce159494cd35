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

from mgdm.config import ConfigError, load
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


def run_stage(stage: str, a: argparse.Namespace) -> int:
    from mgdm.files import FileError, check_writable, write_json
    from mgdm.machine import device_name

    config = load(a.params, a.profile)
    if a.device:  # the card at hand instead of the profile's; the metrics JSON names the machine it ran on
        config.profile = config.profile.model_copy(update={"device": a.device})
    plan = Plan(config, a.params)
    wildcards = {k: getattr(a, k) for k in STAGES[stage].matrix}
    values = plan.owner(stage).values
    for k, v in wildcards.items():
        if str(v) not in values[k]:
            raise ConfigError(f"{a.params} (profile {plan.profile!r}): {k} {v!r} is not in this profile's "
                              f"{k}s {values[k]} (a dvc.yaml written for other settings? `mgdm dvc-yaml`)")
    outputs = [p.format(**wildcards) for p in plan.outputs(stage)]
    if getattr(a, "from_records", False):  # the records are this run's input: never removed on failure
        outputs = [p for p in outputs if "/records/" not in p]
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    start = time.time()
    try:
        check_writable(outputs)  # before work starts, not after an hour of training
        result = importlib.import_module(STAGES[stage].module).main(config, plan, a)
        summary = dict(result.metrics)
        summary["wall_s"] = time.time() - start
        summary["machine"] = device_name(config.profile.device)  # what wall_s was measured on
        metrics_path = plan.metrics_path(stage, **wildcards)
        write_json(metrics_path, summary)
    except BaseException as err:
        remove(outputs)
        if isinstance(err, (ConfigError, FileError, FileNotFoundError)):
            print(f"mgdm {stage}: error: {err}", file=sys.stderr)
            return 2
        raise
    if not a.no_mlflow:
        from mgdm.workflow.tracking import DEFAULT_URI, dataset_input, git_commit, log_stage

        uri = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI)
        tags = {"stage": stage, "profile": plan.profile, "git_commit": git_commit(),
                **{k: str(v) for k, v in wildcards.items()}}
        if "set" in wildcards:
            tags["guidance"] = wildcards["set"].split("-s")[0]
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
                  [metrics_path, *result.artifacts], start=start, end=start + summary["wall_s"], inputs=inputs)
    print(f"mgdm {stage}: done in {summary['wall_s']:.1f} s -> {metrics_path}")
    return 0
