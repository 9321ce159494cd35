"""The generator recipe's pieces against known answers: Min-SNR weights, normalization round trips,
v-prediction guidance, zero-terminal-SNR sampling of Gaussian data, and the probe's metrics."""

import numpy as np
import pytest
import torch

from conftest import S
from mgdm.data.normalization import Normalization
from mgdm.diffusion.train import min_snr_weight
from mgdm.diffusion.unet import ddim_schedulers
from mgdm.metrics.features import balanced_heldout, class_mix_mean, frechet_distance, precision_recall
from mgdm.sampling.ddim import guide, guided_ddim


def test_min_snr_weights_at_known_snr():
    snr = torch.tensor([1.0, 5.0, 20.0])
    # epsilon: min(snr, 5) / snr; v: min(snr, 5) / (snr + 1)
    assert torch.allclose(min_snr_weight(snr, 5.0, "epsilon"), torch.tensor([1.0, 1.0, 0.25]))
    assert torch.allclose(min_snr_weight(snr, 5.0, "v_prediction"), torch.tensor([0.5, 5 / 6, 5 / 21]))
    # SNR 0 (the last step at zero terminal SNR): v gets weight 0, epsilon a finite weight
    assert min_snr_weight(torch.tensor([0.0]), 5.0, "v_prediction").item() == 0
    assert torch.isfinite(min_snr_weight(torch.tensor([0.0]), 5.0, "epsilon")).all()


def images(n=64, channels=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 7, 7, channels), dtype=np.uint8)


@pytest.mark.parametrize("kind", ["minmax", "standardize"])
@pytest.mark.parametrize("channels", [1, 3])
def test_normalization_round_trip_is_exact(kind, channels):
    u8 = images(channels=channels)
    norm = Normalization.fit(kind, u8)
    assert np.array_equal(norm.decode(norm.encode(u8)), u8)
    x = norm.encode(u8)
    assert x.abs().max() <= norm.clip_range + 1e-5, "clip_range bounds every valid image"


def test_standardize_gives_zero_mean_unit_std_per_channel_and_minmax_is_minus_one_to_one():
    u8 = images(channels=3)
    u8[..., 0] //= 4  # channels with different means and spreads
    x = Normalization.fit("standardize", u8).encode(u8)
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(x.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    m = Normalization.fit("minmax", u8).encode(u8)
    assert torch.allclose(m, torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 127.5 - 1)


def test_v_guidance_shifts_the_implied_noise_by_the_eps_shift():
    a = torch.tensor(0.3)
    x, v, shift = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4)
    implied = lambda out: a.sqrt() * out + (1 - a).sqrt() * x  # eps implied by a v prediction  # noqa: E731
    assert torch.allclose(implied(guide(v, shift, a, "v_prediction")), implied(v) + shift, atol=1e-6)
    assert torch.allclose(guide(v, shift, a, "epsilon"), v + shift)


class GaussianV:
    """The optimal v model for N(0, S^2 I) data: v = sqrt(a) eps - sqrt(1 - a) E[x_0 | x_t]."""

    def __init__(self, alphas_cumprod):
        self.a = alphas_cumprod

    def __call__(self, x, t, class_labels=None):
        a = self.a[t].view(-1, 1, 1, 1).to(x)
        x0 = a.sqrt() * S**2 * x / (a * S**2 + 1 - a)
        eps = (1 - a).sqrt() * x / (a * S**2 + 1 - a)
        return type("Out", (), {"sample": a.sqrt() * eps - (1 - a).sqrt() * x0})


def test_v_prediction_at_zero_terminal_snr_samples_the_data_distribution():
    sched = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", beta_start=1e-4, beta_end=2e-2,
                 clip_sample=True, clip_sample_range=4.0, prediction_type="v_prediction",
                 rescale_betas_zero_snr=True, timestep_spacing="trailing")
    sampler, _ = ddim_schedulers(sched)
    assert sampler.alphas_cumprod[-1] == 0, "x_T is pure noise"
    x = torch.randn(512, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    out = guided_ddim(GaussianV(sampler.alphas_cumprod), x, torch.zeros(512, dtype=torch.long), sampler, 50,
                      null_label=1)
    assert torch.isfinite(out).all() and abs(out.std().item() - S) < 0.05


def test_probe_metrics_of_a_set_against_itself():
    f = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
    assert abs(frechet_distance(f, f)) < 1e-3
    g = np.random.default_rng(1).normal(size=(300, 16)).astype(np.float32) + 3
    assert frechet_distance(g, f) > 100  # a shift of 3 in 16 dims: 16 * 9 = 144 from the means alone
    assert precision_recall(f, f) == (1.0, 1.0)


def test_class_mix_mean_and_heldout_draws():
    u8 = np.zeros((6, 2, 2, 1), np.uint8)
    u8[3:] = 90
    labels = np.array([0, 0, 0, 1, 1, 1])
    # two class-1 images for one class-0 image: (0 + 2 * 90) / 3
    assert class_mix_mean(u8, labels, np.array([0, 1, 1]))[0] == pytest.approx(60.0)
    im, lab = balanced_heldout(u8, labels, np.array([5, 1]), seed=0)
    assert np.bincount(lab).tolist() == [3, 1], "never more than a class has, never repeated"


def test_sweep_generator_writes_curves_table_and_floor(tmp_workflow):
    from conftest import run

    for stage in ("preprocess", "train-reference-net"):
        run(["mgdm", stage, "--profile", "smoke", "--dataset", "discs", "--no-mlflow", "--no-progress"], tmp_workflow)
    res = run(["mgdm", "sweep-generator", "--profile", "smoke", "--no-progress"], tmp_workflow)
    assert "2 variants" in res.stdout
    table = (tmp_workflow / "results/smoke/tables/generator.md").read_text()
    for row in ("| baseline (profile)", "| v-minsnr ", "| real-heldout "):
        assert row in table
    assert (tmp_workflow / "results/smoke/figures/generator.png").stat().st_size > 5000
    record = tmp_workflow / "results/smoke/discs/generator_sweep/v-minsnr.json"
    written = record.stat().st_mtime_ns
    # a finished variant is not trained again
    again = run(["mgdm", "sweep-generator", "--profile", "smoke", "--no-progress", "--variant", "v-minsnr"], tmp_workflow)
    assert record.stat().st_mtime_ns == written and "v-minsnr: fid" in again.stdout


def test_target_rows_say_met_or_missed_and_by_how_much():
    from mgdm.tools.generator_sweep import target_rows

    fidelity = {"domain_fid": 9.0, "floor_domain_fid": 3.0, "domain_recall": 0.4, "floor_domain_recall": 0.9}
    analysis = {"sets": {"none": {"coverage": 0.35, "label_agreement": 0.36, "colour_error": 8.5},
                         "real-heldout": {"coverage": 0.48, "label_agreement": 0.40, "colour_error": 1.1}}}
    rows = {r["target"]: r for r in target_rows({"fid_ratio": 3.0, "recall": 0.5, "coverage": 0.3,
                                                 "label_agreement_ratio": 0.8, "colour_error": 8.0},
                                                fidelity, analysis)}
    assert rows["domain FID ÷ floor at most 3"]["met"] == "yes"  # exactly at the bound
    assert rows["domain recall at least 0.5"]["met"] == "no, by 0.1"
    assert rows["label agreement ÷ floor at least 0.8"]["none set"] == pytest.approx(0.9)
    assert rows["colour error (0-255) at most 8"]["met"] == "no, by 0.5"
