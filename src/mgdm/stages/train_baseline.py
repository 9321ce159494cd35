"""Stage `train_baseline`: a downstream network on real images only, scored on the test split: the
reference every synthetic set is paired against (same network, seed and data order)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mgdm.classifiers.score import Job, train_and_score, train_and_score_group
from mgdm.config import DownstreamConfig
from mgdm.data.splits import Dataset
from mgdm.stages import StageResult


def run(dataset: Dataset, network: str, cfg: DownstreamConfig, seed: int, predictions_path: str | Path,
        resume_path: str | Path, synthetic: str | Path | None = None, device: str = "cpu",
        progress: bool = True) -> StageResult:
    """Train on real (+ `synthetic`) images, select on validation AUC, write the test predictions."""
    return StageResult.of(train_and_score(dataset, network, cfg, seed, synthetic, device=device, progress=progress,
                                          predictions_path=predictions_path, resume_path=resume_path))


def job_files(plan, stage: str, a) -> dict:
    """A downstream job's test-prediction file and its resume state (beside its metrics JSON)."""
    from mgdm.workflow.stages import STAGES

    out = plan.paths(stage, **{k: getattr(a, k) for k in STAGES[stage].matrix})
    return {"predictions_path": out[f"seed{a.seed}_test.npz"],
            "resume_path": out[f"seed{a.seed}.json"].replace(".json", ".resume.safetensors")}


def main(config, plan, a) -> StageResult:
    return run(Dataset(plan.dataset_file(a.dataset)), a.network, config.profile.downstream, a.seed,
               device=config.profile.device, progress=a.progress, **job_files(plan, "train_baseline", a))


def main_group(config, plan, jobs: list[tuple[str, object]]) -> Iterator[tuple[StageResult, float]]:
    """Downstream jobs (train_baseline, train_classifier) of one dataset and network trained together
    (`mgdm jobs`, train_group); per job, as it finishes, its result and its own wall clock."""
    first = jobs[0][1]
    specs = [Job(a.seed, plan.paths("sample", dataset=a.dataset, set=a.set)[f"{a.set}.npz"]
                 if stage == "train_classifier" else None, **job_files(plan, stage, a)) for stage, a in jobs]
    results = train_and_score_group(Dataset(plan.dataset_file(first.dataset)), first.network,
                                    config.profile.downstream, specs, config.profile.device, first.progress)
    for r in results:
        yield StageResult.of({k: v for k, v in r.items() if k != "wall_s"}), r["wall_s"]
