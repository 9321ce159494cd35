"""Paired statistics of downstream runs, and the claims table that states the paper's claims with them.

Every comparison is paired: the two training sets being compared are trained with the same network,
the same seed (same initialisation and real-data order) and scored on the same test split, so the
unit of evidence is one (network, seed) pair's difference. Over pairs: mean, a bootstrap 95% CI,
Wilcoxon signed-rank p (paired t p beside it) and Cohen's d_z. With a single pair, training noise is
unmeasured; McNemar's exact test on the two runs' test predictions says only whether the test set
could tell the two models apart.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from mgdm.config import UNCERTAINTY_MEASURES

ALPHA = 0.05
MIN_PAIRS = 6  # the fewest pairs for which a two-sided Wilcoxon test can reach p < 0.05 (2 / 2^6)


def bootstrap_ci(diffs: np.ndarray, seed: int = 0, resamples: int = 10_000) -> tuple[float, float]:
    """Return the percentile bootstrap 95% CI of the mean of `diffs` (NaN for fewer than two)."""
    if len(diffs) < 2:
        return math.nan, math.nan
    if np.ptp(diffs) == 0:
        return float(diffs[0]), float(diffs[0])
    res = stats.bootstrap((diffs,), np.mean, confidence_level=1 - ALPHA, n_resamples=resamples,
                          method="percentile", random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def mcnemar_p(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Exact McNemar p: of the test images exactly one model gets right, is the split 50:50?"""
    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    return 1.0 if b + c == 0 else float(stats.binomtest(b, b + c, 0.5).pvalue)


def paired_summary(diffs, correct: tuple[np.ndarray, np.ndarray] | None = None, seed: int = 0) -> dict:
    """Summarise paired differences (one per (network, seed)): n, mean, CI, p values, d_z, verdict.

    `correct`: per-test-image correctness of the two runs, used for McNemar when there is one pair.
    """
    d = np.round(np.asarray(diffs, dtype=float), 9)  # float noise (0.51 - 0.5 != 0.61 - 0.6) is not a spread
    n = len(d)
    lo, hi = bootstrap_ci(d, seed)
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    out = {"n": n, "mean": float(d.mean()) if n else math.nan, "ci_low": lo, "ci_high": hi,
           "wilcoxon_p": math.nan, "t_p": math.nan, "d_z": math.nan, "mcnemar_p": math.nan}
    if n > 1 and np.any(d != 0):
        out["wilcoxon_p"] = float(stats.wilcoxon(d).pvalue)
        out["t_p"] = float(stats.ttest_1samp(d, 0.0).pvalue) if sd > 0 else 0.0
        out["d_z"] = float(d.mean() / sd) if sd > 0 else math.copysign(math.inf, d.mean())
    if n == 1 and correct is not None:
        out["mcnemar_p"] = mcnemar_p(*correct)
    out["verdict"] = verdict(out)
    return out


def verdict(s: dict) -> str:
    """Supported / contradicted when the CI excludes 0 and Wilcoxon agrees; otherwise undecided, with why."""
    if s["n"] < MIN_PAIRS:
        return f"undecided ({s['n']} pair{'s' * (s['n'] != 1)}; need {MIN_PAIRS})"
    significant = s["wilcoxon_p"] < ALPHA
    if significant and s["ci_low"] > 0:
        return "supported"
    if significant and s["ci_high"] < 0:
        return "contradicted"
    return "undecided (CI includes 0)"


def pairs(runs: pd.DataFrame, a: str, b: str, metric: str) -> pd.DataFrame:
    """Return one row per (network, seed) run with both training sets: columns a, b and diff = a - b."""
    wide = runs[runs["train set"].isin([a, b])].pivot_table(index=["network", "seed"], columns="train set",
                                                              values=metric, aggfunc="first")
    if a not in wide or b not in wide:
        return pd.DataFrame(columns=[a, b, "diff"])
    wide = wide[[a, b]].dropna()
    return wide.assign(diff=wide[a] - wide[b])


def correctness(predictions: dict, key_a: tuple, key_b: tuple) -> tuple[np.ndarray, np.ndarray] | None:
    """Return per-test-image correctness of two runs from {(network, set, seed): (pred, labels)}."""
    if key_a not in predictions or key_b not in predictions:
        return None
    (pa, y), (pb, _) = predictions[key_a], predictions[key_b]
    return pa == y, pb == y


def comparison(runs: pd.DataFrame, a: str, b: str, metric: str, predictions: dict | None = None) -> dict:
    """Paired summary of `metric` for training set `a` against `b` (in points for rates: x 100)."""
    p = pairs(runs, a, b, metric)
    correct = None
    if len(p) == 1 and predictions is not None:
        network, seed = p.index[0]
        correct = correctness(predictions, (network, a, seed), (network, b, seed))
    return paired_summary(100 * p["diff"].to_numpy(), correct)


def comparisons_table(runs: pd.DataFrame, sets: list[str], metrics: list[str],
                      predictions: dict | None = None) -> pd.DataFrame:
    """Every synthetic set against real-only and against each classifier-guidance set, for every metric."""
    references = ["real"] + [s for s in sets if s.startswith("classifier-")]
    rows = []
    for dataset, frame in runs.groupby("dataset", sort=False):
        preds = (predictions or {}).get(dataset)
        for ref in references:
            for s in sets:
                if s == ref:
                    continue
                for m in metrics:
                    rows.append({"dataset": dataset, "train set": s, "vs": ref, "metric": m,
                                 **comparison(frame, s, ref, m, preds)})
    return pd.DataFrame(rows)


def uncertainty_sets(sets: list[str]) -> list[str]:
    return [s for s in sets if s.split("-s")[0] in UNCERTAINTY_MEASURES]


def claims_table(runs: pd.DataFrame, sets: list[str], mgdm_measure: str, metric: str = "acc",
                 predictions: dict | None = None) -> pd.DataFrame:
    """The paper's claims, each as paired comparisons of downstream `metric` with a verdict."""
    unc = uncertainty_sets(sets)
    classifier = [s for s in sets if s.startswith("classifier-")]
    mgdm = [s for s in sets if s.startswith("mgdm-")]
    one_stage = [s for s in sets if s.startswith(f"{mgdm_measure}-")]
    rows = []

    def add(claim, frame, a, b, dataset):
        preds = (predictions or {}).get(dataset)
        rows.append({"claim": claim, "dataset": dataset, "comparison": f"{a} − {b}",
                     **comparison(frame, a, b, metric, preds)})

    for dataset, frame in runs.groupby("dataset", sort=False):
        for u in unc:
            if "none" in sets:
                add("uncertainty guidance beats no guidance", frame, u, "none", dataset)
        for u in unc:
            for c in classifier:
                add("uncertainty guidance beats classifier guidance", frame, u, c, dataset)
        for m in mgdm:
            for o in one_stage:
                add("two-stage MGDM beats one-stage uncertainty guidance", frame, m, o, dataset)
        # Across networks: each network's gain over real-only (mean over its seeds and the uncertainty
        # sets) is one unit, so the test asks whether the gain is there network by network.
        if unc:
            gains = []
            for network, net_runs in frame.groupby("network", sort=False):
                d = [pairs(net_runs, u, "real", metric)["diff"].mean() for u in unc]
                gains.append(100 * np.nanmean(d))
            s = paired_summary(np.asarray(gains))
            rows.append({"claim": "the gain over real-only holds across networks", "dataset": dataset,
                         "comparison": f"mean({', '.join(unc)}) − real, per network "
                                       f"({sum(g > 0 for g in gains)}/{len(gains)} networks > 0)", **s})
    return pd.DataFrame(rows)


def format_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and CI as one column ('+1.2 [-0.4, +2.8]'), p values to 3 decimals: the report's form."""
    if df.empty:  # e.g. claims of a profile without the sets they compare
        return df
    out = df.drop(columns=["ci_low", "ci_high"]).copy()
    out.insert(out.columns.get_loc("mean") + 1, "95% CI",
               [f"[{lo:+.2f}, {hi:+.2f}]" if not math.isnan(lo) else "--" for lo, hi in zip(df.ci_low, df.ci_high)])
    out["mean"] = [f"{m:+.2f}" for m in df["mean"]]
    return out


def halfwidth(sd: float, n: int) -> float:
    """The expected 95% CI half-width of a mean of n paired differences with standard deviation sd."""
    return float(stats.t.ppf(1 - ALPHA / 2, n - 1) * sd / math.sqrt(n)) if n > 1 else math.inf


def pairs_for_halfwidth(sd: float, target: float, most: int = 10_000) -> int:
    """The fewest pairs whose 95% CI half-width is at most `target` (t interval, sd from a pilot)."""
    return next((n for n in range(2, most) if halfwidth(sd, n) <= target), most)


def power_table(runs: pd.DataFrame, wall_s: float, target: float, budget_min: float, parallel: int,
                max_sets: int = 8) -> tuple[pd.DataFrame, dict]:
    """Design a study from a pilot: the seed-to-seed sd of paired accuracy changes (points) against
    real-only, the pairs needed for a CI half-width of `target`, and for 1..max_sets compared sets, the
    minutes that needs (runs x pilot wall clock per run / parallel jobs) and the half-width the budget buys."""
    sets = [s for s in runs["train set"].unique() if s != "real"]
    sds = {s: float(100 * pairs(runs, s, "real", "acc")["diff"].std(ddof=1)) for s in sets}
    sd = math.sqrt(float(np.mean([v ** 2 for v in sds.values()])))  # pooled over the pilot's sets
    need = pairs_for_halfwidth(sd, target)
    rows = []
    for k in range(1, max_sets + 1):
        per_pair_min = (k + 1) * wall_s / 60 / parallel  # real-only + k synthetic sets per (network, seed)
        afford = int(budget_min // per_pair_min)
        rows.append({"compared sets": k, "pairs needed": need, "minutes needed": need * per_pair_min,
                     f"pairs in {budget_min:g} min": afford, "half-width reached": halfwidth(sd, afford)})
    summary = {"sd_points": sd, **{f"sd_{s}": v for s, v in sds.items()}, "pilot_pairs": int(runs["seed"].nunique()),
               "wall_s_per_run": wall_s, "pairs_needed": need}
    return pd.DataFrame(rows), summary
