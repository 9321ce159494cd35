"""`mgdm survey-zoo`: what each network of the zoo costs and learns on real data, before a study uses it.

Each network, in the adaptation the zoo gives it, trains on the real training split for the same
short budget (`zoo.epochs`, the downstream optimiser and batch), selects its epoch on validation AUC
as downstream training does, and is scored on the test split: seconds per epoch, test ACC and AUC.
A network is flagged when its test AUC is within 0.1 of chance (0.5) or its accuracy does not beat
always answering the majority class. One JSON per network (a finished network is skipped), then a table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mgdm.classifiers.score import train_and_score
from mgdm.classifiers.zoo import NETWORKS
from mgdm.config import Profile
from mgdm.data.splits import Dataset
from mgdm.files import read_json, write_json
from mgdm.machine import cpu_name
from mgdm.config import ConfigError
from mgdm.tools import open_dataset, open_tool

CHANCE_AUC_MARGIN = 0.1


def survey_network(dataset: Dataset, profile: Profile, network: str, out_dir: Path, progress: bool = True) -> dict:
    """Train and score one network (or read its finished JSON); return its row."""
    path = out_dir / f"{network}.json"
    if path.exists():
        return read_json(path)
    cfg = profile.downstream.model_copy(update={"epochs": profile.zoo.epochs})
    result = train_and_score(dataset, network, cfg, profile.zoo.seed, device=profile.device, progress=progress)
    m = result["metrics"]
    row = {"network": network, "adaptation": result["params"]["adaptation"], "epochs": cfg.epochs,
           "s_per_epoch": m["train_s"] / cfg.epochs, "best_epoch": m["best_epoch"], "acc": m["acc"],
           "auc": m["auc"], "balanced_acc": m["balanced_acc"], "threads": torch.get_num_threads(),
           "machine": cpu_name()}
    write_json(path, row)
    return row


def flag(row: dict, majority: float) -> str:
    reasons = []
    if row["auc"] < 0.5 + CHANCE_AUC_MARGIN:
        reasons.append(f"AUC within {CHANCE_AUC_MARGIN} of chance")
    if row["acc"] <= majority:
        reasons.append(f"ACC ≤ majority class ({majority:.3f})")
    return "near chance: " + "; ".join(reasons) if reasons else ""


def table(rows: list[dict], dataset: Dataset) -> pd.DataFrame:
    labels = dataset.numpy("test")[1]
    majority = float(np.bincount(labels).max() / len(labels))
    df = pd.DataFrame(rows)
    df["flag"] = [flag(r, majority) for r in rows]
    return df[["network", "adaptation", "epochs", "s_per_epoch", "best_epoch", "acc", "auc", "balanced_acc", "flag"]]


def networks(profile: Profile, only: list[str]) -> list[str]:
    return only or list(profile.zoo.networks or NETWORKS)


def main(a) -> int:
    from mgdm.analysis.tables import write_table

    config, plan, name = open_tool(a)
    p = config.profile
    dataset = open_dataset(plan, name)
    out_dir = Path(plan.root) / name / "zoo"
    rows = []
    chosen = networks(p, a.network)
    for network in chosen:
        path = out_dir / f"{network}.json"
        if a.table_only and not path.exists():
            continue
        row = survey_network(dataset, p, network, out_dir, not a.no_progress)
        rows.append(row)
        print(f"{network}: {row['s_per_epoch']:.1f} s/epoch, test acc {row['acc']:.3f}, auc {row['auc']:.3f}")
    if not rows:
        raise ConfigError(f"{out_dir}: no surveyed network yet; run without --table-only")
    missing = [n for n in chosen if n not in {r["network"] for r in rows}]
    threads = "/".join(sorted({str(r.get("threads", "unrecorded")) for r in rows}))  # as each network ran
    machines = " / ".join(sorted({r.get("machine", cpu_name()) for r in rows}))
    write_table(table(rows, dataset), Path(plan.root) / "tables" / "zoo",
                f"The zoo on real {name} (profile `{p.name}`): each network trained from scratch for "
                f"{p.zoo.epochs} epochs (downstream optimiser, batch {p.downstream.batch_size}, lr {p.downstream.lr}, "
                f"seed {p.zoo.seed}), epoch selected on validation AUC, scored on the test split; seconds per "
                f"epoch on {machines} with {threads} torch threads "
                f"({p.device}). Flagged: test AUC within {CHANCE_AUC_MARGIN} of chance or ACC not "
                "above the majority class." + (f" Not yet surveyed: {', '.join(missing)}." if missing else ""))
    print(f"wrote {plan.root}/tables/zoo.md ({len(rows)} networks)")
    return 0
