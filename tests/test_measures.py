"""Every registered guidance measure: shapes, finiteness, and the quantity it stands for."""

import pytest
import torch

from mgdm.config import GUIDANCES
from mgdm.guidance.measures import MEASURES

LOGITS = torch.tensor([[4.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
Y = torch.tensor([0, 1, 2])


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_measure_is_a_finite_per_sample_scalar_with_a_gradient(name):
    logits = torch.randn(5, 4, requires_grad=True)
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
