"""The draw of a synthetic set as a random factor (profile `draws`, `mgdm set-draws`).

Every other profile trains on one draw of each set (its images start from the sampling seed's noise). Its
intervals treat networks and seeds as random and the set as fixed, so they are about that draw. With K draws
of each set (`sampling.redraws`; the sets of one draw share their noise, so they pair), a comparison's paired
change averaged over seeds is an N networks x K draws table of cells y[n, k], and a crossed two-way
random-effects model answers for guidance rather than for one draw:

    y[n, k] = mu + a[n] + b[k] + e[n, k]    (networks a, draws b; e: network x draw and seed noise)

Balanced, so ANOVA's mean squares give the components (method of moments): E[MS_net] = s2_e + K s2_net,
E[MS_draw] = s2_e + N s2_draw, E[MS_res] = s2_e. F = MS_draw / MS_res on (K - 1, (N - 1)(K - 1)) df tests the
draw effect. The mean's variance over networks *and* draws is (MS_net + MS_draw - MS_res) / (N K); the interval
drops the -MS_res term (an upper bound, never negative) and takes Satterthwaite's df for the two mean squares:
conservative, and it keeps its coverage in simulation (tests/test_draws.py) where one draw's network-level
interval does not once draws differ. How large a draw effect the data leave room for is the one-sided upper
bound on s2_draw from F's distribution (the residual variance at its estimate): the draws' sd is below it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from mgdm.analysis import paired
from mgdm.config import parse_set_name, redrawn, set_draw

INFERENCE = "networks x draws"
METRICS = ("acc", "balanced_acc", "macro_f1", "auc")


def drawn(name: str, k: int) -> str:
    """Set `name` (a draw-0 name, or real) at draw k: entropy-s2 -> entropy-s2-d3; real stays real."""
    return name if name == "real" else redrawn(name, k)


def draws_in(runs: pd.DataFrame) -> list[int]:
    """The draws the runs' synthetic sets come from (0: the sets themselves)."""
    return sorted({set_draw(s) for s in runs["train set"].unique() if s != "real"})


def cells(runs: pd.DataFrame, a: str, b: str, metric: str, draws: list[int]) -> pd.DataFrame:
    """Networks x draws: each network's mean paired change a − b (points) over its seeds, at each draw."""
    cols = {}
    for k in draws:
        p = paired.pairs(runs, drawn(a, k), drawn(b, k), metric)
        cols[k] = 100 * p["diff"].astype(float).groupby(level="network", sort=False).mean()
    return pd.DataFrame(cols).dropna()


def mean_squares(y: np.ndarray) -> dict:
    """Two-way ANOVA without replication on an N x K table: the mean squares of rows, columns and residual."""
    n, k = y.shape
    m, rows, cols = y.mean(), y.mean(axis=1), y.mean(axis=0)
    resid = y - rows[:, None] - cols[None, :] + m
    return {"ms_network": k * ((rows - m) ** 2).sum() / (n - 1), "ms_draw": n * ((cols - m) ** 2).sum() / (k - 1),
            "ms_residual": (resid ** 2).sum() / ((n - 1) * (k - 1))}


def crossed(y: np.ndarray, margin: float = paired.MARGIN, alpha: float = paired.ALPHA) -> dict:
    """The mean of an N networks x K draws table with both factors random: mean, conservative t interval
    (Satterthwaite df), two-sided p, one-sided p of "gain >= margin", the components' sds and the draw F test."""
    n, k = y.shape
    out = {"inference": INFERENCE, "n": n * k, "networks": n, "draws": k, "mean": float(y.mean())}
    if n < 2 or k < 2:
        return {**out, **dict.fromkeys(("ci_low", "ci_high", "df", "p", "p_margin", "sd_network", "sd_draw",
                                        "sd_draw_upper", "sd_residual", "p_draw"), math.nan)}
    ms = mean_squares(y)
    net, draw, res = ms["ms_network"], ms["ms_draw"], ms["ms_residual"]
    df_res = (n - 1) * (k - 1)
    out.update(sd_network=math.sqrt(max(0.0, (net - res) / k)), sd_draw=math.sqrt(max(0.0, (draw - res) / n)),
               sd_residual=math.sqrt(res), p_draw=float(stats.f.sf(draw / res, k - 1, df_res)) if res > 0 else math.nan,
               # one-sided upper bound: (MS_draw / MS_res) / (1 + N s2_draw / s2_e) is F(K - 1, df_res), so
               # s2_draw / s2_e <= (ratio / F's alpha quantile - 1) / N; s2_e taken at its estimate
               sd_draw_upper=math.sqrt(max(0.0, (draw / res / stats.f.ppf(alpha, k - 1, df_res) - 1) / n * res))
               if res > 0 else math.nan)
    var = net + draw
    if var == 0:  # every cell the same: the interval is that point
        return {**out, "ci_low": out["mean"], "ci_high": out["mean"], "df": math.inf,
                "p": 1.0 if out["mean"] == 0 else 0.0, "p_margin": 0.0 if out["mean"] < margin else 1.0}
    se = math.sqrt(var / (n * k))
    df = var ** 2 / (net ** 2 / (n - 1) + draw ** 2 / (k - 1))
    q = stats.t.ppf(1 - alpha / 2, df)
    return {**out, "ci_low": out["mean"] - q * se, "ci_high": out["mean"] + q * se, "df": df,
            "p": float(2 * stats.t.sf(abs(out["mean"]) / se, df)),
            "p_margin": float(stats.t.cdf((out["mean"] - margin) / se, df))}


def comparisons(runs: pd.DataFrame, mgdm_measure: str = "entropy") -> list[tuple[str, str]]:
    """The comparisons the profile's draw-0 sets allow: each set against real-only, uncertainty guidance against
    no and classifier guidance, classifier against no guidance, MGDM's two stages against their one-stage measure."""
    sets = [s for s in runs["train set"].unique() if s != "real" and set_draw(s) == 0]
    kind = {s: parse_set_name(s)[0] for s in sets}
    out = [(s, "real") for s in sets]
    for a in paired.uncertainty_sets(sets):
        out += [(a, b) for b in sets if kind[b] in ("none", "classifier")]
    out += [(a, b) for a in sets if kind[a] == "classifier" for b in sets if kind[b] == "none"]
    out += [(a, b) for a in sets if kind[a] == "mgdm" for b in sets if kind[b] == mgdm_measure]
    return out


def draws_table(runs: pd.DataFrame, metrics=METRICS, margin: float = paired.MARGIN, alpha: float = paired.ALPHA,
                mgdm_measure: str = "entropy") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pooled, per draw): each comparison and metric over networks and draws (crossed; Holm over the table),
    and each draw alone as a one-draw profile reports it (network-level t interval; Holm within each draw)."""
    draws = draws_in(runs)
    pooled, single = [], []
    for a, b in comparisons(runs, mgdm_measure):
        for m in metrics:
            y = cells(runs, a, b, m, draws)
            if y.empty:
                continue
            pooled.append({"comparison": f"{a} − {b}", "metric": m, **crossed(y.to_numpy(), margin, alpha)})
            for k in draws:
                s = paired.t_summary(y[k].to_numpy(), margin, alpha)
                single.append({"comparison": f"{a} − {b}", "metric": m, "draw": k, "inference": f"draw {k}",
                               "networks": len(y), **s})
    return paired.adjust(pd.DataFrame(pooled), margin, alpha), paired.adjust(pd.DataFrame(single), margin, alpha)


def short(verdict: str) -> str:
    return verdict.split(" (")[0].replace("gain of at least ", "≥").replace(" excluded", " excl.")


def format_draws(pooled: pd.DataFrame, single: pd.DataFrame) -> pd.DataFrame:
    """One row per comparison and metric: each draw's network-level mean [CI] and verdict, then the components
    and the crossed inference."""
    rows = []
    for r in pooled.to_dict("records"):
        one = single[(single["comparison"] == r["comparison"]) & (single["metric"] == r["metric"])]
        row = {"comparison": r["comparison"], "metric": r["metric"]}
        for s in one.to_dict("records"):
            row[f"draw {s['draw']}"] = (f"{s['mean']:+.2f} [{s['ci_low']:+.2f}, {s['ci_high']:+.2f}] "
                                        f"{short(s['verdict'])}")
        row.update({"sd draws": f"{r['sd_draw']:.2f}", "sd draws, 95% upper": f"{r['sd_draw_upper']:.2f}",
                    "sd networks": f"{r['sd_network']:.2f}",
                    "sd residual": f"{r['sd_residual']:.2f}", "p draw effect": paired.fmt_p(r["p_draw"]),
                    "over networks and draws": f"{r['mean']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]",
                    "df": f"{r['df']:.1f}", "p": paired.fmt_p(r["p"]), "p_holm": paired.fmt_p(r["p_holm"]),
                    "p_margin_holm": paired.fmt_p(r["p_margin_holm"]), "verdict": r["verdict"]})
        rows.append(row)
    return pd.DataFrame(rows)


def draws_plot(pooled: pd.DataFrame, single: pd.DataFrame, margin: float, path) -> None:
    """Per metric: each comparison's draws (grey, one-draw network-level 95% CI) and the crossed estimate
    (black), the margin dashed."""
    from mgdm.analysis.tables import plt  # with the report's backend (Agg) and style
    from mgdm.files import save_figure

    metrics = [m for m in ("acc", "balanced_acc", "auc") if m in set(pooled["metric"])]
    comps = list(dict.fromkeys(pooled["comparison"]))[::-1]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.4 * len(metrics), 0.55 * len(comps) + 1.5), sharey=True,
                             squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for i, c in enumerate(comps):
            one = single[(single["comparison"] == c) & (single["metric"] == m)]
            k = len(one)
            ys = i + 0.38 * (np.arange(k) - (k - 1) / 2) / max(k, 1) - 0.12
            ax.hlines(ys, one["ci_low"], one["ci_high"], colors="0.6", lw=1)
            ax.scatter(one["mean"], ys, c="0.45", s=10, zorder=3)
            r = pooled[(pooled["comparison"] == c) & (pooled["metric"] == m)].iloc[0]
            ax.hlines(i + 0.22, r["ci_low"], r["ci_high"], colors="black", lw=2)
            ax.scatter([r["mean"]], [i + 0.22], c="black", s=22, zorder=3)
        ax.axvline(0, color="black", lw=0.8)
        for x in (-margin, margin):
            ax.axvline(x, color="grey", lw=0.8, ls="--")
        ax.set_yticks(range(len(comps)), comps)
        ax.set(title=m, xlabel="paired change (points)")
    fig.suptitle("Each draw of the sets alone (grey: network-level 95% CI, one line a draw) and over networks and "
                 f"draws (black, both random); dashed: ±{margin:g}-point margin", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
