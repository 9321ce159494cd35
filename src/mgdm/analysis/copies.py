"""The oversampling control: is a synthetic set better than as many real images, copied?

A synthetic set adds images and, being class-balanced where the real split is not, moves the class prior and
the number of optimiser steps. Its control adds real training images instead, drawn with replacement within
each class to the set's own class counts: the same prior, the same training-set size (so, for a seed, the same
data order and the same steps), no new image. Each set is paired on (network, seed) with the control of its
class counts; `set − real copies` is what the synthetic images add beyond that, `real copies − real` what
resampling the real split alone does. (mgdm.analysis.priors moves the prior alone, without retraining.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mgdm.analysis import paired

METRICS = ("acc", "balanced_acc", "macro_f1", "auc")


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
    frame = runs[runs["dataset"] == dataset]
    pairs = [(c, "real") for c in dict.fromkeys(controls.values())] + list(controls.items())
    rows = []
    for a, b in pairs:
        for m in METRICS:
            rows += [{"dataset": dataset, "train set": a, "vs": b, "metric": m, **r}
                     for r in paired.comparison(frame, a, b, m, margin=margin, alpha=alpha)]
    return paired.adjust(pd.DataFrame(rows), margin, alpha)
