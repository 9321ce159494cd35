"""`mgdm compare-runs A B`: did a rerun reproduce a profile's runs? Run by run, two sets of run records.

A and B are records/runs.csv files (or the records folders holding them), e.g. the committed ones and a rerun's
on another machine. Runs are matched on (dataset, network, set, seed); for each network: how many runs both
have, how many only one has, how many got exactly the same test images right (`test_correct`, byte for byte),
the largest difference of each grading metric in points, how many chose the same best epoch, and each side's
median wall seconds (the machines may differ), and whether each set's paired change against real-only (the
seeds both have) moved further than the seed-to-seed spread allows (below). `--exact` exits 1 unless every run
both have is the same.

B may instead be a downstream table (a downstream.md: each cell's mean ± sd over the seeds its caption names),
for a profile whose earlier runs were kept only as that table (`paper-downstream`'s first GPU runs). Then each
network is compared at the cell level on the seeds the table names: the largest difference of a cell's mean,
and each set's paired change against real-only, A's against the table's. Two means of k seeds drawn from the
same process differ in a paired change by sd * sqrt(2 / k), sd the seed-to-seed sd of a paired change (pooled
over the network's sets, from A's runs on every seed it has; between two run records, from both); a change
further apart than two of those is counted as outside the spread (about 5% of them by chance; fewer where the
two sides' runs of a seed are alike, as reruns of one code on two machines are).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mgdm.analysis.tables import GRADING, read_runs, write_table
from mgdm.config import ConfigError

KEY = ["dataset", "network", "train set", "seed"]


def runs_file(path: str | Path) -> Path:
    path = Path(path)
    path = path / "runs.csv" if path.is_dir() else path
    if not path.is_file():
        raise ConfigError(f"{path}: no run records (a records/runs.csv, or the folder holding one)")
    return path


def seed_changes(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Seeds x sets of one network: each run's change against its seed's real-only run, in points."""
    by_seed = runs.pivot_table(index="seed", columns="train set", values=metric)
    return 100 * by_seed.drop(columns="real").sub(by_seed["real"], axis=0)


def seed_sd(*changes: pd.DataFrame) -> float:
    """The seed-to-seed sd of a paired change, pooled over sets (and sides); NaN below two seeds a side."""
    return float(np.sqrt(pd.concat([c.var(ddof=1) for c in changes]).mean()))


def outside(gap: pd.Series, sd: float, k_a: int, k_b: int) -> int:
    """How many changes' gaps (mean over k_a seeds minus mean over k_b) exceed 2 sd of such a gap."""
    return int((gap.abs() > 2 * sd * np.sqrt(1 / k_a + 1 / k_b)).sum())


def changes_apart(a: pd.DataFrame, b: pd.DataFrame) -> tuple[int, int]:
    """One network's runs on two sides: (changes compared, changes outside 2 sd), on the seeds both have."""
    n = far = 0
    if "real" not in set(a["train set"]) & set(b["train set"]):
        return n, far
    for m in GRADING:
        ca, cb = seed_changes(a, m), seed_changes(b, m)
        sets, seeds = [c for c in ca.columns if c in cb.columns], sorted(set(ca.index) & set(cb.index))
        sd = seed_sd(ca[sets], cb[sets])
        if not seeds or not np.isfinite(sd):  # no seed in common, or one seed a side: no spread to judge by
            continue
        n += len(sets)
        far += outside(ca.loc[seeds, sets].mean() - cb.loc[seeds, sets].mean(), sd, len(seeds), len(seeds))
    return n, far


def compare(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """One row per network: runs in both, in one only, identical predictions and metrics, largest differences,
    paired changes against real-only outside the seed spread."""
    both = a.merge(b, on=KEY, suffixes=("_a", "_b"), how="outer", indicator=True)
    rows = []
    for net, g in both.groupby("network", sort=False):
        m = g[g["_merge"] == "both"]
        row = {"network": net, "runs in both": len(m), "only in A": int((g["_merge"] == "left_only").sum()),
               "only in B": int((g["_merge"] == "right_only").sum()),
               "same predictions": int((m["test_correct_a"] == m["test_correct_b"]).sum())}
        for k in GRADING:
            row[f"max Δ {k}"] = 100 * (m[f"{k}_a"] - m[f"{k}_b"]).abs().max() if len(m) else float("nan")
        row["same best epoch"] = int((m["best_epoch_a"] == m["best_epoch_b"]).sum())
        row["median wall s A"], row["median wall s B"] = m["wall_s_a"].median(), m["wall_s_b"].median()
        row["changes"], row["outside 2 sd"] = changes_apart(a[a["network"] == net], b[b["network"] == net])
        rows.append(row)
    return pd.DataFrame(rows)


def compare_legacy(runs: pd.DataFrame, cells: pd.DataFrame, seeds: list[int]) -> pd.DataFrame:
    """One row per network both hold: A's runs against a downstream table's cells (means over `seeds`)."""
    from mgdm.tools.legacy_networks import METRICS

    rows = []
    for net, legacy in cells.groupby("network", sort=False):
        mine = runs[runs["network"] == net]
        have = set(mine["train set"])
        sets = [s for s in legacy["train set"] if s in have]
        if not sets:
            continue
        legacy = legacy.set_index("train set")
        shared = sorted(set(mine["seed"]) & set(seeds))  # A's means over the table's seeds it has
        here = mine[mine["seed"].isin(shared)].groupby("train set")[list(METRICS)].mean()
        row = {"network": net, "cells in both": len(sets), "seeds in both": len(shared)}
        changes = [s for s in sets if s != "real"] if "real" in sets else []
        far = 0
        for m in METRICS:
            row[f"max Δ {m}"] = 100 * (here.loc[sets, m] - legacy.loc[sets, m]).abs().max()
            paired = seed_changes(mine, m)[changes]
            sd = seed_sd(paired)
            row[f"seed sd {m}"] = sd
            far += outside(paired.loc[shared].mean() - 100 * (legacy.loc[changes, m] - legacy.loc["real", m]), sd,
                           len(shared), len(seeds))
        row["changes"], row["outside 2 sd"] = len(changes) * len(METRICS), far
        rows.append(row)
    return pd.DataFrame(rows)


def identical(table: pd.DataFrame) -> bool:
    """Every run both have got the same test images right with the same metrics and best epoch."""
    same = table["same predictions"] == table["runs in both"]
    same &= table["same best epoch"] == table["runs in both"]
    for k in GRADING:
        same &= table[f"max Δ {k}"].fillna(0) == 0
    return bool(same.all())


def main_legacy(a) -> int:
    from mgdm.tools.legacy_networks import network_means

    file, table_file = runs_file(a.a), Path(a.b)
    cells = network_means(table_file)
    if not cells.attrs["seeds"]:
        raise ConfigError(f"{table_file}: its caption names no seeds ('mean ± std over seeds [...]')")
    table = compare_legacy(read_runs(file), cells, cells.attrs["seeds"])
    if table.empty:
        raise ConfigError(f"{file} and {table_file} share no network's cells")
    caption = (f"Runs A = {file} against the cells of B = {table_file} (means over seeds {cells.attrs['seeds']}), "
               "in points: max Δ, the largest difference of a cell's mean (A over the seeds both have); seed sd, "
               "the seed-to-seed sd of a run's change against real-only (A, every seed, pooled over sets); "
               "outside 2 sd: the changes against real-only (sets x metrics) where A's and B's means differ by more "
               "than 2 sd x sqrt(1/k_A + 1/k_B).")
    _show(table, caption, a.out, f"{int(table['outside 2 sd'].sum())} of {int(table['changes'].sum())} "
          "changes outside 2 sd (about 5% expected by chance)")
    return 0


def _show(table: pd.DataFrame, caption: str, out: str | None, summary: str) -> None:
    if out:
        write_table(table, Path(out), caption)
    cells = table.map(lambda v: f"{v:.3f}" if isinstance(v, float) else v)  # as write_table writes them
    align = ["left"] + ["right"] * (len(cells.columns) - 1)
    print(caption + "\n\n" + cells.to_markdown(index=False, disable_numparse=True, colalign=align))
    print("\n" + summary)


def main(a) -> int:
    if Path(a.b).suffix == ".md":
        return main_legacy(a)
    files = [runs_file(p) for p in (a.a, a.b)]
    table = compare(*(read_runs(f) for f in files))
    if table.empty:
        raise ConfigError(f"{files[0]} and {files[1]} hold no runs")
    caption = (f"Run by run: A = {files[0]}, B = {files[1]}; max Δ: the largest absolute difference, in points; "
               "a run is matched on dataset, network, set and seed. Changes: each set's paired change against "
               "real-only (sets x metrics, over the seeds both have); outside 2 sd: those where A's and B's means "
               "differ by more than 2 sd x sqrt(2/k), sd the seed-to-seed sd of a change (both sides, pooled over "
               "sets), k the seeds both have.")
    same = identical(table)
    _show(table, caption, a.out, f"{int(table['runs in both'].sum())} runs in both; "
          + ("every one identical" if same else "not all identical") + f"; {int(table['outside 2 sd'].sum())} of "
          f"{int(table['changes'].sum())} changes against real-only outside 2 sd (about 5% expected by chance)")
    return 1 if a.exact and not same else 0
