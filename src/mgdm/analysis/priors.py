"""Is a synthetic set's gain its class prior? The control that needs no synthetic image.

A class-balanced synthetic set added to an imbalanced real training split changes two things: the images the
network sees and the class prior it is trained under. Accuracy, balanced accuracy and macro-F1 depend on
that prior; the prior alone can be moved without training anything, by Bayes' rule on the real-only network's
test probabilities: p'(y|x) ∝ p(y|x) π'(y) / π(y), with π the real split's class frequencies and π' those of
real + the set (Saerens et al., Neural Computation 2002; the post-hoc logit adjustment of Menon et al., ICLR
2021). Each real-only run so adjusted is paired with the set's run of the same network and seed:

- `real (prior π')` − real: what the prior alone changes;
- S − `real (prior π')`: what the set adds beyond its prior, the number a claim about images rests on.

AUC is left out: it ranks, and a prior acts on the decision (for two classes the adjustment is monotone and
cannot move AUC at all).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mgdm.analysis import paired
from mgdm.classifiers.grading import grading_metrics
from mgdm.files import FileError

METRICS = ("acc", "balanced_acc", "macro_f1")  # the prior-dependent grading metrics
# The record (records/priors.npz): real_counts (classes), sets and set_counts (sets x classes), test_labels,
# and per real-only run networks, seeds and probs (runs x test images x classes, float32 as the run wrote them).


def class_counts(labels, classes: int) -> np.ndarray:
    return np.bincount(np.asarray(labels, dtype=int), minlength=classes)


def reweight(probs: np.ndarray, prior_from, prior_to) -> np.ndarray:
    """Test probabilities of a network trained under `prior_from`, moved to `prior_to` by Bayes' rule."""
    w = np.asarray(prior_to, dtype=float) / np.asarray(prior_from, dtype=float)
    p = np.asarray(probs, dtype=float) * w
    return p / p.sum(1, keepdims=True)


def priors(record: dict) -> dict[str, np.ndarray]:
    """{set: the class frequencies of the real training split plus the set}: what a run on it trains under."""
    counts = record["real_counts"][None, :] + record["set_counts"]
    return {str(s): c / c.sum() for s, c in zip(record["sets"], counts)}


def adjusted_label(prior: np.ndarray) -> str:
    """Sets that share a prior (same sizes, both class-balanced) share one adjusted real-only run."""
    return f"real (prior {'/'.join(f'{v:.3f}' for v in prior)})"


def adjusted_runs(record: dict, dataset: str) -> pd.DataFrame:
    """Every real-only run of `record`, once per distinct prior of its sets, its test probabilities moved there."""
    real = record["real_counts"] / record["real_counts"].sum()
    rows = []
    for prior in {adjusted_label(p): p for p in priors(record).values()}.values():
        for network, seed, probs in zip(record["networks"], record["seeds"], record["probs"]):
            m = grading_metrics(record["test_labels"], reweight(probs, real, prior), False)
            rows.append({"dataset": dataset, "network": str(network), "seed": int(seed),
                         "train set": adjusted_label(prior), **{k: m[k] for k in METRICS}})
    return pd.DataFrame(rows)


def prior_table(runs: pd.DataFrame, record: dict, dataset: str, margin: float = paired.MARGIN,
                alpha: float = paired.ALPHA) -> pd.DataFrame:
    """Each distinct prior alone against real-only, then each set against the real-only runs moved to its
    prior, paired on (network, seed) under both inferences; Holm over the table, per inference."""
    both = pd.concat([runs[runs["dataset"] == dataset], adjusted_runs(record, dataset)], ignore_index=True)
    set_priors = {s: adjusted_label(p) for s, p in priors(record).items()}
    pairs = [(label, "real") for label in dict.fromkeys(set_priors.values())] + list(set_priors.items())
    rows = []
    for a, b in pairs:
        for m in METRICS:
            rows += [{"dataset": dataset, "train set": a, "vs": b, "metric": m, **r}
                     for r in paired.comparison(both, a, b, m, margin=margin, alpha=alpha)]
    return paired.adjust(pd.DataFrame(rows), margin, alpha)


def check_against_runs(record: dict, runs: pd.DataFrame, dataset: str, source: str) -> None:
    """The record's real-only probabilities must be the runs' own: each run's argmax right where runs.csv says
    it was right (`test_correct`). Raises FileError naming the first run that differs."""
    real = runs[(runs["dataset"] == dataset) & (runs["train set"] == "real")]
    correct = {(r.network, int(r.seed)): r.test_correct for r in real.itertuples()}
    for network, seed, probs in zip(record["networks"], record["seeds"], record["probs"]):
        got = "".join("1" if c else "0" for c in probs.argmax(1) == record["test_labels"])
        if correct.get((str(network), int(seed))) != got:
            raise FileError(f"{source}: real-only run {network} seed {seed} does not match the run records' "
                            f"test predictions (runs.csv): the record is from other runs")
