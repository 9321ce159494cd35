"""Sampling maths against models whose answer is known (Gaussian data, see conftest.GaussianEps)."""

import pytest
import torch

from conftest import SCHED, S, GaussianEps, LinearClassifier
from mgdm.diffusion.unet import ddim_schedulers
from mgdm.guidance.measures import EPISTEMIC, MEASURES
from mgdm.sampling.ddim import guided_ddim, invert_ddim, mgdm_two_stage, noise_estimate
from mgdm.sampling.models import guidance_model


def plain_model(model, scheduler, null_label):
    return guidance_model(model, None, "none", 0.0, scheduler, null_label)


def toy(n=64, seed=0):
    sampler, inverter = ddim_schedulers(SCHED)
    model = GaussianEps(sampler.alphas_cumprod)
    x = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    return sampler, inverter, model, x, torch.zeros(n, dtype=torch.long)


@pytest.mark.parametrize("steps,bound", [(50, 0.03), (25, 0.06), (10, 0.15)])
def test_inversion_then_decode_reconstructs(steps, bound):
    sampler, inverter, model, x, y = toy()
    x0 = x * S
    xT = invert_ddim(plain_model(model, sampler, 1), x0, y, inverter, steps)
    assert 0.8 < xT.std() < 1.2, "inverted latents should look like unit noise"
    err = (guided_ddim(model, xT, y, sampler, steps, null_label=1) - x0).abs().mean().item()
    assert err < bound, f"reconstruction error {err:.3f} at {steps} steps"


def test_decoding_noise_gives_the_data_distribution():
    sampler, _, model, x, y = toy(512, seed=1)
    assert abs(guided_ddim(model, x, y, sampler, 50, null_label=1).std().item() - S) < 0.05


def test_cfg_is_one_batched_forward_of_two_models():
    calls = []

    def unet(x, t, class_labels):
        calls.append(len(x))
        return type("Out", (), {"sample": x * (1 + class_labels.float().view(-1, 1, 1, 1))})

    x, y = torch.randn(4, 1, 2, 2), torch.ones(4, dtype=torch.long)
    eps = noise_estimate(unet, x, torch.tensor(10), y, null_label=0, cfg_scale=2.0)
    # eps_c = 2x, eps_u = x: eps_c + 2 (eps_c - eps_u) = 4x, from a single forward of 8 inputs
    assert calls == [8] and torch.allclose(eps, 4 * x)


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_guidance_raises_its_measure(name):
    sampler, _, model, x, _ = toy(128, seed=2)
    y = torch.randint(0, 3, (128,), generator=torch.Generator().manual_seed(3))
    # An epistemic measure reads MC-dropout passes; BALD is a part of the entropy, so its pull is weaker.
    mc = 8 if name in EPISTEMIC else 0
    net, measure = LinearClassifier(sampler.alphas_cumprod, 64, dropout=0.5 if mc else 0.0), MEASURES[name]
    plain = guided_ddim(model, x, y, sampler, 20, null_label=3)
    torch.manual_seed(0)
    guided = guided_ddim(model, x, y, sampler, 20, null_label=3, guidance_net=net, measure=measure, scale=5.0 if mc else 2.0,
                         mc_samples=mc)
    t0 = torch.tensor(0)

    def score(images):
        if not mc:
            return measure(net(images, t0), y).mean().item()
        torch.manual_seed(1)
        return measure(torch.stack([net(images, t0, mc_dropout=True) for _ in range(64)]), y).mean().item()

    before, after = score(plain), score(guided)
    assert torch.isfinite(guided).all()
    assert after > before + 0.05, f"{name}: measure {before:.3f} -> {after:.3f} under guidance"


def test_two_stage_without_guidance_returns_stage_one_samples():
    sampler, inverter, model, x, y = toy(64, seed=4)
    stage1 = guided_ddim(model, x, y, sampler, 50, null_label=1)
    net = LinearClassifier(sampler.alphas_cumprod, 64)
    plain, unguided = (guidance_model(model, net, k, 0.0, sampler, 1) for k in ("none", "entropy"))
    out = mgdm_two_stage(plain, unguided, plain, x, y, sampler, inverter, 50)
    assert (out - stage1).abs().mean() < 0.03


def test_two_stage_moves_samples_toward_the_boundary_and_keeps_them_close():
    sampler, inverter, model, x, _ = toy(128, seed=5)
    y = torch.randint(0, 3, (128,), generator=torch.Generator().manual_seed(6))
    net, entropy = LinearClassifier(sampler.alphas_cumprod, 64), MEASURES["entropy"]
    stage1 = guided_ddim(model, x, y, sampler, 25, null_label=3)
    plain = guidance_model(model, net, "none", 0.0, sampler, 3)
    out = mgdm_two_stage(plain, guidance_model(model, net, "entropy", 1.0, sampler, 3), plain, x, y, sampler,
                         inverter, 25)
    t0 = torch.tensor(0)
    assert entropy(net(out, t0), y).mean() > entropy(net(stage1, t0), y).mean()
    # same anatomy: much nearer its own stage-1 sample than an unrelated sample is
    assert (out - stage1).abs().mean() < 0.5 * (stage1 - stage1.roll(1, 0)).abs().mean()
