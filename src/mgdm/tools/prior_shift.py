"""`mgdm prior-shift`: is a synthetic set's downstream gain its class prior? (mgdm.analysis.controls)

Gathers what the control needs into the profile's records (records/priors.npz: the real split's and each set's
class counts, the test labels and every real-only run's test probabilities, 5-8 KB a run), then writes
tables/prior_shift.md and .tex and figures/prior_shift.png from the records alone; `--from-records` rebuilds
them in a fresh clone, as `mgdm report` does.
"""

from __future__ import annotations

from pathlib import Path

from mgdm.tools import open_tool, set_class_counts

RECORD = "priors.npz"


def gather(config, plan, name: str) -> dict:
    """The control's record, from the profile's finished files (dataset, sets, real-only test predictions)."""
    import numpy as np

    from mgdm.analysis.controls import class_counts
    from mgdm.files import read_npz

    data = read_npz(plan.dataset_file(name))
    classes = int(data["num_classes"])
    counts = set_class_counts(config, plan, name, classes)
    networks, seeds, probs = [], [], []
    for network in config.chosen("networks", None):
        for seed in config.chosen("seeds", None):
            f = read_npz(plan.paths("train_baseline", dataset=name, network=network, seed=seed)[f"seed{seed}_test.npz"])
            networks.append(network)
            seeds.append(seed)
            probs.append(f["probs"])
    return {"real_counts": class_counts(data["train_labels"], classes), "sets": np.array(list(counts)),
            "set_counts": np.stack(list(counts.values())), "test_labels": f["labels"], "networks": np.array(networks),
            "seeds": np.array(seeds), "probs": np.stack(probs)}


def main(a) -> int:
    from mgdm.analysis.controls import adjusted_label, check_against_runs, prior_table, priors, write_control
    from mgdm.analysis.tables import read_runs
    from mgdm.files import read_npz, write_npz

    config, plan, name = open_tool(a)
    records = Path(plan.paths("report")["runs.csv"]).parent
    path = records / RECORD
    runs = read_runs(records / "runs.csv")
    if a.from_records and not path.exists():
        raise FileNotFoundError(f"{path}: no prior-shift record; run `mgdm prior-shift --profile {plan.profile}` "
                                "where the runs' files are")
    record = read_npz(path) if a.from_records else gather(config, plan, name)
    check_against_runs(record, runs, name, str(path))
    if not a.from_records:
        write_npz(path, **record)
    p = config.profile
    table = prior_table(runs, record, name, p.inference.margin, p.inference.alpha)
    real = record["real_counts"] / record["real_counts"].sum()
    caption = (f"Is a synthetic set's gain its class prior? (profile `{p.name}`, {name}; from {records}/runs.csv "
               f"and {records}/{RECORD}.) `real (prior q)`: each real-only run's test probabilities moved by Bayes' "
               f"rule from the real split's class frequencies ({'/'.join(f'{v:.3f}' for v in real)}) to q, those "
               "of real + a set ("
               + "; ".join(f"{s}: {adjusted_label(q)[12:-1]}" for s, q in priors(record).items())
               + "), no retraining. Rows: each prior alone against real-only, then each set against the "
               "real-only runs at its prior (what the set adds beyond its prior), paired on (network, seed) under "
               "both inferences, Holm over the table per inference, verdicts against a "
               f"{p.inference.margin:g}-point margin as in paired.md. AUC is left out: it ranks, and a prior acts "
               "on the decision (for two classes the adjustment cannot move AUC at all).")
    write_control(table, plan.root, "prior_shift", caption, p.inference.margin)
    return 0
