"""Stage `analyze`: every synthetic set in the reference net's feature space beside the real floor
(mgdm.analysis.distribution): entropy, class centres, embedding, density/coverage, KS tests, colour."""

from __future__ import annotations

from pathlib import Path

from mgdm.analysis.distribution import analyze_sets
from mgdm.config import AnalysisConfig
from mgdm.data.splits import Dataset
from mgdm.stages import StageResult


def run(dataset: Dataset, reference_net: str | Path, sets: dict[str, str | Path], cfg: AnalysisConfig,
        figures: dict[str, str | Path], device: str = "cpu") -> StageResult:
    return StageResult.of(analyze_sets(dataset, reference_net, sets, cfg, figures, device), list(figures.values()))


def main(config, plan, a) -> StageResult:
    out = plan.paths("analyze", dataset=a.dataset)
    sets = {s: plan.paths("sample", dataset=a.dataset, set=s)[f"{s}.npz"] for s in config.sample_sets()}
    figures = {k: out[f"{a.dataset}_{k}.png"] for k in ("entropy", "embedding", "samples")}
    reference = plan.paths("train_reference_net", dataset=a.dataset)["model.safetensors"]
    return run(Dataset(plan.dataset_file(a.dataset)), reference, sets, config.profile.analysis, figures,
               config.profile.device)
