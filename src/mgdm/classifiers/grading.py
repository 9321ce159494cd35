"""Grading metrics of a classifier's test predictions (scikit-learn)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, cohen_kappa_score, f1_score,
                             roc_auc_score)


def auc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Return ROC AUC (one-vs-rest macro for several classes); NaN when a class is absent."""
    try:
        if probs.shape[1] == 2:
            return float(roc_auc_score(y_true, probs[:, 1]))
        return float(roc_auc_score(y_true, probs, multi_class="ovr", labels=list(range(probs.shape[1]))))
    except ValueError:
        return float("nan")


def grading_metrics(y_true: np.ndarray, probs: np.ndarray, ordinal: bool) -> dict:
    """Return acc, balanced_acc, macro_f1, auc, and qwk (quadratic weighted kappa) for ordinal grades."""
    pred = probs.argmax(1)
    out = {
        "acc": float(accuracy_score(y_true, pred)),
        "balanced_acc": float(balanced_accuracy_score(y_true, pred)),
        "macro_f1": float(f1_score(y_true, pred, average="macro", labels=list(range(probs.shape[1])),
                                   zero_division=0)),
        "auc": auc(y_true, probs),
    }
    if ordinal:
        out["qwk"] = float(cohen_kappa_score(y_true, pred, weights="quadratic"))
    return out


def device_auc(labels: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """`auc` computed where `probs` live, without a host sync: a 0-d float64 tensor, NaN when a class is absent.

    Each class's AUC is the Mann-Whitney statistic with midranks for ties, (rank sum of the positives
    - n+(n+ + 1)/2) / (n+ n-), which is the area under the ROC curve scikit-learn integrates.
    """
    k = probs.shape[1]
    scores = (probs[:, 1:] if k == 2 else probs).double().T.contiguous()  # binary: class 1's score only
    classes = torch.arange(1 if k == 2 else 0, k, device=probs.device)
    positive = (labels[None, :] == classes[:, None]).double()
    ordered = scores.sort(-1).values
    # midrank (1-based) = values below + (values equal + 1) / 2
    below = torch.searchsorted(ordered, scores, right=False)
    upto = torch.searchsorted(ordered, scores, right=True)
    ranks = (below + upto + 1).double() / 2
    n_pos = positive.sum(-1)
    n_neg = len(labels) - n_pos
    per_class = ((ranks * positive).sum(-1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    undefined = (n_pos == 0) | (n_neg == 0)
    return torch.where(undefined.any(), torch.full_like(per_class[0], float("nan")), per_class.mean())
