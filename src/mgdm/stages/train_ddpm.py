"""Stage `train_ddpm`: the class-conditional DDPM (mgdm.diffusion.train), scored every `probe_every` steps by
the fidelity probe in the reference net's features; resumes from its last checkpoint."""

from __future__ import annotations

from pathlib import Path

from mgdm.config import DDPMConfig
from mgdm.data.splits import Dataset
from mgdm.diffusion.train import Probe, train_ddpm
from mgdm.stages import StageResult


def run(dataset: Dataset, cfg: DDPMConfig, out_path: str | Path, seed: int = 0, device: str = "cpu",
        progress: bool = True, probe: Probe | None = None) -> StageResult:
    """Train the DDPM on the real training split and write its EMA weights to `out_path`."""
    return StageResult.of(train_ddpm(dataset, cfg, out_path, seed, device, progress, probe))


def main(config, plan, a) -> StageResult:
    from mgdm.metrics.probe import FidelityProbe

    p, dataset = config.profile, Dataset(plan.dataset_file(a.dataset))
    reference = plan.paths("train_reference_net", dataset=a.dataset)["model.safetensors"]
    probe = FidelityProbe(dataset, reference, p.ddpm.probe_images, p.ddpm.probe_steps, p.sampling.seed, p.device,
                          p.analysis.knn_k)
    out = plan.paths("train_ddpm", dataset=a.dataset)
    return run(dataset, p.ddpm, out["model.safetensors"], p.ddpm.seed, p.device, a.progress, probe)
