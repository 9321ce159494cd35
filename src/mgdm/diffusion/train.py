"""The class-conditional DDPM's training: per-sample label dropout, EMA, Min-SNR weighting and resume.

The recipe is params (ddpm.*): epsilon or v-prediction, Min-SNR-gamma weighting (diffusers'
`compute_snr`), linear or cosine betas with optional zero terminal SNR, [-1, 1] or per-channel
standardised data, flips, learning-rate warm-up and cosine decay (diffusers' `get_scheduler`).
A `probe` callback scores the EMA model every `probe_every` steps (quality vs training step).
"""

from __future__ import annotations

import copy
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
from diffusers.optimization import get_scheduler
from diffusers.training_utils import compute_snr
from tqdm import tqdm

from mgdm.config import DDPMConfig
from mgdm.data.normalization import Normalization, encode_split
from mgdm.data.splits import Dataset
from mgdm.diffusion.unet import make_unet, scheduler_config, train_scheduler, unet_config
from mgdm.files import load_training_state, read_training_info, save_model, save_training_state
from mgdm.interrupts import stop, stop_at_boundary, stop_requested
from mgdm.training import LossHistory, batch_generator, draw_indices, draw_weights, ema_update

Probe = Callable[[torch.nn.Module, dict, Normalization], dict]


def min_snr_weight(snr: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """Return the Min-SNR-gamma loss weight per sample: min(snr, g) / snr for epsilon, / (snr + 1) for v."""
    clipped = snr.clamp(max=gamma)
    if prediction_type == "v_prediction":
        return clipped / (snr + 1)
    return torch.where(snr > 0, clipped / snr.clamp(min=1e-12), torch.ones_like(snr))


def diffusion_loss(unet, scheduler, x0, y, noise, t, cfg: DDPMConfig) -> torch.Tensor:
    """Return the (optionally Min-SNR-weighted) MSE of the UNet's eps or v prediction."""
    target = noise if cfg.prediction_type == "epsilon" else scheduler.get_velocity(x0, noise, t)
    pred = unet(scheduler.add_noise(x0, noise, t), t, class_labels=y).sample
    per_sample = (pred - target).pow(2).flatten(1).mean(1)
    if cfg.snr_gamma:
        per_sample = per_sample * min_snr_weight(compute_snr(scheduler, t), cfg.snr_gamma, cfg.prediction_type)
    return per_sample.mean()


def train_ddpm(dataset: Dataset, cfg: DDPMConfig, out_path: str | Path, seed: int = 0, device: str = "cpu",
        progress: bool = True, probe: Probe | None = None) -> dict:
    """Train and write the EMA UNet to `out_path` (safetensors + JSON); return metrics and history."""
    out_path = Path(out_path)
    resume_path = out_path.with_name("resume.safetensors")
    norm, images, labels = encode_split(dataset, cfg.normalization)
    images, labels = images.to(device), labels.to(device)
    net_cfg = unet_config(cfg, dataset.image_size, dataset.channels, dataset.num_classes)
    sched_cfg = scheduler_config(cfg, norm.clip_range)
    torch.manual_seed(seed)
    unet = make_unet(net_cfg).to(device)
    ema = copy.deepcopy(unet).requires_grad_(False)
    scheduler = train_scheduler(sched_cfg)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    lr_sched = get_scheduler("cosine" if cfg.lr_decay == "cosine" else "constant_with_warmup", opt,
                             num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.steps)
    # `steps` is left out: raising it continues a finished run instead of starting over.
    meta = {"config": cfg.model_dump(exclude={"steps", "checkpoint_every", "probe_every"}), "seed": seed,
            "dataset": dataset.name}
    start = load_training_state(resume_path, {"unet": unet, "ema": ema}, opt, meta)
    info = read_training_info(resume_path) if start else {}
    probes: dict[str, list] = info.get("probes", {})
    if start:
        print(f"resuming from {resume_path} at step {start}")
        with warnings.catch_warnings():  # the schedule is a function of the step: fast-forward it
            warnings.simplefilter("ignore")
            for _ in range(start):
                lr_sched.step()
    model_config = {"kind": "ddpm", "unet": net_cfg, "scheduler": sched_cfg, "normalization": norm.to_dict(),
                    "num_classes": dataset.num_classes, "null_label": dataset.num_classes, "dataset": dataset.name}
    null = dataset.num_classes
    # a resumed run reports the unbroken run's loss curve and its training time so far plus this run's
    losses, t0 = LossHistory(state=info.get("losses")), time.time() - info.get("train_s", 0.0)
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="train_ddpm", disable=not progress)
    weights = draw_weights(labels, cfg.class_balanced)
    with stop_at_boundary():  # Ctrl-C or SIGTERM: the state after the step under way is kept, then stop
        for step in bar:
            # everything random in the step from one generator on the device, in a fixed order: no host sync
            g = batch_generator(seed, step, device)
            idx = draw_indices(len(labels), cfg.batch_size, weights, g)
            x0, y = images[idx], labels[idx]
            # Per-sample label dropout: every batch trains both the conditional and the null model.
            drop = torch.rand(len(y), generator=g, device=device) < cfg.label_dropout
            y = torch.where(drop, torch.full_like(y, null), y)
            if cfg.hflip:
                flip = torch.rand(len(y), generator=g, device=device) < 0.5
                x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
            noise = torch.randn(x0.shape, generator=g, device=device)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (len(y),), generator=g, device=device)
            loss = diffusion_loss(unet, scheduler, x0, y, noise, t, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            opt.step()
            lr_sched.step()
            ema_update(ema, unet, cfg.ema_decay, step)
            last = step + 1 == cfg.steps
            losses.add(step, loss, last, bar)
            if probe is not None and ((cfg.probe_every and (step + 1) % cfg.probe_every == 0) or last):
                for k, v in probe(ema, model_config, norm).items():
                    probes.setdefault(k, []).append((step + 1, v))
                bar.set_postfix(loss=f"{losses.final:.4f}",
                                fid=f"{probes.get('probe_fid', [(0, float('nan'))])[-1][1]:.1f}")
            stopping = not last and stop_requested()
            if (step + 1) % cfg.checkpoint_every == 0 or last or stopping:
                save_training_state(resume_path, step + 1, {"unet": unet, "ema": ema}, opt, meta,
                                    {"probes": probes, "losses": losses.state(), "train_s": time.time() - t0})
            if stopping:
                stop(f"step {step + 1} of {cfg.steps}")
    save_model(out_path, ema, model_config)
    params = sum(p.numel() for p in unet.parameters())
    metrics = {"final_loss": losses.final, "parameters": params, "steps": cfg.steps, "resumed_from": start,
               "train_s": time.time() - t0}
    metrics.update({k: v[-1][1] for k, v in probes.items()})
    return {"metrics": metrics, "history": {"loss": losses.points, **probes}}


def load_ddpm(path: str | Path, device: str = "cpu"):
    """Return (EMA UNet in eval mode, its JSON config)."""
    from mgdm.files import load_model_config, load_weights

    config = load_model_config(path)
    unet = load_weights(path, make_unet(config["unet"])).to(device).eval().requires_grad_(False)
    return unet, config


def model_normalization(config: dict) -> Normalization:
    """The normalization a DDPM was trained with (older checkpoints: [-1, 1])."""
    n = config.get("normalization")
    return Normalization(n["mean"], n["std"]) if n else Normalization([0.5] * config["unet"]["in_channels"],
                                                                    [0.5] * config["unet"]["in_channels"])
