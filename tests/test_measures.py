"""Every registered guidance measure: shapes, finiteness, and the quantity it stands for."""

import math

import pytest
import torch

from mgdm.config import GUIDANCES
from mgdm.guidance.measures import EPISTEMIC, MEASURES

LOGITS = torch.tensor([[4.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
Y = torch.tensor([0, 1, 2])


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_measure_is_a_finite_per_sample_scalar_with_a_gradient(name):
    logits = torch.randn(*((3,) if name in EPISTEMIC else ()), 5, 4, requires_grad=True)  # (S,) MC passes
    m = MEASURES[name](logits, torch.randint(0, 4, (5,)))
    assert m.shape == (5,) and torch.isfinite(m).all()
    m.sum().backward()
    assert logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["entropy", "margin", "leastconf"])
def test_uncertainty_measures_rank_confident_below_uncertain(name):
    m = MEASURES[name](LOGITS, Y)
    assert m[0] < m[1] <= m[2] + 1e-6, f"{name}: {m.tolist()}"


def test_classifier_measure_is_log_probability_of_the_label():
    m = MEASURES["classifier"](LOGITS, Y)
    assert torch.allclose(m, torch.log_softmax(LOGITS, -1)[torch.arange(3), Y])


def test_every_measure_is_a_guidance_in_the_config():
    assert set(MEASURES) <= set(GUIDANCES)


def test_bald_is_zero_when_every_pass_agrees_however_uncertain():
    same = torch.zeros(4, 2, 3)  # four MC passes, each uniform: entropy log 3, nothing epistemic
    assert torch.allclose(MEASURES["bald"](same, Y[:2]), torch.zeros(2), atol=1e-6)


def test_bald_is_log2_when_two_confident_passes_disagree():
    logits = torch.tensor([[[30.0, 0.0]], [[0.0, 30.0]]])  # S=2, B=1: certain of class 0, then of class 1
    assert torch.allclose(MEASURES["bald"](logits, Y[:1]), torch.tensor([math.log(2)]), atol=1e-6)


def test_bald_is_total_entropy_minus_expected_entropy():
    logits = torch.randn(6, 5, 4, generator=torch.Generator().manual_seed(0))
    p = torch.softmax(logits, -1)
    total = -(p.mean(0) * p.mean(0).log()).sum(-1)
    expected = -(p * p.log()).sum(-1).mean(0)
    assert torch.allclose(MEASURES["bald"](logits, Y[:1]), total - expected, atol=1e-6)


def test_guidance_net_dropout_is_off_at_inference_unless_mc_and_keeps_checkpoint_keys():
    from mgdm.guidance.noisy_classifier import NoisyClassifier

    torch.manual_seed(0)
    net = NoisyClassifier(1, 3, width=8, dropout=0.3).eval()
    x, t = torch.randn(4, 1, 12, 12), torch.tensor(500)
    assert torch.equal(net(x, t), net(x, t))
    assert not torch.equal(net(x, t, mc_dropout=True), net(x, t, mc_dropout=True))
    # checkpoints of guidance nets trained before dropout existed load unchanged
    assert net.state_dict().keys() == NoisyClassifier(1, 3, width=8).state_dict().keys()


def test_equal_push_scale_makes_each_measure_shift_as_far_as_the_reference():
    from mgdm.tools.calibrate_scales import table

    rows = table({"entropy": 0.5, "bald": 0.01, "classifier": 2.0},
                 {"entropy": [2.0, 5.0], "bald": [2.0], "classifier": [1.0]}, "entropy")
    equal = {r["measure"]: r["equal_push_scale (= entropy at 2)"] for r in rows}
    assert equal == pytest.approx({"entropy": 2.0, "bald": 100.0, "classifier": 0.5})


def test_calibrate_scales_measures_every_measure_on_the_profiles_own_models(smoke_dag, tmp_path):
    import json

    from conftest import finished_copy, run

    workdir = finished_copy(smoke_dag, tmp_path / "w")
    refused = run(["mgdm", "calibrate-scales", "--profile", "smoke", "--reference", "cfg"], workdir, check=False)
    assert refused.returncode == 2 and "--reference 'cfg': not a measure" in refused.stderr
    run(["mgdm", "calibrate-scales", "--profile", "smoke", "--images", "6"], workdir)
    rows = json.loads((workdir / "results/smoke/tables/measure_scales.json").read_text())["rows"]
    assert {r["measure"] for r in rows} == set(MEASURES)
    assert all(math.isfinite(r["shift_per_unit_scale_x1000"]) and r["shift_per_unit_scale_x1000"] > 0 for r in rows)
    entropy = next(r for r in rows if r["measure"] == "entropy")
    assert entropy["equal_push_scale (= entropy at 2)"] == pytest.approx(2.0)
    assert (workdir / "results/smoke/tables/measure_scales.md").exists()
