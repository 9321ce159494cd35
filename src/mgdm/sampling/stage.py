"""Stage `sample`: one synthetic set (a guidance at a scale) from the DDPM and the guidance net."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mgdm.config import SamplingConfig, parse_set_name
from mgdm.diffusion.train import load_ddpm, model_normalization
from mgdm.diffusion.unet import ddim_schedulers
from mgdm.files import write_image_grid, write_npz
from mgdm.guidance.measures import EPISTEMIC, MEASURES
from mgdm.guidance.train import load_guidance_net
from mgdm.sampling.ddim import guided_ddim, mgdm_two_stage


def label_plan(cfg: SamplingConfig, train_counts: list[int]) -> np.ndarray:
    """Return the class label of every image to draw: `per_class` each, or the training proportions."""
    k = len(train_counts)
    if cfg.class_counts == "balanced":
        counts = [cfg.per_class] * k
    else:
        total = cfg.per_class * k
        counts = [max(1, round(total * c / sum(train_counts))) for c in train_counts]
    return np.repeat(np.arange(k), counts)


def sample_batch(unet, guidance_net, noise, y, guidance: str, scale: float, cfg: SamplingConfig, null_label: int,
                 sampler, inverter, generator) -> torch.Tensor:
    """Return x_0 (in the DDPM's normalized space) for one batch under `guidance` at `scale`."""
    common = dict(null_label=null_label)
    if guidance == "mgdm":
        stage1 = cfg.mgdm.stage1
        mc = cfg.mc_samples if cfg.mgdm.measure in EPISTEMIC else 0
        return mgdm_two_stage(unet, noise, y, sampler, inverter, cfg.ddim_steps, guidance_net=guidance_net,
                              measure=MEASURES[cfg.mgdm.measure], scale=scale, mc_samples=mc,
                              stage1_measure=MEASURES["classifier"] if stage1 == "classifier" else None,
                              stage1_scale=cfg.mgdm.stage1_scale if stage1 == "classifier" else 0.0,
                              stage1_cfg=cfg.mgdm.stage1_scale if stage1 == "cfg" else 0.0, **common)
    if guidance == "cfg":
        return guided_ddim(unet, noise, y, sampler, cfg.ddim_steps, cfg_scale=scale, eta=cfg.eta,
                           generator=generator, **common)
    measure = MEASURES.get(guidance)  # None for "none"
    return guided_ddim(unet, noise, y, sampler, cfg.ddim_steps, guidance_net=guidance_net, measure=measure,
                       scale=scale if measure else 0.0, mc_samples=cfg.mc_samples if guidance in EPISTEMIC else 0,
                       eta=cfg.eta, generator=generator, **common)


def run(ddpm_path: str | Path, guidance_path: str | Path, set_name: str, cfg: SamplingConfig,
        train_counts: list[int], out_npz: str | Path, out_png: str | Path, device: str = "cpu",
        progress: bool = True) -> dict:
    """Write the set's .npz (uint8 images, labels, per-image metadata) and PNG grid; return metrics."""
    guidance, scale = parse_set_name(set_name)
    unet, ddpm_cfg = load_ddpm(ddpm_path, device)
    guidance_net = load_guidance_net(guidance_path, device)
    sampler, inverter = ddim_schedulers(ddpm_cfg["scheduler"])
    norm = model_normalization(ddpm_cfg)
    labels = label_plan(cfg, train_counts)
    # The same seed for every set: set k's image i starts from the same noise as in every other set,
    # so sets differ only by their guidance (paired comparisons).
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # MC-dropout masks (bald) draw from the global generator
    noise = torch.randn(len(labels), unet.config.in_channels, unet.config.sample_size, unet.config.sample_size,
                        generator=g)
    out, t0 = [], time.time()
    for i in tqdm(range(0, len(labels), cfg.batch_size), desc=f"sample {set_name}", disable=not progress):
        y = torch.from_numpy(labels[i:i + cfg.batch_size]).to(device)
        x = sample_batch(unet, guidance_net, noise[i:i + cfg.batch_size].to(device), y, guidance, scale, cfg,
                         ddpm_cfg["null_label"], sampler, inverter, g)
        out.append(norm.decode(x))
    images, wall = np.concatenate(out), time.time() - t0
    n = len(labels)
    write_npz(out_npz, images=images, labels=labels.astype(np.int64), guidance=np.full(n, guidance),
              scale=np.full(n, scale, np.float32), source_index=np.arange(n), ddim_steps=np.full(n, cfg.ddim_steps),
              stage1=np.full(n, cfg.mgdm.stage1 if guidance == "mgdm" else ""))
    write_image_grid(out_png, images, labels)
    return {"metrics": {"n_images": n, "sample_s": wall, "images_per_s": n / wall},
            "params": {"guidance": guidance, "scale": scale}}
