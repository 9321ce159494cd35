"""Stage `train_reference_net`: the clean classifier whose features score fidelity and distributions."""

from __future__ import annotations

from pathlib import Path

from mgdm.classifiers.score import train_and_score
from mgdm.config import ReferenceNetConfig
from mgdm.data.splits import Dataset
from mgdm.stages import StageResult


def run(dataset: Dataset, cfg: ReferenceNetConfig, model_path: str | Path, device: str = "cpu",
        progress: bool = True) -> StageResult:
    """Train `cfg.network` on real images, keep the epoch with the best validation AUC, write it."""
    resume = Path(model_path).with_name("resume.safetensors")
    return StageResult.of(train_and_score(dataset, cfg.network, cfg, cfg.seed, model_path=model_path, device=device,
                                          progress=progress, resume_path=resume))


def main(config, plan, a) -> StageResult:
    out = plan.paths("train_reference_net", dataset=a.dataset)
    return run(Dataset(plan.dataset_file(a.dataset)), config.profile.reference_net, out["model.safetensors"],
               config.profile.device, a.progress)
