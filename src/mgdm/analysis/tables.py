"""Stage `report`: the paper's tables (markdown and LaTeX) and summary figures from the metrics JSONs."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from mgdm.analysis import paired  # noqa: E402
from mgdm.classifiers.zoo import NETWORKS  # noqa: E402
from mgdm.files import FileError, atomic_path, read_metrics, read_npz, save_figure  # noqa: E402

GRADING = ("acc", "balanced_acc", "macro_f1", "auc", "qwk")
FLOOR = "real-heldout"
FIDELITY_COLUMNS = ("fid", "fid ÷ floor", "kid", "precision", "recall", "f_score", "is")
DISTRIBUTION_COLUMNS = ("n", "label_agreement", "mean_entropy", "ks_entropy_stat", "ks_entropy_p", "centre_distance",
                        "density", "coverage", "channel_mean", "channel_std", "colour_error")


def floor_row(fidelity_metrics: dict) -> dict:
    """Return the floor's metrics from a fidelity JSON (`floor_<metric>`), under the sets' column names."""
    return {k.removeprefix("floor_"): v for k, v in fidelity_metrics.items()
            if k.startswith("floor_") and not k.endswith("_std")}


def write_table(df: pd.DataFrame, stem: str | Path, caption: str) -> None:
    """Write `df` as <stem>.md and <stem>.tex."""
    with atomic_path(f"{stem}.md") as tmp:
        tmp.write_text(f"{caption}\n\n{df.to_markdown(index=False, floatfmt='.3f')}\n")
    with atomic_path(f"{stem}.tex") as tmp:
        tmp.write_text(df.style.hide(axis="index").format(precision=3, na_rep="--")
                       .to_latex(caption=caption, hrules=True, position="t") + "\n")


def mean_std(frame: pd.DataFrame, by: list[str], cols: list[str]) -> pd.DataFrame:
    """Return per-group mean and std (over seeds) of `cols`, formatted 'm ± s' when there are several seeds."""
    g = frame.groupby(by, sort=False)[cols]
    mean, std, n = g.mean(), g.std(), g.size()
    out = mean.copy().astype(object)
    for c in cols:
        out[c] = [f"{m:.3f}" if k < 2 else f"{m:.3f} ± {s:.3f}" for m, s, k in zip(mean[c], std[c], n)]
    return out.reset_index()


def downstream_table(runs: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in GRADING if c in runs and runs[c].notna().any()]
    table = mean_std(runs, ["dataset", "network", "adaptation", "train set"], cols)
    base = runs[runs["train set"] == "real"].groupby(["dataset", "network"])["acc"].mean()
    delta = runs.groupby(["dataset", "network", "train set"], sort=False)["acc"].mean()
    table["Δacc vs real"] = [delta[(d, n, t)] - base.get((d, n), float("nan"))
                             for d, n, t in zip(table["dataset"], table["network"], table["train set"])]
    return table


def downstream_job(train_set: str) -> tuple[str, dict]:
    """The stage that trains on `train_set` and its extra wildcards: real-only is the baseline."""
    return ("train_baseline", {}) if train_set == "real" else ("train_classifier", {"set": train_set})


def downstream_runs(datasets: list[str], networks: list[str], sets: list[str], seeds: list[int],
                    image_sizes: dict[str, int], metrics) -> pd.DataFrame:
    """One row per downstream job (real-only and each synthetic set): its grading metrics and wall clock."""
    rows = []
    for d in datasets:
        for n in networks:
            for s in ["real", *sets]:
                for seed in seeds:
                    stage, extra = downstream_job(s)
                    m = read_metrics(metrics(stage, dataset=d, network=n, seed=seed, **extra), "acc", "auc")
                    rows.append({"dataset": d, "network": n, "adaptation": NETWORKS[n].adaptation(image_sizes[d]),
                                 "train set": s, "seed": seed, **{k: m.get(k) for k in GRADING},
                                 "wall_s": m["wall_s"], "machine": m.get("machine")})
    return pd.DataFrame(rows)


def run(profile: str, datasets: list[str], sets: list[str], networks: list[str], seeds: list[int],
        image_sizes: dict[str, int], metrics, tables_dir: str | Path, figures: dict[str, str | Path],
        predictions, mgdm_measure: str, images_only: bool = False) -> dict:
    """Read every stage's metrics JSON (at `metrics(stage, **wildcards)`) and the downstream runs' test
    predictions (at `predictions(stage, **wildcards)`), and write tables and figures.

    `images_only`: only the tables of the images (fidelity, distribution, guidance net, runtime so far),
    for a profile whose downstream networks have not been trained yet.
    """
    fid, dist, guidance, runtime = [], [], [], []
    for d in datasets:
        for i, s in enumerate(sets):
            f = read_metrics(metrics("fidelity", dataset=d, set=s), "n_fake")
            fid.append({"dataset": d, "set": s, "n": f.get("n_fake"),
                        **{k: v for k, v in f.items() if k.split("_")[0] in ("domain", "inception")}})
            if i == len(sets) - 1:  # every set has the same class plan and n, so they share one floor
                fid.append({"dataset": d, "set": FLOOR, "n": f.get("n_fake"), **floor_row(f)})
            runtime.append(timing("fidelity", f))
            runtime.append(timing("sample", read_metrics(metrics("sample", dataset=d, set=s))))
        analysis = read_metrics(metrics("analyze", dataset=d), "sets")
        for s in [*sets, FLOOR, "real-train", "real-test"]:  # the analysis JSON has its keys sorted
            row = analysis["sets"].get(s)
            if row is None:
                continue
            dist.append({"dataset": d, "set": s, **{k: v for k, v in row.items()
                                                    if not k.endswith(("_values", "_std")) or k == "channel_std"}})
        g = read_metrics(metrics("train_guidance_net", dataset=d))
        guidance.append({"dataset": d, **{k.replace("val_acc_t", "t = "): v for k, v in g.items()
                                          if k.startswith("val_acc_t")}})
        for stage in ("preprocess", "train_ddpm", "train_guidance_net", "train_reference_net", "analyze"):
            runtime.append(timing(stage, read_metrics(metrics(stage, dataset=d))))

    tables_dir = Path(tables_dir)
    image_tables(profile, fid, dist, guidance, tables_dir)
    if images_only:
        write_runtime(profile, runtime, tables_dir)
        return {"metrics": {"n_downstream_runs": 0}}
    runs = downstream_runs(datasets, networks, sets, seeds, image_sizes, metrics)
    runtime += [timing("train_baseline" if r["train set"] == "real" else "train_classifier", r)
                for r in runs.to_dict("records")]
    write_runtime(profile, runtime, tables_dir)
    preds: dict[str, dict] = {d: {} for d in datasets}
    for r in runs.to_dict("records"):
        stage, extra = downstream_job(r["train set"])
        path = predictions(stage, dataset=r["dataset"], network=r["network"], seed=r["seed"], **extra)
        f = read_npz(path)
        if not {"probs", "labels"} <= set(f):
            raise FileError(f"{path}: not a test-prediction file (expected 'probs' and 'labels')")
        preds[r["dataset"]][(r["network"], r["train set"], r["seed"])] = (f["probs"].argmax(1), f["labels"])
    caption = (f"Downstream grading on the real test split (profile `{profile}`; networks trained on real + each "
               f"synthetic set, epoch selected on real validation AUC; mean ± std over seeds {seeds}"
               + (f"; run on {', '.join(sorted(set(runs['machine'].dropna())))}"
                  if runs["machine"].notna().any() else "")
               + ").")
    write_table(downstream_table(runs), tables_dir / "downstream", caption)
    graded = [c for c in GRADING if c in runs and runs[c].notna().any()]
    write_table(paired.format_table(paired.comparisons_table(runs, sets, graded, preds)), tables_dir / "paired",
                f"Paired changes in each grading metric (points; profile `{profile}`, networks {networks}, seeds "
                f"{seeds}): each training set against "
                "real-only and against classifier guidance, one pair per (network, seed) (same initialisation, "
                "real-data order and test split). Mean, percentile-bootstrap 95% CI, Wilcoxon signed-rank and "
                "paired-t p, Cohen's d_z; with a single pair only McNemar's exact test on the test predictions, "
                "which ignores training noise.")
    claims = paired.claims_table(runs, sets, mgdm_measure, "acc", preds)
    write_table(paired.format_table(claims), tables_dir / "claims",
                f"The paper's claims tested on downstream accuracy (points; profile `{profile}`, networks {networks}, "
                f"seeds {seeds}). Verdict: supported "
                f"or contradicted when the 95% CI excludes 0 and Wilcoxon p < {paired.ALPHA}; otherwise undecided "
                f"at this power (under {paired.MIN_PAIRS} pairs a Wilcoxon test cannot reach p < {paired.ALPHA}).")
    g = sns.catplot(runs, x="train set", y="acc", hue="network", col="dataset", kind="bar", errorbar="sd",
                    height=4, aspect=1.6, sharey=False)
    g.set_xticklabels(rotation=30, ha="right")
    g.set_axis_labels("", "test accuracy")
    save_figure(g.figure, figures["downstream"])

    acc = runs.groupby(["dataset", "train set"])["acc"].mean()
    fd = pd.DataFrame([r for r in fid if r["set"] != FLOOR])
    fd["Δacc vs real"] = [acc[(d, s)] - acc[(d, "real")] for d, s in zip(fd["dataset"], fd["set"])]
    fig, ax = plt.subplots(figsize=(6, 4))
    x = "domain_fid" if "domain_fid" in fd else "inception_fid"
    sns.scatterplot(fd, x=x, y="Δacc vs real", hue="set", style="dataset", s=80, ax=ax)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(title="Fidelity vs downstream gain (mean over networks and seeds)")
    save_figure(fig, figures["fidelity_vs_downstream"])
    verdicts = claims["verdict"].str.split(" ").str[0].value_counts()
    return {"metrics": {"n_downstream_runs": len(runs),
                        **{f"claims_{v}": int(verdicts.get(v, 0)) for v in ("supported", "contradicted", "undecided")}}}


def image_tables(profile: str, fid: list[dict], dist: list[dict], guidance: list[dict], tables_dir: Path) -> None:
    """Write the fidelity, distribution and guidance-net tables."""
    fd = pd.DataFrame(fid)
    for col in [c for c in fd if c.endswith("_fid")]:
        floors = fd[fd["set"] == FLOOR].set_index("dataset")[col]
        fd[f"{col} ÷ floor"] = [v / floors[d] for d, v in zip(fd["dataset"], fd[col])]
    order = [f"{e}_{m}" for e in ("domain", "inception") for m in FIDELITY_COLUMNS]
    fd = fd[["dataset", "set", "n"] + [c for c in order if c in fd]]
    write_table(fd, tables_dir / "fidelity",
                f"Fidelity of each synthetic set against the real training split (profile `{profile}`); "
                "'domain' uses the reference net's features, 'inception' torch-fidelity's Inception-V3. "
                f"'{FLOOR}': val + test images in the same class mix and number n, scored the same way (mean "
                "of 3 draws): what a generator that matched the data would score. Sets are scored on their first n "
                "images in that class mix (FID is biased by n).")
    dd = pd.DataFrame(dist)
    dd = dd[["dataset", "set"] + [c for c in DISTRIBUTION_COLUMNS if c in dd]].astype({"n": "Int64"})
    write_table(dd, tables_dir / "distribution",
                f"Image sets in the reference net's feature space (profile `{profile}`): mean entropy, KS test "
                "of entropy against real test images, distance to real class centres (1 = real average), "
                "agreement of the reference net with the conditioning label, density and coverage (k "
                "nearest neighbours of the real training features), per-channel mean and std (0-255), and "
                "colour_error: the largest per-channel mean difference from the real training images under the "
                f"same class mix. '{FLOOR}': val + test images at the same n and class mix (mean of 3 draws).")
    write_table(pd.DataFrame(guidance), tables_dir / "guidance_net",
                f"Accuracy of the noise-conditioned guidance net on real validation images noised to step t "
                f"(profile `{profile}`): uncertainty guidance is only as informative as this classifier.")


def timing(stage: str, m: dict) -> dict:
    """A job's wall clock and what it was measured on (older metrics JSONs name no machine)."""
    machine = m.get("machine")
    return {"stage": stage, "wall_s": m["wall_s"], "machine": machine if isinstance(machine, str) else "unrecorded"}


def write_runtime(profile: str, runtime: list[dict], tables_dir: Path) -> None:
    rt = pd.DataFrame(runtime).groupby("stage", sort=False).agg(
        jobs=("wall_s", "count"), total=("wall_s", "sum"), longest=("wall_s", "max"),
        machine=("machine", lambda m: ", ".join(sorted(set(m))))).reset_index()
    rt.columns = ["stage", "jobs", "total wall s", "longest job s", "measured on"]
    write_table(rt, tables_dir / "runtime", f"Wall clock per stage (profile `{profile}`), as each job measured it, "
                "and the machines it ran on (a study may train its downstream networks on a GPU).")

