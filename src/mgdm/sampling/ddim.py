"""Guided DDIM, DDIM inversion, and MGDM's two-stage sampler, as plain functions (k-diffusion style): a
guidance wraps the UNet into one model function (`guided_model`), and the samplers step whatever model
function they are given; they never branch on the kind of guidance.

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
# a model as the samplers see it: (x_t, t, labels) -> the output DDIM steps with (eps or v), guidance applied
ModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


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


def guided_model(unet, *, null_label: int, alphas_cumprod: torch.Tensor, prediction_type: str,
                 cfg_scale: float = 0.0, guidance_net=None, measure: Measure | None = None, scale: float = 0.0,
                 mc_samples: int = 0) -> ModelFn:
    """Return the UNet as a model function with its guidance: CFG mixes the conditional and null outputs, a
    measure shifts the implied noise by its scaled gradient (as k-diffusion wraps a denoiser)."""
    def model(x, t, y):
        out = noise_estimate(unet, x, t, y, null_label, cfg_scale)
        alpha_bar = alphas_cumprod[t]  # on the host, as the scheduler keeps it: the test below waits on no device
        # At zero terminal SNR, x_T holds no image: no measurement of it can guide (and the shift is 1/0).
        if scale and measure is not None and alpha_bar > 0:
            alpha_bar = alpha_bar.to(x)
            shift = -(1 - alpha_bar).sqrt() * scale * measure_gradient(guidance_net, measure, x, t, y, mc_samples)
            out = guide(out, shift, alpha_bar, prediction_type)
        return out
    return model


@torch.no_grad()
def ddim(model: ModelFn, x, y, scheduler, steps: int, *, eta: float = 0.0, generator: torch.Generator | None = None,
         callback=None, disable: bool = True) -> torch.Tensor:
    """Return x_0 decoded from the noise `x` for labels `y` by DDIM with `model`."""
    scheduler.set_timesteps(steps)
    for i, t in enumerate(tqdm(scheduler.timesteps, desc="ddim", disable=disable, leave=False)):
        out = model(x, t, y)
        x = scheduler.step(out, t, x, eta=eta, generator=generator).prev_sample
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "eps": out})
    return x


def guided_ddim(unet, x, y, scheduler, steps: int, *, null_label: int, cfg_scale: float = 0.0,
                guidance_net=None, measure: Measure | None = None, scale: float = 0.0, mc_samples: int = 0,
                eta: float = 0.0, generator: torch.Generator | None = None, callback=None,
                disable: bool = True) -> torch.Tensor:
    """Return `ddim` of the UNet under the given guidance (`guided_model` on the scheduler's schedule)."""
    model = guided_model(unet, null_label=null_label, alphas_cumprod=scheduler.alphas_cumprod,
                         prediction_type=scheduler.config.prediction_type, cfg_scale=cfg_scale,
                         guidance_net=guidance_net, measure=measure, scale=scale, mc_samples=mc_samples)
    return ddim(model, x, y, scheduler, steps, eta=eta, generator=generator, callback=callback, disable=disable)


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
def invert_ddim(model: ModelFn, x0, y, inverse_scheduler, steps: int, *, disable: bool = True) -> torch.Tensor:
    """Return the noise x_T that deterministic DDIM with `model` maps back to `x0` under labels `y` (DDIB-style)."""
    inverse_scheduler.set_timesteps(steps)
    x = x0
    for t in tqdm(inverse_scheduler.timesteps, desc="invert", disable=disable, leave=False):
        x = inverse_scheduler.step(model(x, t, y), t, x).prev_sample
    return x


def mgdm_two_stage(stage1: ModelFn, stage2: ModelFn, plain: ModelFn, noise, y, scheduler, inverse_scheduler,
                   steps: int, *, disable: bool = True) -> torch.Tensor:
    """Return MGDM samples: in-distribution samples (`stage1`), inverted to noise under their label with the
    unguided `plain` model, decoded again with `stage2` (uncertainty guidance): same class and anatomy,
    nearer the boundary."""
    x0 = ddim(stage1, noise, y, scheduler, steps, disable=disable)
    xT = invert_ddim(plain, x0, y, inverse_scheduler, steps, disable=disable)
    return ddim(stage2, xT, y, scheduler, steps, disable=disable)
