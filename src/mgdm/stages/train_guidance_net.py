"""Stage `train_guidance_net`: the noise-conditioned classifier that guidance differentiates
(mgdm.guidance.train), on real images noised by the DDPM's own schedule; resumes."""

from __future__ import annotations

from pathlib import Path

from mgdm.config import DDPMConfig, GuidanceNetConfig
from mgdm.data.splits import Dataset
from mgdm.guidance.train import train_guidance_net
from mgdm.stages import StageResult


def run(dataset: Dataset, cfg: GuidanceNetConfig, ddpm_cfg: DDPMConfig, out_path: str | Path, seed: int = 0,
        device: str = "cpu", progress: bool = True) -> StageResult:
    """Train the guidance net and write it to `out_path`; metrics: validation accuracy per noise level."""
    return StageResult.of(train_guidance_net(dataset, cfg, ddpm_cfg, out_path, seed, device, progress))


def main(config, plan, a) -> StageResult:
    p = config.profile
    out = plan.paths("train_guidance_net", dataset=a.dataset)
    return run(Dataset(plan.dataset_file(a.dataset)), p.guidance_net, p.ddpm, out["model.safetensors"],
               p.guidance_net.seed, p.device, a.progress)
