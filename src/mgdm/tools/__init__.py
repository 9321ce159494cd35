"""Commands outside the DAG: benchmark, generator sweep, zoo survey, training length, scale calibration, power,
run-by-run comparison of two run records."""

from __future__ import annotations


# the tools that train or sample on the profile's device (the others read records, or time on the CPU unless
# benchmark is given --device)
COMPUTE = ("calibrate-scales", "copies-control", "sweep-generator", "training-length", "survey-zoo")


def open_tool(a):
    """Load the profile, apply --threads, pick --dataset (default: the profile's first): the shared start of the
    commands outside the DAG. Returns (config, plan, dataset name)."""
    from mgdm.config import load
    from mgdm.workflow.plan import Plan
    from mgdm.workflow.runner import check_in_profile, checked_device

    config = load(a.params, a.profile)
    plan = Plan(config, a.params)
    name = a.dataset or plan.values["dataset"][0]
    # else a tool would read another profile's files, or write a table of nothing
    check_in_profile(a, plan, "dataset", name, plan.values["dataset"])
    if getattr(a, "device", None) or (a.command in COMPUTE and not getattr(a, "from_records", False)):
        checked_device(a, config)
    if getattr(a, "threads", 0):
        import torch

        torch.set_num_threads(a.threads)
    return config, plan, name


def profile_runs(plan, name: str):
    """(the profile's records/runs.csv, its runs on dataset `name`): what the tools that read run records start from."""
    from pathlib import Path

    from mgdm.analysis.tables import read_runs

    records = Path(plan.paths("report")["runs.csv"])
    runs = read_runs(records)
    return records, runs[runs["dataset"] == name]


def open_dataset(plan, name: str):
    from mgdm.data.splits import Dataset

    return Dataset(plan.dataset_file(name))


def set_class_counts(config, plan, name: str, classes: int) -> dict:
    """{set: its images per class} of the profile's downstream sets on dataset `name`, from the sets' files."""
    from mgdm.analysis.controls import class_counts
    from mgdm.files import read_npz

    return {s: class_counts(read_npz(plan.paths("sample", dataset=name, set=s)[f"{s}.npz"])["labels"], classes)
            for s in config.downstream_sets()}
