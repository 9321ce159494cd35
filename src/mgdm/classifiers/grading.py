"""Grading metrics of a classifier's test predictions (scikit-learn)."""

from __future__ import annotations

import numpy as np
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
