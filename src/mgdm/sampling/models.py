"""The UNet wrapped with one guidance, chosen by name: what a synthetic set's name (`entropy-s2`) means."""

from __future__ import annotations

from mgdm.guidance.measures import EPISTEMIC, MEASURES
from mgdm.sampling.ddim import ModelFn, guided_model


def guidance_model(unet, guidance_net, kind: str, scale: float, scheduler, null_label: int,
                   mc_samples: int = 0) -> ModelFn:
    """Return the model function of guidance `kind` at `scale`: `none`, `cfg` (classifier-free), or a
    measure of the guidance net (`classifier`, `entropy`, `margin`, `leastconf`, `bald`)."""
    common = dict(null_label=null_label, alphas_cumprod=scheduler.alphas_cumprod,
                  prediction_type=scheduler.config.prediction_type)
    if kind == "cfg":
        return guided_model(unet, cfg_scale=scale, **common)
    if kind != "none" and kind not in MEASURES:
        raise ValueError(f"unknown guidance {kind!r}; choose none, cfg or one of {', '.join(MEASURES)}")
    measure = MEASURES.get(kind)
    return guided_model(unet, guidance_net=guidance_net, measure=measure, scale=scale if measure else 0.0,
                        mc_samples=mc_samples if kind in EPISTEMIC else 0, **common)
