"""`mgdm survey-zoo`: what each network of the zoo costs and learns on real data, before a study uses it.

Each network, in the adaptation the zoo gives it, trains on the real training split for the same
short budget (`zoo.epochs`, the downstream optimiser and batch), selects its epoch on validation AUC
as downstream training does, and is scored on the test split: seconds per epoch, test ACC and AUC.
A network is flagged when its test AUC is within 0.1 of chance (0.5) or its accuracy does not beat
always answering the majority class. One JSON per network (a finished network is skipped); every surveyed
network goes into `records/zoo.json` (with the test split's majority share), which the table is built from
and `mgdm plan` prices the profile's networks from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mgdm.classifiers.score import train_and_score
from mgdm.classifiers.zoo import NETWORKS
from mgdm.config import ConfigError, Profile
from mgdm.data.splits import Dataset
from mgdm.files import read_json, write_json
from mgdm.machine import cpu_name
from mgdm.tools import open_dataset, open_tool
from mgdm.workflow.stages import ZOO_RECORD, ZOO_RUNS

CHANCE_AUC_MARGIN = 0.1


def survey_network(dataset: Dataset | None, profile: Profile, network: str, out_dir: Path,
                   progress: bool = True) -> dict:
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


def table(rows: list[dict], majority: float) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df["flag"] = [flag(r, majority) for r in rows]
    return df[["network", "adaptation", "epochs", "s_per_epoch", "best_epoch", "acc", "auc", "balanced_acc", "flag"]]


def majority_share(dataset: Dataset) -> float:
    """The accuracy of always answering the test split's most frequent class."""
    labels = dataset.numpy("test")[1]
    return float(np.bincount(labels).max() / len(labels))


def report(record: dict, profile: Profile, root: Path) -> None:
    """Write tables/zoo (md, tex) under `root` from the record alone (so the committed table is rebuilt from
    the committed record)."""
    from mgdm.analysis.tables import write_table

    p, rows = profile, record["networks"]
    missing = [n for n in networks(p, []) if n not in {r["network"] for r in rows}]
    threads = "/".join(sorted({str(r.get("threads", "unrecorded")) for r in rows}))  # as each network ran
    machines = " / ".join(sorted({r.get("machine", "unrecorded") for r in rows}))
    write_table(table(rows, record["majority"]), root / "tables" / "zoo",
                f"The zoo on real {record['dataset']} (profile `{p.name}`): each network trained from scratch for "
                f"{p.zoo.epochs} epochs (downstream optimiser, batch {p.downstream.batch_size}, lr {p.downstream.lr}, "
                f"seed {p.zoo.seed}), epoch selected on validation AUC, scored on the test split; seconds per "
                f"epoch on {machines} with {threads} torch threads "
                f"({p.device}). Flagged: test AUC within {CHANCE_AUC_MARGIN} of chance or ACC not "
                "above the majority class." + (f" Not yet surveyed: {', '.join(missing)}." if missing else ""))


def networks(profile: Profile, only: list[str]) -> list[str]:
    return only or list(profile.zoo.networks or NETWORKS)


def main(a) -> int:
    config, plan, name = open_tool(a)
    p = config.profile
    root = Path(plan.root)
    records = root / ZOO_RECORD
    out_dir = root / ZOO_RUNS.format(dataset=name)
    old = read_json(records) if records.exists() else {"dataset": name, "networks": []}
    # kept where their JSONs are gone (a fresh clone); one dataset's survey a record
    surveyed = {r["network"]: r for r in old["networks"]} if old["dataset"] == name else {}
    # rewriting the table from the record needs no data (a fresh clone has none)
    dataset = None if a.table_only and surveyed else open_dataset(plan, name)
    for network in networks(p, a.network):
        if a.table_only and not (out_dir / f"{network}.json").exists():
            continue
        row = survey_network(dataset, p, network, out_dir, not a.no_progress)
        surveyed[network] = row
        print(f"{network}: {row['s_per_epoch']:.1f} s/epoch, test acc {row['acc']:.3f}, auc {row['auc']:.3f}")
    if not surveyed:
        raise ConfigError(f"{out_dir}: no surveyed network yet; run without --table-only")
    order = networks(p, [])  # the zoo's order, then any network surveyed outside it
    rows = sorted(surveyed.values(), key=lambda r: order.index(r["network"]) if r["network"] in order else len(order))
    majority = old["majority"] if dataset is None else majority_share(dataset)
    record = {"dataset": name, "majority": majority, "networks": rows}
    write_json(records, record)
    report(record, p, root)
    print(f"wrote {records} and {plan.root}/tables/zoo.md ({len(rows)} networks)")
    return 0
