"""The noise-conditioned guidance net's training on noised real images (uniform t), and its loading."""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from mgdm.config import DDPMConfig, GuidanceNetConfig
from mgdm.data.normalization import encode_split
from mgdm.data.splits import Dataset
from mgdm.diffusion.unet import scheduler_config, train_scheduler
from mgdm.files import (load_model_config, load_training_state, load_weights, read_training_info, save_model,
                        save_training_state)
from mgdm.guidance.noisy_classifier import NoisyClassifier
from mgdm.interrupts import stop, stop_at_boundary, stop_requested
from mgdm.training import LossHistory, batch_generator, draw_indices, draw_weights


@torch.no_grad()
def accuracy_by_noise(net, scheduler, images, labels, seed: int) -> dict:
    """Return validation accuracy of `net` on images noised to t = 0, T/4, T/2, 3T/4 and T-1.

    Uncertainty guidance is only as good as this classifier: where it is at chance, its gradient is noise.
    """
    g = torch.Generator().manual_seed(seed)
    out = {}
    T = scheduler.config.num_train_timesteps
    for t in (0, T // 4, T // 2, 3 * T // 4, T - 1):
        tt = torch.full((len(labels),), t, dtype=torch.long)
        noise = torch.randn(images.shape, generator=g)
        pred = net(scheduler.add_noise(images, noise, tt), tt).argmax(-1)
        out[f"val_acc_t{t}"] = (pred == labels).float().mean().item()
    return out


def train_guidance_net(dataset: Dataset, cfg: GuidanceNetConfig, ddpm_cfg: DDPMConfig, out_path: str | Path,
                       seed: int = 0, device: str = "cpu", progress: bool = True) -> dict:
    """Train and write the guidance net; return metrics (val accuracy per noise level) and history."""
    out_path = Path(out_path)
    resume_path = out_path.with_name("resume.safetensors")
    # The guidance net sees exactly what the DDPM's sampler feeds it: x_t in the DDPM's normalized space.
    norm, images, labels = encode_split(dataset, ddpm_cfg.normalization)
    images, labels = images.to(device), labels.to(device)
    sched_cfg = scheduler_config(ddpm_cfg, norm.clip_range)
    scheduler = train_scheduler(sched_cfg)
    torch.manual_seed(seed)
    net_cfg = {"in_channels": dataset.channels, "num_classes": dataset.num_classes, "width": cfg.width,
               "dropout": cfg.dropout}
    net = NoisyClassifier(**net_cfg).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    meta = {"config": cfg.model_dump(exclude={"steps", "checkpoint_every"}), "scheduler": sched_cfg, "seed": seed,
            "dataset": dataset.name}
    start = load_training_state(resume_path, {"net": net}, opt, meta)
    info = read_training_info(resume_path) if start else {}  # the loss curve and training time so far
    losses, t0 = LossHistory(state=info.get("losses")), time.time() - info.get("train_s", 0.0)
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="train_guidance_net",
               disable=not progress)
    weights = draw_weights(labels, cfg.class_balanced)
    with stop_at_boundary():  # Ctrl-C or SIGTERM: the state after the step under way is kept, then stop
        for step in bar:
            # everything random in the step from one generator on the device, in a fixed order: no host sync
            g = batch_generator(seed, step, device)
            idx = draw_indices(len(labels), cfg.batch_size, weights, g)
            x0, y = images[idx], labels[idx]
            noise = torch.randn(x0.shape, generator=g, device=device)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (len(y),), generator=g, device=device)
            loss = F.cross_entropy(net(scheduler.add_noise(x0, noise, t), t), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            last = step + 1 == cfg.steps
            losses.add(step, loss, last, bar)
            stopping = not last and stop_requested()
            if (step + 1) % cfg.checkpoint_every == 0 or last or stopping:
                save_training_state(resume_path, step + 1, {"net": net}, opt, meta,
                                    {"losses": losses.state(), "train_s": time.time() - t0})
            if stopping:
                stop(f"step {step + 1} of {cfg.steps}")
    net.eval()
    _, val_images, val_labels = encode_split(dataset, ddpm_cfg.normalization, "val")
    metrics = accuracy_by_noise(net.cpu(), scheduler, val_images, val_labels, seed)
    save_model(out_path, net, {"kind": "guidance_net", "net": net_cfg, "scheduler": sched_cfg, "dataset": dataset.name})
    metrics.update(final_loss=losses.final, resumed_from=start, train_s=time.time() - t0)
    return {"metrics": metrics, "history": {"loss": losses.points}}


def load_guidance_net(path: str | Path, device: str = "cpu") -> NoisyClassifier:
    config = load_model_config(path)
    return load_weights(path, NoisyClassifier(**config["net"])).to(device).eval().requires_grad_(False)
