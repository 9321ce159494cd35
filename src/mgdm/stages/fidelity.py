"""Stage `fidelity`: torch-fidelity's FID / IS / KID / precision-recall of one synthetic set against the real
training split, beside the held-out real floor (mgdm.metrics.fidelity)."""

from __future__ import annotations

from pathlib import Path

from mgdm.config import FidelityConfig
from mgdm.data.splits import Dataset
from mgdm.metrics.fidelity import score_set
from mgdm.stages import StageResult


def run(dataset: Dataset, samples: str | Path, reference_net: str | Path, cfg: FidelityConfig,
        device: str = "cpu") -> StageResult:
    return StageResult.of(score_set(dataset, samples, reference_net, cfg, device))


def main(config, plan, a) -> StageResult:
    samples = plan.paths("sample", dataset=a.dataset, set=a.set)[f"{a.set}.npz"]
    reference = plan.paths("train_reference_net", dataset=a.dataset)["model.safetensors"]
    return run(Dataset(plan.dataset_file(a.dataset)), samples, reference, config.profile.fidelity,
               config.profile.device)
