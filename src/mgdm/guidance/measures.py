"""Guidance measures: pure functions from logits (B, K) and labels (B,) to a per-sample scalar (B,).

The sampler ascends `scale * M`, so each measure is written as the quantity to increase:
classifier guidance raises log p(y); the uncertainty measures raise uncertainty, pushing samples
toward the classifier's decision boundary. Adding a measure is one function and one name.

An epistemic measure (in `EPISTEMIC`) reads S stochastic forwards of the guidance net (MC dropout):
its logits are (S, B, K). The paper's measures are all predictive (aleatoric + epistemic); BALD is
the part of the uncertainty that comes from the classifier not knowing, which is what more data fixes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def classifier_measure(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log p(y | x): classifier guidance (Dhariwal and Nichol 2021)."""
    return F.log_softmax(logits, -1).gather(1, y[:, None]).squeeze(1)


def entropy_measure(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """H(p(. | x)): predictive entropy."""
    logp = F.log_softmax(logits, -1)
    return -(logp.exp() * logp).sum(-1)


def margin_measure(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-(p_top1 - p_top2): a small margin between the two most likely classes."""
    top2 = F.softmax(logits, -1).topk(2, dim=-1).values
    return -(top2[:, 0] - top2[:, 1])


def leastconf_measure(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-max_y p(y | x): least confidence."""
    return -F.softmax(logits, -1).amax(-1)


def bald_measure(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """I(y; w | x) = H(E_w p) - E_w H(p) over S MC-dropout passes (logits (S, B, K)): BALD (Houlsby et al. 2011)."""
    logp = F.log_softmax(logits, -1)
    mean_logp = torch.logsumexp(logp, 0) - math.log(len(logits))  # log of the mean probability, stably
    total = -(mean_logp.exp() * mean_logp).sum(-1)
    expected = -(logp.exp() * logp).sum(-1).mean(0)
    return total - expected


MEASURES = {
    "classifier": classifier_measure,
    "entropy": entropy_measure,
    "margin": margin_measure,
    "leastconf": leastconf_measure,
    "bald": bald_measure,
}
EPISTEMIC = {"bald"}  # measures that need (S, B, K) logits from MC dropout
