"""Sampling maths against a model whose answer is known: Gaussian data x0 ~ N(0, s^2 I).

For such data the optimal noise predictor is eps(x_t, t) = sqrt(1 - a_t) x_t / (a_t s^2 + 1 - a_t).
"""

import pytest
import torch

from mgdm.diffusion.unet import ddim_schedulers
from mgdm.sampling.ddim import guided_ddim, invert_ddim

S = 0.5
SCHED = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=2e-2,
             clip_sample=True, prediction_type="epsilon")


class GaussianEps:
    """The optimal epsilon model for N(0, S^2 I) data, with the UNet's calling convention."""

    def __init__(self, alphas_cumprod):
        self.a = alphas_cumprod

    def __call__(self, x, t, class_labels=None):
        a = self.a[t].view(-1, 1, 1, 1).to(x)
        return type("Out", (), {"sample": (1 - a).sqrt() * x / (a * S**2 + 1 - a)})


@pytest.mark.parametrize("steps,bound", [(50, 0.04), (25, 0.07), (10, 0.18)])
def test_inversion_then_decode_reconstructs(steps, bound):
    sampler, inverter = ddim_schedulers(SCHED)
    model = GaussianEps(sampler.alphas_cumprod)
    x0 = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * S
    y = torch.zeros(64, dtype=torch.long)
    xT = invert_ddim(model, x0, y, inverter, steps, null_label=1)
    assert 0.8 < xT.std() < 1.2, "inverted latents should look like unit noise"
    back = guided_ddim(model, xT, y, sampler, steps, null_label=1)
    err = (back - x0).abs().mean().item()
    assert err < bound, f"reconstruction error {err:.3f} at {steps} steps"


def test_decoding_noise_gives_data_distribution():
    sampler, _ = ddim_schedulers(SCHED)
    model = GaussianEps(sampler.alphas_cumprod)
    xT = torch.randn(512, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    x0 = guided_ddim(model, xT, torch.zeros(512, dtype=torch.long), sampler, 50, null_label=1)
    assert abs(x0.std().item() - S) < 0.05
