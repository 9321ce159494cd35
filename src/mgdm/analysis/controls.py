"""Controls for a synthetic set's downstream gain: is it the class prior, or would as many real images do?

A class-balanced synthetic set added to an imbalanced real training split changes the images a network sees,
the class prior it trains under and the number of its optimiser steps. Accuracy, balanced accuracy and
macro-F1 depend on the prior. Two controls, each paired with the set's runs on (network, seed):

- the prior, post hoc (`mgdm prior-shift`): each real-only run's test probabilities moved by Bayes' rule,
  p'(y|x) ∝ p(y|x) π'(y) / π(y), from the real split's class frequencies π to those of real + the set π'
  (Saerens et al., Neural Computation 2002; the post-hoc logit adjustment of Menon et al., ICLR 2021), no
  retraining. AUC is left out: it ranks, and a prior acts on the decision (for two classes the adjustment is
  monotone and cannot move AUC at all).
- oversampling, trained (`mgdm copies-control`): real training images drawn with replacement within each class
  to the set's class counts and added to the real split, trained as the set's runs are: the same prior, the
  same training-set size (so, for a seed, the same data order and steps), no new image.

`control − real` is what the control alone changes; `set − control` what the set's images add beyond it, the
number a claim about images rests on. Holm runs over each control's table, per inference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mgdm.analysis import paired
from mgdm.classifiers.grading import grading_metrics
from mgdm.files import FileError

PRIOR_METRICS = ("acc", "balanced_acc", "macro_f1")  # the prior-dependent grading metrics
COPIES_METRICS = (*PRIOR_METRICS, "auc")

# the prior, post hoc
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
                         "train set": adjusted_label(prior), **{k: m[k] for k in PRIOR_METRICS}})
    return pd.DataFrame(rows)


def prior_table(runs: pd.DataFrame, record: dict, dataset: str, margin: float = paired.MARGIN,
                alpha: float = paired.ALPHA) -> pd.DataFrame:
    """Each distinct prior alone against real-only, then each set against the real-only runs moved to its
    prior, paired on (network, seed) under both inferences; Holm over the table, per inference."""
    both = pd.concat([runs[runs["dataset"] == dataset], adjusted_runs(record, dataset)], ignore_index=True)
    return control_table(both, {s: adjusted_label(p) for s, p in priors(record).items()}, PRIOR_METRICS, dataset,
                         margin, alpha)


def correct_string(probs: np.ndarray, labels: np.ndarray) -> str:
    """Which test images a run got right, as runs.csv's `test_correct` holds it: '0'/'1' per image."""
    return "".join("1" if c else "0" for c in np.asarray(probs).argmax(1) == labels)


def check_against_runs(record: dict, runs: pd.DataFrame, dataset: str, source: str) -> None:
    """The record's real-only probabilities must be the runs' own: each run's argmax right where runs.csv says
    it was right (`test_correct`). Raises FileError naming the first run that differs."""
    real = runs[(runs["dataset"] == dataset) & (runs["train set"] == "real")]
    correct = {(r.network, int(r.seed)): r.test_correct for r in real.itertuples()}
    for network, seed, probs in zip(record["networks"], record["seeds"], record["probs"]):
        if correct.get((str(network), int(seed))) != correct_string(probs, record["test_labels"]):
            raise FileError(f"{source}: real-only run {network} seed {seed} does not match the run records' "
                            f"test predictions (runs.csv): the record is from other runs")


# oversampling, trained
def control_label(counts) -> str:
    """Sets with the same class counts share one control."""
    return f"real copies ({'/'.join(str(int(c)) for c in counts)})"


def draw_copies(labels: np.ndarray, counts, seed: int = 0) -> np.ndarray:
    """Indices into the real training split: `counts[y]` images of each class y, drawn with replacement."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.flatnonzero(labels == y), int(n), replace=True)
                           for y, n in enumerate(counts) if n])


def copies_table(runs: pd.DataFrame, controls: dict[str, str], dataset: str, margin: float = paired.MARGIN,
                 alpha: float = paired.ALPHA) -> pd.DataFrame:
    """Each control against real-only, then each set against its control (`controls`: set -> control label),
    paired on (network, seed) under both inferences; Holm over the table, per inference."""
    return control_table(runs[runs["dataset"] == dataset], controls, COPIES_METRICS, dataset, margin, alpha)


def control_table(runs: pd.DataFrame, controls: dict[str, str], metrics, dataset: str,
                  margin: float = paired.MARGIN, alpha: float = paired.ALPHA) -> pd.DataFrame:
    """Each control against real-only, then each set against its control (`controls`: set -> the control's
    name in `runs`' train set column), per metric, paired on (network, seed) under both inferences; Holm over
    the table, per inference."""
    pairs = [(c, "real") for c in dict.fromkeys(controls.values())] + list(controls.items())
    rows = []
    for a, b in pairs:
        for m in metrics:
            rows += [{"dataset": dataset, "train set": a, "vs": b, "metric": m, **r}
                     for r in paired.comparison(runs, a, b, m, margin=margin, alpha=alpha)]
    return paired.adjust(pd.DataFrame(rows), margin, alpha)


def write_control(table: pd.DataFrame, root, stem: str, caption: str, margin: float) -> None:
    """The control's table (markdown, LaTeX) and forest plot under `root`; prints its accuracy rows over pairs,
    one line each, and what it wrote."""
    from pathlib import Path

    from mgdm.analysis.tables import forest_plot, write_table

    write_table(paired.format_table(table), Path(root) / "tables" / stem, caption)
    forest_plot(table, margin, Path(root) / "figures" / f"{stem}.png")
    shown = table[(table["inference"] == "pairs") & (table["metric"] == "acc")]
    for r in shown.to_dict("records"):
        print(f"{r['train set']} − {r['vs']}, accuracy over pairs: {r['mean']:+.2f} [{r['ci_low']:+.2f}, "
              f"{r['ci_high']:+.2f}] ({r['verdict']})")
    print(f"wrote {root}/tables/{stem}.md")
