"""Paired statistics of downstream runs, and the claims table that states the paper's claims with them.

Every comparison is paired: the two training sets are trained with the same network and the same seed
(same initialisation and real-data order) and scored on the same test split, so one (network, seed)
pair's difference is the unit of evidence. Two inferences answer two questions:

- `pairs`: about *these* networks. Over the n pairs: mean, t interval (df n - 1), paired-t p, Wilcoxon p
  and Cohen's d_z. Seeds are the only random factor.
- `networks`: about networks in general (a random factor). Each network's pairs are averaged first and
  the t interval runs over the N network means (df N - 1). For a balanced design this is exactly the
  REML interval of a random-intercept mixed model, and it keeps its coverage at small N
  (tests/test_paired.py simulates it); the pair-level interval does not when networks differ.

Verdicts are bounds against an equivalence margin (params `inference.margin`, points): `supported` or
`contradicted` when the Holm-adjusted two-sided p is below alpha; else `gain of at least M excluded` when
the one-sided test of "gain >= M" rejects (Holm-adjusted; the upper half of Schuirmann's two one-sided
tests); else `undecided`, with the reason. A table is one family for Holm, per inference.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from mgdm.config import UNCERTAINTY_MEASURES, parse_set_name, set_draw, set_multiple

ALPHA = 0.05
MARGIN = 1.0  # points: the low end of the paper's claimed 1-3 point gain (params.yaml inference.margin)
INFERENCES = ("networks", "pairs")


def t_summary(d: np.ndarray, margin: float = MARGIN, alpha: float = ALPHA) -> dict:
    """Return the t inference on the mean of `d`: mean, CI, two-sided p, and p of H0 "mean >= margin"."""
    n = len(d)
    out = {"n": n, "mean": float(d.mean()) if n else math.nan, "ci_low": math.nan, "ci_high": math.nan,
           "p": math.nan, "p_margin": math.nan, "sd": float(d.std(ddof=1)) if n > 1 else math.nan}
    if n < 2:
        return out
    se = out["sd"] / math.sqrt(n)
    if se == 0:  # every pair the same difference: the interval is that point
        out.update(ci_low=out["mean"], ci_high=out["mean"], p=1.0 if out["mean"] == 0 else 0.0,
                   p_margin=0.0 if out["mean"] < margin else 1.0)
        return out
    q = stats.t.ppf(1 - alpha / 2, n - 1)
    out.update(ci_low=out["mean"] - q * se, ci_high=out["mean"] + q * se,
               p=float(2 * stats.t.sf(abs(out["mean"]) / se, n - 1)),
               p_margin=float(stats.t.cdf((out["mean"] - margin) / se, n - 1)))
    return out


def wilcoxon_p(d: np.ndarray) -> float:
    """Wilcoxon signed-rank p (zeros dropped; exact where scipy can be); 1 when every difference is 0."""
    if len(d) < 2:
        return math.nan
    if not np.any(d != 0):
        return 1.0
    return float(stats.wilcoxon(d).pvalue)


def mcnemar_p(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Exact McNemar p: of the test images exactly one model gets right, is the split 50:50?"""
    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    return 1.0 if b + c == 0 else float(stats.binomtest(b, b + c, 0.5).pvalue)


def holm(p) -> np.ndarray:
    """Holm's step-down adjusted p values (NaN stays NaN and is not counted in the family)."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m, running = len(order), 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        out[j] = running
    return out


def pairs(runs: pd.DataFrame, a: str, b: str, metric: str) -> pd.DataFrame:
    """Return one row per (network, seed) with both training sets: columns a, b and diff = a - b.

    A pair is a network *and* a seed: seed 0 of two networks are two pairs, never one.
    """
    wide = runs[runs["train set"].isin([a, b])].pivot_table(index=["network", "seed"], columns="train set",
                                                              values=metric, aggfunc="first")
    if a not in wide or b not in wide:  # e.g. a metric one dataset does not have (qwk of a non-ordinal set)
        empty = pd.MultiIndex.from_arrays([[], []], names=["network", "seed"])
        return pd.DataFrame({a: [], b: [], "diff": []}, index=empty)
    wide = wide[[a, b]].dropna()
    return wide.assign(diff=wide[a] - wide[b])


def variance_components(p: pd.DataFrame) -> dict:
    """Split paired differences (index network, seed; column diff) into seed-to-seed and network-by-set
    variance with one-way random-effects ANOVA (method of moments; seeds per network averaged harmonically)."""
    groups = [g["diff"].to_numpy() for _, g in p.groupby(level="network", sort=False)]
    k, n = len(groups), sum(len(g) for g in groups)
    out = {"var_seed": math.nan, "var_network": math.nan, "networks": k, "pairs": n}
    if n - k < 1:
        return out
    within = sum(((g - g.mean()) ** 2).sum() for g in groups) / (n - k)
    out["var_seed"] = float(within)
    if k > 1:
        grand = np.concatenate(groups).mean()
        between = sum(len(g) * (g.mean() - grand) ** 2 for g in groups) / (k - 1)
        s_h = stats.hmean([len(g) for g in groups])
        out["var_network"] = float(max(0.0, (between - within) / s_h))
    return out


def summarise(p: pd.DataFrame, inference: str, margin: float = MARGIN, alpha: float = ALPHA,
              correct: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """One comparison's inference from its pairs (`diff` in points, index network, seed).

    `networks`: the t interval over per-network means; `pairs`: over the pairs, with Wilcoxon and d_z, and
    McNemar on the test predictions (`correct`) when there is a single pair.
    """
    d = p["diff"].to_numpy(dtype=float)
    d = np.round(d, 9)  # float noise (0.51 - 0.5 != 0.61 - 0.6) is not a spread
    n_networks = p.index.get_level_values("network").nunique() if len(p) else 0
    if inference == "networks":
        units = np.round(p.groupby(level="network", sort=False)["diff"].mean().to_numpy(dtype=float), 9)
    else:
        units = d
    s = t_summary(units, margin, alpha)
    s.update(inference=inference, networks=n_networks, pairs=len(d), wilcoxon_p=math.nan, d_z=math.nan,
             mcnemar_p=math.nan)
    if inference == "pairs":
        s["wilcoxon_p"] = wilcoxon_p(d)
        if len(d) > 1 and s["sd"] > 0:
            s["d_z"] = s["mean"] / s["sd"]
        if len(d) == 1 and correct is not None:
            s["mcnemar_p"] = mcnemar_p(*correct)
    return s


def verdict(s: dict, margin: float = MARGIN, alpha: float = ALPHA) -> str:
    """The verdict on "a beats b" from Holm-adjusted p values (`p_holm`, `p_margin_holm`), with its reason."""
    unit = "network" if s["inference"] == "networks" else "pair"
    if s["n"] < 2:
        return f"undecided ({s['n']} {unit}{'s' * (s['n'] != 1)}: no interval)"
    if s["p_holm"] < alpha:
        return "supported" if s["mean"] > 0 else "contradicted"
    if s["p_margin_holm"] < alpha:
        return f"gain of at least {margin:g} excluded"
    if s["ci_low"] > 0 or s["ci_high"] < 0:
        return f"undecided (CI excludes 0, but Holm-adjusted p {fmt_p(s['p_holm'])} >= {alpha:g})"
    if s["ci_high"] < margin:
        return (f"undecided (CI below +{margin:g}, but Holm-adjusted p of a gain >= {margin:g} is "
                f"{fmt_p(s['p_margin_holm'])})")
    return f"undecided (CI includes 0 and +{margin:g})"


def adjust(rows: pd.DataFrame, margin: float = MARGIN, alpha: float = ALPHA) -> pd.DataFrame:
    """Holm-adjust a table's p values, each inference its own family, and write each row's verdict."""
    rows = rows.copy()
    rows["p_holm"], rows["p_margin_holm"] = np.nan, np.nan
    for _, idx in rows.groupby("inference", sort=False).groups.items():
        rows.loc[idx, "p_holm"] = holm(rows.loc[idx, "p"])
        rows.loc[idx, "p_margin_holm"] = holm(rows.loc[idx, "p_margin"])
    rows["verdict"] = [verdict(r, margin, alpha) for r in rows.to_dict("records")]
    return rows


def correctness(predictions: dict, key_a: tuple, key_b: tuple) -> tuple[np.ndarray, np.ndarray] | None:
    """Return per-test-image correctness of two runs from {(network, set, seed): correct (bool array)}."""
    if key_a not in predictions or key_b not in predictions:
        return None
    return predictions[key_a], predictions[key_b]


def comparison(runs: pd.DataFrame, a: str, b: str, metric: str, predictions: dict | None = None,
               inferences: tuple[str, ...] = INFERENCES, margin: float = MARGIN, alpha: float = ALPHA) -> list[dict]:
    """The inferences on `metric` for training set `a` against `b` (points for rates: x 100), before Holm."""
    p = pairs(runs, a, b, metric)
    if p.empty:  # nothing to compare (the metric or a set is absent): no row rather than an empty one
        return []
    p = p.assign(diff=100 * p["diff"].astype(float))
    correct = None
    if len(p) == 1 and predictions is not None:
        network, seed = p.index[0]
        correct = correctness(predictions, (network, a, seed), (network, b, seed))
    return [summarise(p, inf, margin, alpha, correct) for inf in inferences
            if inf == "pairs" or p.index.get_level_values("network").nunique() > 1]


def comparisons_table(runs: pd.DataFrame, sets: list[str], metrics: list[str], predictions: dict | None = None,
                      margin: float = MARGIN, alpha: float = ALPHA) -> pd.DataFrame:
    """Every synthetic set against real-only and against each classifier-guidance set, for every metric."""
    references = ["real"] + [s for s in sets if s.startswith("classifier-")]
    rows = []
    for dataset, frame in runs.groupby("dataset", sort=False):
        preds = (predictions or {}).get(dataset)
        for ref in references:
            for s in sets:
                if s == ref or not comparable(s, ref):
                    continue
                for m in metrics:
                    rows += [{"dataset": dataset, "train set": s, "vs": ref, "metric": m, **r}
                             for r in comparison(frame, s, ref, m, preds, margin=margin, alpha=alpha)]
    return adjust(pd.DataFrame(rows), margin, alpha) if rows else pd.DataFrame()


def uncertainty_sets(sets: list[str]) -> list[str]:
    return [s for s in sets if parse_set_name(s)[0] in UNCERTAINTY_MEASURES]


def comparable(a: str, b: str) -> bool:
    """Whether two training sets are compared: at one synthetic quantity and from one draw of noise (real-only is
    every set's reference)."""
    return "real" in (a, b) or (set_multiple(a), set_draw(a)) == (set_multiple(b), set_draw(b))


def claims_table(runs: pd.DataFrame, sets: list[str], mgdm_measure: str, metric: str = "acc",
                 predictions: dict | None = None, margin: float = MARGIN, alpha: float = ALPHA) -> pd.DataFrame:
    """The paper's claims, each as paired comparisons of downstream `metric` under both inferences."""
    unc = uncertainty_sets(sets)
    classifier = [s for s in sets if s.startswith("classifier-")]
    mgdm = [s for s in sets if s.startswith("mgdm-")]
    one_stage = [s for s in sets if s.startswith(f"{mgdm_measure}-")]
    rows = []
    for dataset, frame in runs.groupby("dataset", sort=False):
        preds = (predictions or {}).get(dataset)

        def add(claim, a, b):
            rows.extend({"claim": claim, "dataset": dataset, "comparison": f"{a} − {b}", **r}
                        for r in comparison(frame, a, b, metric, preds, margin=margin, alpha=alpha))

        # guidances compare at one quantity and draw (entropy-s2-x3 against none-x3, entropy-s2-d1 against none-d1)
        for u in unc:
            for n in (s for s in sets if parse_set_name(s)[0] == "none" and comparable(u, s)):
                add("uncertainty guidance beats no guidance", u, n)
        for u in unc:
            for c in classifier:
                if comparable(u, c):
                    add("uncertainty guidance beats classifier guidance", u, c)
        for m in mgdm:
            for o in one_stage:
                if comparable(m, o):
                    add("two-stage MGDM beats one-stage uncertainty guidance", m, o)
        for u in unc:
            add("uncertainty guidance beats real-only training", u, "real")
    return adjust(pd.DataFrame(rows), margin, alpha) if rows else pd.DataFrame()


def fmt_p(p: float) -> str:
    """A p value to two significant digits ('0.00089'), so it can be checked against any threshold."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "--"
    return "1" if p >= 0.995 else f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def format_table(df: pd.DataFrame) -> pd.DataFrame:
    """The report's form: mean and CI as one column ('+1.2 [-0.4, +2.8]'), p values to two significant
    digits, n as networks / pairs."""
    if df.empty:  # e.g. claims of a profile without the sets they compare
        return df
    out = df.drop(columns=["ci_low", "ci_high", "n", "sd"]).copy()
    out.insert(out.columns.get_loc("mean") + 1, "95% CI",
               [f"[{lo:+.2f}, {hi:+.2f}]" if not math.isnan(lo) else "--" for lo, hi in zip(df.ci_low, df.ci_high)])
    out["mean"] = [f"{m:+.2f}" for m in df["mean"]]
    for c in ("p", "p_holm", "p_margin", "p_margin_holm", "wilcoxon_p", "mcnemar_p"):
        out[c] = [fmt_p(v) for v in df[c]]
    out["d_z"] = [f"{v:+.2f}" if not math.isnan(v) else "--" for v in df["d_z"]]
    first = [c for c in out if c not in ("inference", "networks", "pairs", "mean", "95% CI", "p", "p_holm",
                                         "p_margin", "p_margin_holm", "wilcoxon_p", "d_z", "mcnemar_p", "verdict")]
    order = first + ["inference", "networks", "pairs", "mean", "95% CI", "p", "p_holm", "p_margin", "p_margin_holm",
                     "wilcoxon_p", "d_z", "mcnemar_p", "verdict"]
    return out[order]


def halfwidth(sd: float, n: int) -> float:
    """The expected 95% CI half-width of a mean of n paired differences with standard deviation sd."""
    return float(stats.t.ppf(1 - ALPHA / 2, n - 1) * sd / math.sqrt(n)) if n > 1 else math.inf


def design(var_network: float, var_seed: float, networks: int, seeds: int, effect: float,
           alpha: float = ALPHA) -> dict:
    """Network-level half-width and two-sided power to detect `effect` points with N networks x S seeds.

    The network-level mean has variance var_network / N + var_seed / (N S) and N - 1 degrees of freedom;
    power is the noncentral t's mass beyond the critical value.
    """
    se = math.sqrt(var_network / networks + var_seed / (networks * seeds))
    if networks < 2 or se == 0:
        return {"halfwidth": math.inf if networks < 2 else 0.0, "power": math.nan if networks < 2 else 1.0}
    df = networks - 1
    q = stats.t.ppf(1 - alpha / 2, df)
    nc = effect / se
    # the far tail: scipy's nct.cdf gives nan where the mass is 0 (e.g. df 19, noncentrality 11)
    power = stats.nct.sf(q, df, nc) + np.nan_to_num(stats.nct.cdf(-q, df, nc))
    return {"halfwidth": float(q * se), "power": float(power)}


EFFECTS = (1.0, 1.5, 3.0)


def power_table(runs: pd.DataFrame, wall_s: float, budget_min: float, parallel: int, compared_sets: int,
                networks=(5, 10, 15, 20), seeds=(1, 2, 4, 8), effects=EFFECTS) -> tuple[pd.DataFrame, dict]:
    """Design a study from finished runs: variance components of the paired accuracy change (points) against
    real-only, pooled over the sets; then for each design (networks x seeds) the network-level 95% half-width,
    the power to detect each effect, and the minutes it costs ((1 + compared sets) runs per pair)."""
    sets = [s for s in runs["train set"].unique() if s != "real"]
    comps = {}
    for s in sets:
        p = pairs(runs, s, "real", "acc")
        comps[s] = variance_components(p.assign(diff=100 * p["diff"].astype(float)))
    var_seed = float(np.nanmean([c["var_seed"] for c in comps.values()]))
    # one network cannot tell the network component apart: the designs then use the seed variance alone
    # (their half-widths and power are best cases) and the summary says it is not estimable
    estimable = any(not math.isnan(c["var_network"]) for c in comps.values())
    var_net = float(np.nanmean([c["var_network"] for c in comps.values()])) if estimable else 0.0
    rows = []
    for n in networks:
        for s in seeds:
            minutes = n * s * (1 + compared_sets) * wall_s / 60 / parallel
            row = {"networks": n, "seeds": s, "pairs": n * s, "minutes": minutes,
                   "half-width": design(var_net, var_seed, n, s, 0.0)["halfwidth"]}
            for e in effects:
                row[f"power at {e:g}"] = design(var_net, var_seed, n, s, e)["power"]
            row["fits budget"] = minutes <= budget_min
            rows.append(row)
    summary = {"var_seed": var_seed, "var_network": var_net if estimable else math.nan,
               "sd_seed": math.sqrt(var_seed), "sd_network": math.sqrt(var_net) if estimable else math.nan,
               "network_estimable": estimable, "pilot_networks": int(runs["network"].nunique()),
               "pilot_pairs": int(runs.groupby(["network", "seed"]).ngroups), "wall_s_per_run": wall_s,
               **{f"var_seed_{k}": v["var_seed"] for k, v in comps.items()},
               **{f"var_network_{k}": v["var_network"] for k, v in comps.items()}}
    return pd.DataFrame(rows), summary
