"""`mgdm training-length`: how long downstream training must run before validation AUC stops improving.

The downstream schedule is one-cycle over the whole run, so a length is part of the recipe: a 32-epoch run
is not a 4-epoch run continued, and one long curve cannot say where a shorter run would have ended. Each
network therefore trains on the real training split once per length in `training_length.epochs` (its seeds
together, the downstream optimiser, epoch selected on validation AUC as downstream training does). A length
has converged when no longer length raises the mean best validation AUC by more than `tolerance`; the
shortest such length is the network's converged length. One JSON per (network, length), a finished one
skipped; then a table and a figure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mgdm.config import ConfigError
from mgdm.files import read_json, write_json
from mgdm.machine import cpu_name
from mgdm.tools import open_dataset, open_tool


def train_length(dataset, profile, network: str, epochs: int, path: Path, progress: bool = True) -> list[dict]:
    """Train `network` for `epochs` at every seed (one process, seeds together); one row per seed."""
    from mgdm.classifiers.score import Job, train_and_score_group

    seeds = profile.training_length.seeds
    cfg = profile.downstream.model_copy(update={"epochs": epochs})
    # a killed length resumes from its runs' states (train_runs removes them when done)
    jobs = [Job(s, resume_path=path.with_name(f"{path.stem}-s{s}.resume.safetensors")) for s in seeds]
    results = train_and_score_group(dataset, network, cfg, jobs, profile.device, progress)
    rows = [{"network": network, "epochs": epochs, "seed": seed, "best_epoch": r["metrics"]["best_epoch"],
             "val_auc": max(v for _, v in r["history"]["val_auc"]), "acc": r["metrics"]["acc"],
             "auc": r["metrics"]["auc"], "balanced_acc": r["metrics"]["balanced_acc"], "wall_s": r["wall_s"],
             "machine": cpu_name(), "val_auc_curve": [v for _, v in r["history"]["val_auc"]]}
            for seed, r in zip(seeds, results)]
    write_json(path, rows)
    return rows


def converged_length(rows: pd.DataFrame, tolerance: float) -> int:
    """The shortest length whose mean best validation AUC no longer length beats by more than `tolerance`."""
    mean = rows.groupby("epochs")["val_auc"].mean().sort_index()
    # the best mean of the lengths after each one (the longest: nothing after it, so it always qualifies)
    best_after = mean[::-1].cummax().shift(1, fill_value=-np.inf)[::-1]
    return int(mean.index[(best_after - mean <= tolerance).to_numpy()][0])


def table(rows: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Per network and length: means over seeds (AUCs and accuracies), the gain to the next length, and which
    length is the network's converged one."""
    g = rows.groupby(["network", "epochs"], sort=False)
    out = g[["val_auc", "acc", "auc", "balanced_acc", "best_epoch", "wall_s"]].mean().reset_index()
    out.insert(3, "val_auc_sd", g["val_auc"].std(ddof=1).to_numpy() if g.size().min() > 1 else np.nan)
    out.insert(4, "seeds", g.size().to_numpy())
    order = {n: i for i, n in enumerate(dict.fromkeys(rows["network"]))}  # networks as first met, lengths rising
    out = out.sort_values(["network", "epochs"], key=lambda c: c.map(order) if c.name == "network" else c,
                          ignore_index=True)
    converged = {n: converged_length(r, tolerance) for n, r in rows.groupby("network", sort=False)}
    out["gain to next"] = out.groupby("network")["val_auc"].shift(-1) - out["val_auc"]
    # the longest length always qualifies: there it only means that no longer one was tried
    longest = out["epochs"] == out.groupby("network")["epochs"].transform("max")
    at = out["epochs"] == out["network"].map(converged)
    out["converged"] = np.select([at & longest, at], ["not shown (longest run)", "yes"], "")
    return out


def plot(rows: pd.DataFrame, converged: dict, path: Path) -> None:
    """Best validation AUC (each seed, and the mean) and test AUC over the training length, one panel a network."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mgdm.files import save_figure

    networks = list(dict.fromkeys(rows["network"]))
    cols = min(4, len(networks))
    fig, axes = plt.subplots(-(-len(networks) // cols), cols, figsize=(3.4 * cols, 2.8 * -(-len(networks) // cols)),
                             squeeze=False, sharey=True)
    for ax, network in zip(axes.flat, networks):
        r = rows[rows["network"] == network]
        ax.scatter(r["epochs"], r["val_auc"], s=10, color="grey", alpha=0.6, label="validation (a seed)")
        mean = r.groupby("epochs")[["val_auc", "auc"]].mean()
        ax.plot(mean.index, mean["val_auc"], marker="o", label="validation (mean)")
        ax.plot(mean.index, mean["auc"], marker="s", ls="--", label="test (mean)")
        ax.axvline(converged[network], color="black", lw=0.8, ls=":")
        ax.set(xscale="log", xticks=list(mean.index), xticklabels=[str(e) for e in mean.index], title=network,
               xlabel="epochs (one-cycle over the run)")
        ax.minorticks_off()
    for ax in axes.flat[len(networks):]:
        ax.set_axis_off()
    axes[0][0].set_ylabel("best AUC")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Downstream training length on real data: best AUC per length (dotted: converged length)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def report(rows: pd.DataFrame, profile, dataset: str, root: Path) -> dict[str, int]:
    """Write tables/training_length (md, tex) and figures/training_length.png under `root` from the run rows alone
    (so the committed table is rebuilt from the committed records); return each network's converged length."""
    from mgdm.analysis.tables import write_table

    tl, d = profile.training_length, profile.downstream
    out = table(rows, tl.tolerance)
    converged = {n: int(g.loc[g["converged"] != "", "epochs"].iloc[0]) for n, g in out.groupby("network")}
    write_table(out, root / "tables" / "training_length",
                f"Downstream training length on real {dataset} (profile `{profile.name}`): each network trained on "
                f"the real training split for each length (one-cycle over the run; seeds "
                f"{', '.join(map(str, sorted(set(rows['seed']))))}; downstream optimiser, batch {d.batch_size}, lr "
                f"{d.lr}), epoch selected on validation AUC; means over seeds. `val_auc`: best validation AUC; `gain "
                f"to next`: its change at the next length; converged: the shortest length that no longer length "
                f"beats by more than {tl.tolerance:g} in mean validation AUC (at the longest length run, not "
                f"shown). Machine: "
                f"{' / '.join(sorted(set(rows['machine'])))}; `wall_s`: seconds per run, its seeds trained together.")
    plot(rows, converged, root / "figures" / "training_length.png")
    return converged


def main(a) -> int:
    config, plan, name = open_tool(a)
    p = config.profile
    tl = p.training_length
    root = Path(plan.root)
    records = root / "records" / "training_length.json"  # every finished run: what the table is built from
    if a.table_only:
        if not records.exists():
            raise ConfigError(f"{records}: no finished length yet; run without --table-only")
        rows = read_json(records)
    else:
        networks = a.network or tl.networks or p.downstream.networks
        out_dir = root / name / "lengths"
        dataset = open_dataset(plan, name)
        finished = {(r["network"], r["epochs"], r["seed"]): r for r in read_json(records)} if records.exists() else {}
        for network in networks:
            for epochs in tl.epochs:
                path = out_dir / f"{network}-e{epochs}.json"
                if path.exists():
                    new = read_json(path)
                else:
                    new = train_length(dataset, p, network, epochs, path, not a.no_progress)
                    print(f"{network} at {epochs} epochs: best validation AUC "
                          f"{np.mean([r['val_auc'] for r in new]):.3f} (mean of {len(new)} seeds)")
                finished.update({(r["network"], r["epochs"], r["seed"]): r for r in new})
        rows = list(finished.values())
        write_json(records, rows)
    converged = report(pd.DataFrame(rows), p, name, root)
    longest = max(r["epochs"] for r in rows)
    said = [f"{n} {e}" + (" (not shown: the longest run)" if e == longest else "") for n, e in converged.items()]
    print(f"converged lengths: {', '.join(said)}; wrote {plan.root}/tables/training_length.md")
    return 0
