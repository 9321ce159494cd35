"""`mgdm calibrate-scales`: how far each measure's gradient moves a sample per unit of guidance scale.

The measures live on different scales: log p(y) has gradients of order one, while the mutual
information of MC-dropout passes (BALD) is a small difference of entropies, so one scale grid does
not fit them all. This follows an unguided DDIM trajectory of the profile's own DDPM and, at every state
x_t it visits, measures the noise shift a measure would apply at scale 1, sqrt(1 - alpha_bar_t) |grad M|
(per pixel, root mean square), averaged over steps and images. The scale at which a measure shifts as
much as the reference measure does at its own scale is the equal-push scale.
"""

from __future__ import annotations

import torch

from mgdm.guidance.measures import EPISTEMIC, MEASURES
from mgdm.sampling.ddim import guided_ddim, measure_gradient


def shift_per_unit_scale(unet, guidance_net, scheduler, labels: torch.Tensor, noise: torch.Tensor, steps: int,
                         null_label: int, mc_samples: int) -> dict[str, float]:
    """Mean RMS noise shift per unit scale of every measure, along the unguided trajectory from `noise`."""
    after = []  # the state after each step
    guided_ddim(unet, noise, labels, scheduler, steps, null_label=null_label, callback=lambda s: after.append(s["x"]))
    # a step's guidance acts on the state before it: x_T, then what each step produced
    inputs = list(zip(scheduler.timesteps, [noise, *after[:-1]]))
    out = {}
    for name, measure in MEASURES.items():
        shifts = []
        for t, x in inputs:
            alpha_bar = scheduler.alphas_cumprod[t].to(x)
            if alpha_bar == 0:  # zero terminal SNR: the sampler does not guide there
                continue
            torch.manual_seed(0)  # the same dropout masks for every measure
            g = measure_gradient(guidance_net, measure, x, t, labels, mc_samples if name in EPISTEMIC else 0)
            shifts.append((1 - alpha_bar).sqrt() * g.pow(2).mean(dim=(1, 2, 3)).sqrt())
        out[name] = torch.cat(shifts).mean().item()
    return out


def table(shift: dict[str, float], scales: dict[str, list[float]], reference: str) -> list[dict]:
    """Rows: each measure's shift per unit scale and the scale that matches `reference` at its first scale."""
    ref_scale = scales[reference][0]
    target = shift[reference] * ref_scale
    return [{"measure": m, "shift_per_unit_scale_x1000": 1000 * s, "profile_scales": ", ".join(f"{x:g}" for x in scales.get(m, [])),
             f"equal_push_scale (= {reference} at {ref_scale:g})": target / s if s > 0 else float("inf")}
            for m, s in shift.items()]
