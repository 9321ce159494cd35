"""Stage `train_ddpm`: a class-conditional DDPM with per-sample label dropout, EMA and resume."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from mgdm.config import DDPMConfig
from mgdm.data.splits import Dataset
from mgdm.diffusion.unet import make_unet, scheduler_config, train_scheduler, unet_config
from mgdm.files import load_training_state, save_model, save_training_state
from mgdm.training import LossHistory, batch_generator, draw_indices, ema_update


def run(dataset: Dataset, cfg: DDPMConfig, out_path: str | Path, seed: int = 0, device: str = "cpu",
        progress: bool = True) -> dict:
    """Train and write the EMA UNet to `out_path` (safetensors + JSON); return metrics and history."""
    out_path = Path(out_path)
    resume_path = out_path.with_name("resume.safetensors")
    images, labels = dataset.tensors("train")
    images, labels = images.to(device), labels.to(device)
    net_cfg = unet_config(cfg, dataset.image_size, dataset.channels, dataset.num_classes)
    sched_cfg = scheduler_config(cfg)
    torch.manual_seed(seed)
    unet = make_unet(net_cfg).to(device)
    ema = copy.deepcopy(unet).requires_grad_(False)
    scheduler = train_scheduler(sched_cfg)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    # `steps` is left out: raising it continues a finished run instead of starting over.
    meta = {"config": cfg.model_dump(exclude={"steps", "checkpoint_every"}), "seed": seed, "dataset": dataset.name}
    start = load_training_state(resume_path, {"unet": unet, "ema": ema}, opt, meta)
    if start:
        print(f"resuming from {resume_path} at step {start}")
    null = dataset.num_classes
    losses, t0 = LossHistory(), time.time()
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="train_ddpm", disable=not progress)
    for step in bar:
        g = batch_generator(seed, step)
        idx = draw_indices(labels.cpu(), cfg.batch_size, cfg.class_balanced, g).to(device)
        x0, y = images[idx], labels[idx]
        # Per-sample label dropout: every batch trains both the conditional and the null model.
        drop = (torch.rand(len(y), generator=g) < cfg.label_dropout).to(device)
        y = torch.where(drop, torch.full_like(y, null), y)
        noise = torch.randn(x0.shape, generator=g).to(device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(y),), generator=g).to(device)
        loss = F.mse_loss(unet(scheduler.add_noise(x0, noise, t), t, class_labels=y).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema_update(ema, unet, cfg.ema_decay, step)
        losses.add(step, loss.item(), step + 1 == cfg.steps, bar)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            save_training_state(resume_path, step + 1, {"unet": unet, "ema": ema}, opt, meta)
    save_model(out_path, ema, {"kind": "ddpm", "unet": net_cfg, "scheduler": sched_cfg,
                               "num_classes": dataset.num_classes, "null_label": null, "dataset": dataset.name})
    params = sum(p.numel() for p in unet.parameters())
    return {"metrics": {"final_loss": losses.final, "parameters": params, "steps": cfg.steps,
                        "resumed_from": start, "train_s": time.time() - t0}, "history": {"loss": losses.points}}


def load_ddpm(path: str | Path, device: str = "cpu"):
    """Return (EMA UNet in eval mode, its JSON config)."""
    from mgdm.files import load_model_config, load_weights

    config = load_model_config(path)
    unet = load_weights(path, make_unet(config["unet"])).to(device).eval().requires_grad_(False)
    return unet, config
