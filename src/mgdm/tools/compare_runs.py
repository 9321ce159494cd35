"""`mgdm compare-runs A B`: did a rerun reproduce a profile's runs? Run by run, two sets of run records.

A and B are records/runs.csv files (or the records folders holding them), e.g. the committed ones and a rerun's
on another machine. Runs are matched on (dataset, network, set, seed); for each network: how many runs both
have, how many only one has, how many got exactly the same test images right (`test_correct`, byte for byte),
the largest difference of each grading metric in points, how many chose the same best epoch, and each side's
median wall seconds (the machines may differ). `--exact` exits 1 unless every run both have is the same.
"""

from __future__ import annotations

from pathlib import Path

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


def compare(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """One row per network: runs in both, in one only, identical predictions and metrics, largest differences."""
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
        rows.append(row)
    return pd.DataFrame(rows)


def identical(table: pd.DataFrame) -> bool:
    """Every run both have got the same test images right with the same metrics and best epoch."""
    same = table["same predictions"] == table["runs in both"]
    same &= table["same best epoch"] == table["runs in both"]
    for k in GRADING:
        same &= table[f"max Δ {k}"].fillna(0) == 0
    return bool(same.all())


def main(a) -> int:
    files = [runs_file(p) for p in (a.a, a.b)]
    table = compare(*(read_runs(f) for f in files))
    if table.empty:
        raise ConfigError(f"{files[0]} and {files[1]} hold no runs")
    caption = (f"Run by run: A = {files[0]}, B = {files[1]}; max Δ: the largest absolute difference, in points; "
               "a run is matched on dataset, network, set and seed.")
    if a.out:
        write_table(table, Path(a.out), caption)
    cells = table.map(lambda v: f"{v:.3f}" if isinstance(v, float) else v)  # as write_table writes them
    align = ["left"] + ["right"] * (len(cells.columns) - 1)
    print(caption + "\n\n" + cells.to_markdown(index=False, disable_numparse=True, colalign=align))
    same = identical(table)
    print(f"\n{int(table['runs in both'].sum())} runs in both; "
          + ("every one identical" if same else "not all identical"))
    return 1 if a.exact and not same else 0
