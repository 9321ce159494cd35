"""`mgdm legacy-networks`: network-level inference for a profile whose run records were never committed.

Profiles reported before `records/runs.csv` existed keep only their tables. Their downstream table holds each
network's mean over its seeds, and every (network, seed) pair is complete, so each network's mean paired
difference is the difference of two committed means. That is all the network-level inference needs (the t
interval over network means, df = networks - 1), so it can be recomputed from git; the means are printed to
3 decimals, so each network's difference carries up to 0.1 point of rounding.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from mgdm.analysis import paired
from mgdm.analysis.tables import forest_plot, write_table
from mgdm.config import ConfigError
from mgdm.files import FileError
from mgdm.tools import open_tool

METRICS = ("acc", "balanced_acc", "auc")


def network_means(path: Path) -> pd.DataFrame:
    """Per-network means (fractions) of a committed downstream.md: network, train set, METRICS (the means)
    and `<metric> sd` (the standard deviations over the seeds the caption names, `seeds` in df.attrs)."""
    if not path.exists():
        raise ConfigError(f"{path}: not found (the profile has no committed downstream table)")
    caption, _, body = path.read_text().partition("\n\n")
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in body.splitlines() if line.startswith("|")]
    needed = ["network", "train set", *METRICS]
    if len(rows) < 3 or not set(needed) <= set(rows[0]) or any(len(r) != len(rows[0]) for r in rows):
        raise FileError(f"{path}: not a downstream table (a caption, then a markdown table with columns {needed})")
    df = pd.DataFrame(rows[2:], columns=rows[0])
    for m in METRICS:
        try:
            parts = df[m].str.split(" ± ", expand=True).astype(float)  # "mean ± sd", or a bare mean
        except ValueError:
            raise FileError(f"{path}: column {m!r} holds a cell that is not 'mean' or 'mean ± sd'") from None
        df[m], df[f"{m} sd"] = parts[0], parts[1] if 1 in parts else float("nan")
    seeds = re.search(r"over seeds \[([0-9, ]+)\]", caption)
    df.attrs["seeds"] = [int(s) for s in seeds.group(1).split(",")] if seeds else None
    return df


def table(means: pd.DataFrame, mgdm_measure: str, margin: float, alpha: float) -> pd.DataFrame:
    """The claims (accuracy) and every set against real-only and classifier guidance (each metric), at the
    network level: each is a table of its own, so its Holm adjustment is its family's."""
    runs = means.assign(seed=0, dataset=means.get("dataset", "-"))
    sets = [s for s in means["train set"].unique() if s != "real"]
    rows = [paired.claims_table(runs, sets, mgdm_measure, "acc", None, margin, alpha).assign(metric="acc",
                                                                                            family="claims")]
    rows += [paired.comparisons_table(runs, sets, [m], None, margin, alpha).assign(family=f"sets, {m}")
             for m in METRICS]
    out = pd.concat(rows, ignore_index=True)
    out = out[out["inference"] == "networks"].reset_index(drop=True)
    out["comparison"] = out["comparison"].fillna(out["train set"] + " − " + out["vs"])
    first = ["family", "comparison", "metric"]
    return out[first + [c for c in out.columns if c not in (*first, "claim", "dataset")]]


def main(a) -> int:
    config, plan, _ = open_tool(a)
    p = config.profile
    path = Path(plan.root) / "tables" / "downstream.md"
    means = network_means(path)
    if means["network"].nunique() < 2:  # else a table of no comparisons
        raise ConfigError(f"{path}: {means['network'].nunique()} network ({', '.join(means['network'].unique())}); "
                          "network-level inference needs two or more")
    result = table(means, p.sampling.mgdm.measure, p.inference.margin, p.inference.alpha)
    shown = paired.format_table(result.drop(columns=["train set", "vs"])).drop(
        columns=["pairs", "wilcoxon_p", "d_z", "mcnemar_p"])
    write_table(shown, Path(plan.root) / "tables" / "networks",
                f"Network-level inference for `{p.name}`, recomputed from the per-network means in its committed "
                f"downstream.md (its run records were not kept): each network's mean paired difference (points) is "
                f"one unit, t interval over {means['network'].nunique()} networks (df = networks − 1). p: two-sided "
                f"t; p_margin: one-sided t of H0 'gain ≥ {p.inference.margin:g}'; Holm-adjusted within each family "
                f"(the claims on accuracy; every set against real-only and classifier guidance, per metric). Means "
                f"are printed to 3 decimals, so each network's difference carries up to 0.1 point of rounding.")
    sets = result[result["family"].str.startswith("sets")]
    forest_plot(sets.assign(dataset=means["dataset"].iloc[0]), p.inference.margin,
                Path(plan.root) / "figures" / "networks.png")
    print(f"wrote {plan.root}/tables/networks.md and figures/networks.png ({len(result)} comparisons)")
    return 0
