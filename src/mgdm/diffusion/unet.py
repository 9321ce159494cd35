"""Build the class-conditional UNet and the noise schedulers from plain settings."""

from __future__ import annotations

from diffusers import DDIMInverseScheduler, DDIMScheduler, DDPMScheduler, UNet2DModel

from mgdm.config import DDPMConfig

BETA_SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


def unet_config(cfg: DDPMConfig, image_size: int, channels: int, num_classes: int) -> dict:
    """Return UNet2DModel kwargs; class `num_classes` is the null label used for CFG."""
    n = len(cfg.channels)
    down = ["DownBlock2D"] * n
    up = ["UpBlock2D"] * n
    if cfg.attention:  # attention only at the lowest resolution: the cheap place for it
        down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
    return dict(sample_size=image_size, in_channels=channels, out_channels=channels,
                block_out_channels=list(cfg.channels), layers_per_block=cfg.layers_per_block,
                down_block_types=down, up_block_types=up, num_class_embeds=num_classes + 1,
                norm_num_groups=min(32, min(cfg.channels) // 2), attention_head_dim=8)


def make_unet(config: dict) -> UNet2DModel:
    return UNet2DModel(**config)


def scheduler_config(cfg: DDPMConfig, clip_range: float = 1.0) -> dict:
    """Return DDPMScheduler kwargs; `clip_range` bounds predicted x_0 (the normalization's largest |x|)."""
    return dict(num_train_timesteps=cfg.train_timesteps, beta_schedule=BETA_SCHEDULES[cfg.schedule],
                beta_start=1e-4, beta_end=2e-2, clip_sample=True, clip_sample_range=clip_range,
                prediction_type=cfg.prediction_type, rescale_betas_zero_snr=cfg.zero_terminal_snr,
                timestep_spacing=cfg.timestep_spacing)


def train_scheduler(config: dict) -> DDPMScheduler:
    return DDPMScheduler(**config)


def ddim_schedulers(config: dict) -> tuple[DDIMScheduler, DDIMInverseScheduler]:
    """Return (sampler, inverter) sharing one schedule; the inverter never clips (inversion must be exact)."""
    sampler = DDIMScheduler(**config, set_alpha_to_one=True)
    inverter = DDIMInverseScheduler(**{**config, "clip_sample": False}, set_alpha_to_one=True)
    return sampler, inverter
