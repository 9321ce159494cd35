"""Stage `report`: the paper's tables (markdown and LaTeX) and summary figures from the metrics JSONs."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from mgdm.analysis.distribution import save_figure  # noqa: E402
from mgdm.classifiers.zoo import NETWORKS  # noqa: E402
from mgdm.files import atomic_path, read_json  # noqa: E402

GRADING = ("acc", "balanced_acc", "macro_f1", "auc", "qwk")


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


def run(profile: str, datasets: list[str], sets: list[str], networks: list[str], seeds: list[int],
        image_sizes: dict[str, int], metrics, tables_dir: str | Path, figures: dict[str, str | Path]) -> dict:
    """Read every stage's metrics JSON (at `metrics(stage, **wildcards)`) and write tables and figures."""
    down, fid, dist, runtime = [], [], [], []
    for d in datasets:
        for n in networks:
            for s in ["real", *sets]:
                for seed in seeds:
                    stage, extra = ("train_baseline", {}) if s == "real" else ("train_classifier", {"set": s})
                    m = read_json(metrics(stage, dataset=d, network=n, seed=seed, **extra))
                    adaptation = NETWORKS[n].adaptation(image_sizes[d])
                    down.append({"dataset": d, "network": n, "adaptation": adaptation, "train set": s, "seed": seed,
                                 **{k: m.get(k) for k in GRADING}})
                    runtime.append({"stage": stage, "job": f"{d}/{n}/{s}/seed{seed}", "wall_s": m.get("wall_s")})
        for s in sets:
            f = read_json(metrics("fidelity", dataset=d, set=s))
            fid.append({"dataset": d, "set": s, **{k: v for k, v in f.items() if k.split("_")[0] in ("domain", "inception")}})
            runtime.append({"stage": "fidelity", "job": f"{d}/{s}", "wall_s": f.get("wall_s")})
            runtime.append({"stage": "sample", "job": f"{d}/{s}",
                            "wall_s": read_json(metrics("sample", dataset=d, set=s)).get("wall_s")})
        analysis = read_json(metrics("analyze", dataset=d))
        for s, row in analysis["sets"].items():
            dist.append({"dataset": d, "set": s, **row})
        for stage in ("preprocess", "train_ddpm", "train_guidance_net", "train_reference_net", "analyze"):
            runtime.append({"stage": stage, "job": d, "wall_s": read_json(metrics(stage, dataset=d)).get("wall_s")})

    runs = pd.DataFrame(down)
    tables_dir = Path(tables_dir)
    caption = (f"Downstream grading on the real test split (profile `{profile}`; networks trained on real + each "
               f"synthetic set, epoch selected on real validation AUC; mean ± std over seeds {seeds}).")
    write_table(downstream_table(runs), tables_dir / "downstream", caption)
    write_table(pd.DataFrame(fid), tables_dir / "fidelity",
                f"Fidelity of each synthetic set against the real training split (profile `{profile}`); "
                "'domain' uses the reference net's features, 'inception' torch-fidelity's Inception-V3.")
    write_table(pd.DataFrame(dist), tables_dir / "distribution",
                f"Synthetic sets in the reference net's feature space (profile `{profile}`): mean entropy, KS test "
                "of entropy against real test images, distance to real class centres (1 = real average), "
                "agreement of the reference net with the conditioning label, density and coverage.")
    rt = pd.DataFrame(runtime).groupby("stage", sort=False)["wall_s"].agg(["count", "sum", "max"]).reset_index()
    rt.columns = ["stage", "jobs", "total wall s", "longest job s"]
    write_table(rt, tables_dir / "runtime", f"Wall clock per stage (profile `{profile}`), as each job measured it.")

    g = sns.catplot(runs, x="train set", y="acc", hue="network", col="dataset", kind="bar", errorbar="sd",
                    height=4, aspect=1.6, sharey=False)
    g.set_xticklabels(rotation=30, ha="right")
    g.set_axis_labels("", "test accuracy")
    save_figure(g.figure, figures["downstream"])

    acc = runs.groupby(["dataset", "train set"])["acc"].mean()
    fd = pd.DataFrame(fid)
    fd["Δacc vs real"] = [acc[(d, s)] - acc[(d, "real")] for d, s in zip(fd["dataset"], fd["set"])]
    fig, ax = plt.subplots(figsize=(6, 4))
    x = "domain_fid" if "domain_fid" in fd else "inception_fid"
    sns.scatterplot(fd, x=x, y="Δacc vs real", hue="set", style="dataset", s=80, ax=ax)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(title="Fidelity vs downstream gain (mean over networks and seeds)")
    save_figure(fig, figures["fidelity_vs_downstream"])
    return {"metrics": {"n_downstream_runs": len(runs)}}
