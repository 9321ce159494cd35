"""Stage `train_classifier`: a downstream network on real images plus one synthetic set, scored on the test
split; paired with train_baseline's run of the same network and seed."""

from __future__ import annotations

from mgdm.data.splits import Dataset
from mgdm.stages import StageResult
from mgdm.stages.train_baseline import job_files, run

__all__ = ["main", "run"]


def main(config, plan, a) -> StageResult:
    samples = plan.paths("sample", dataset=a.dataset, set=a.set)[f"{a.set}.npz"]
    return run(Dataset(plan.dataset_file(a.dataset)), a.network, config.profile.downstream, a.seed,
               synthetic=samples, device=config.profile.device, progress=a.progress,
               **job_files(plan, "train_classifier", a))
