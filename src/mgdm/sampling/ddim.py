"""Guided DDIM, DDIM inversion, and MGDM's two-stage sampler, as plain functions (k-diffusion style).

Every guidance acts on the noise estimate:

    eps_hat = eps - sqrt(1 - alpha_bar_t) * grad_x[ scale * M(p_phi(. | x_t, t), y) ]

(a v-prediction model's output is shifted so that the noise it implies is eps_hat)
and classifier-free guidance mixes eps_c + w (eps_c - eps_u), so that w = 0 is plain conditional
sampling (the "0 means none" convention of params.yaml). The diffusers schedulers own the
timesteps and the update; these functions only build the noise estimate.
"""

from __future__ import annotations

from typing import Callable

import torch
from tqdm import tqdm

Measure = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def noise_estimate(unet, x, t, y, null_label: int, cfg_scale: float = 0.0) -> torch.Tensor:
    """Return the model output (eps or v) at (x_t, t, y); with cfg_scale > 0, one batched forward of conditional and null labels."""
    tt = t.expand(len(x)) if t.ndim == 0 else t
    if cfg_scale == 0:
        return unet(x, tt, class_labels=y).sample
    eps_c, eps_u = unet(torch.cat([x, x]), torch.cat([tt, tt]),
                        class_labels=torch.cat([y, torch.full_like(y, null_label)])).sample.chunk(2)
    return eps_c + cfg_scale * (eps_c - eps_u)


def measure_gradient(guidance_net, measure: Measure, x, t, y, mc_samples: int = 0) -> torch.Tensor:
    """Return grad_x sum_i M(p_phi(. | x_i, t), y_i); with mc_samples, M reads (S, B, K) MC-dropout logits."""
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        tt = t.expand(len(x)) if t.ndim == 0 else t
        if mc_samples:  # S dropout draws as one batched forward
            logits = guidance_net(x_in.repeat(mc_samples, 1, 1, 1), tt.repeat(mc_samples), mc_dropout=True)
            logits = logits.unflatten(0, (mc_samples, len(x)))
        else:
            logits = guidance_net(x_in, tt)
        return torch.autograd.grad(measure(logits, y).sum(), x_in)[0]


@torch.no_grad()
def guided_ddim(unet, x, y, scheduler, steps: int, *, null_label: int, cfg_scale: float = 0.0,
                guidance_net=None, measure: Measure | None = None, scale: float = 0.0, mc_samples: int = 0,
                eta: float = 0.0, generator: torch.Generator | None = None, callback=None,
                disable: bool = True) -> torch.Tensor:
    """Return x_0 decoded from the noise `x` for labels `y` by DDIM under the given guidance."""
    scheduler.set_timesteps(steps)
    for i, t in enumerate(tqdm(scheduler.timesteps, desc="ddim", disable=disable, leave=False)):
        out = noise_estimate(unet, x, t, y, null_label, cfg_scale)
        alpha_bar = scheduler.alphas_cumprod[t].to(x)
        # At zero terminal SNR, x_T holds no image: no measurement of it can guide (and the shift is 1/0).
        if scale and measure is not None and alpha_bar > 0:
            shift = -(1 - alpha_bar).sqrt() * scale * measure_gradient(guidance_net, measure, x, t, y, mc_samples)
            out = guide(out, shift, alpha_bar, scheduler.config.prediction_type)
        x = scheduler.step(out, t, x, eta=eta, generator=generator).prev_sample
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "eps": out})
    return x


def guide(model_output, eps_shift, alpha_bar, prediction_type: str) -> torch.Tensor:
    """Return the model output whose implied noise is eps + eps_shift (x_t fixed).

    For v-prediction, eps = sqrt(a) v + sqrt(1 - a) x_t, so shifting eps by d shifts v by d / sqrt(a).
    """
    if prediction_type == "epsilon":
        return model_output + eps_shift
    if prediction_type == "v_prediction":
        return model_output + eps_shift / alpha_bar.sqrt()
    raise ValueError(f"guidance needs an epsilon or v_prediction model, not {prediction_type!r}")


@torch.no_grad()
def invert_ddim(unet, x0, y, inverse_scheduler, steps: int, *, null_label: int, cfg_scale: float = 0.0,
                disable: bool = True) -> torch.Tensor:
    """Return the noise x_T that deterministic DDIM maps back to `x0` under labels `y` (DDIB-style)."""
    inverse_scheduler.set_timesteps(steps)
    x = x0
    for t in tqdm(inverse_scheduler.timesteps, desc="invert", disable=disable, leave=False):
        x = inverse_scheduler.step(noise_estimate(unet, x, t, y, null_label, cfg_scale), t, x).prev_sample
    return x


def mgdm_two_stage(unet, noise, y, scheduler, inverse_scheduler, steps: int, *, null_label: int,
                   guidance_net, measure: Measure, scale: float, mc_samples: int = 0,
                   stage1_measure: Measure | None = None, stage1_scale: float = 0.0, stage1_cfg: float = 0.0,
                   disable: bool = True) -> torch.Tensor:
    """Return MGDM samples: in-distribution samples (stage 1), inverted to noise under their label,
    decoded again under uncertainty guidance (stage 2): same class and anatomy, nearer the boundary."""
    x0 = guided_ddim(unet, noise, y, scheduler, steps, null_label=null_label, cfg_scale=stage1_cfg,
                     guidance_net=guidance_net, measure=stage1_measure, scale=stage1_scale, disable=disable)
    xT = invert_ddim(unet, x0, y, inverse_scheduler, steps, null_label=null_label, disable=disable)
    return guided_ddim(unet, xT, y, scheduler, steps, null_label=null_label, guidance_net=guidance_net,
                       measure=measure, scale=scale, mc_samples=mc_samples, disable=disable)
