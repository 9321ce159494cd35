"""The report's run records, gathered from every job's metrics, and the paper's tables (markdown and LaTeX) and
summary figures built from those records alone, so a reader rebuilds them from git (stage: mgdm.stages.report)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from mgdm.analysis import paired  # noqa: E402
from mgdm.classifiers.zoo import NETWORKS  # noqa: E402
from mgdm.files import FileError, atomic_path, read_json, read_metrics, read_npz, save_figure, write_json  # noqa: E402

GRADING = ("acc", "balanced_acc", "macro_f1", "auc", "qwk")
FLOOR = "real-heldout"
FIDELITY_COLUMNS = ("fid", "fid ÷ floor", "kid", "precision", "recall", "f_score", "is")
DISTRIBUTION_COLUMNS = ("n", "label_agreement", "mean_entropy", "ks_entropy_stat", "ks_entropy_p", "centre_distance",
                        "density", "coverage", "channel_mean", "channel_std", "colour_error")


def floor_row(fidelity_metrics: dict) -> dict:
    """Return the floor's metrics from a fidelity JSON (`floor_<metric>`), under the sets' column names."""
    return {k.removeprefix("floor_"): v for k, v in fidelity_metrics.items()
            if k.startswith("floor_") and not k.endswith("_std")}


# pdflatex's special characters, and the Unicode signs the tables use
LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
         "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "−": "$-$", "±": "$\\pm$",
         "÷": "$\\div$", "≥": "$\\geq$", "≤": "$\\leq$", "Δ": "$\\Delta$", "×": "$\\times$", "√": "$\\surd$"}


def latex_text(text: str) -> str:
    """Return `text` escaped for LaTeX (pdflatex)."""
    return "".join(LATEX.get(c, c) for c in str(text))


def write_table(df: pd.DataFrame, stem: str | Path, caption: str) -> None:
    """Write `df` as <stem>.md and <stem>.tex (a booktabs table that pdflatex compiles)."""
    # numbers formatted here, and tabulate told not to parse strings: a p value written '1.0e-05' stays that,
    # not '0.000'
    cells = df.map(lambda v: f"{v:.3f}" if isinstance(v, float) else v)
    right = ["right" if pd.api.types.is_numeric_dtype(df[c]) or c.startswith("p") or c.endswith("_p") or c == "mean"
             else "left" for c in df.columns]
    markdown = cells.to_markdown(index=False, disable_numparse=True, colalign=right) if len(df.columns) else ""
    with atomic_path(f"{stem}.md") as tmp:
        tmp.write_text(f"{caption}\n\n{markdown}\n")
    body = df.map(lambda v: latex_text(v) if isinstance(v, str) else v)
    body.columns = [latex_text(c) for c in df.columns]
    with atomic_path(f"{stem}.tex") as tmp:
        tmp.write_text(body.style.hide(axis="index").format(precision=3, na_rep="--")
                       .to_latex(caption=latex_text(caption), hrules=True, position="t",
                                 label=f"tab:{Path(stem).parent.parent.name}-{Path(stem).name}") + "\n")


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


RUN_COLUMNS = ("dataset", "network", "adaptation", "set", "seed", "epochs", *GRADING, "best_epoch", "n_real",
               "n_synthetic", "wall_s", "machine", "test_correct")

RUN_KEY = ("dataset", "network", "set", "seed")  # what makes a run: one row each


@dataclass(frozen=True)
class RunGrid:
    """Which downstream runs a report gathers: datasets (with their image sizes), sets, networks, seeds, epochs."""

    datasets: list[str]
    sets: list[str]
    networks: list[str]
    seeds: list[int]
    image_sizes: dict[str, int]
    epochs: int


def downstream_runs(grid: RunGrid, metrics, predictions=None) -> pd.DataFrame:
    """One record per downstream job (real-only and each synthetic set): its grading metrics, best epoch, wall
    clock, machine, and (with `predictions(stage, **wildcards)`) which test images it got right, as '0'/'1'."""
    rows = []
    for d in grid.datasets:
        for n in grid.networks:
            for s in ["real", *grid.sets]:
                for seed in grid.seeds:
                    stage, extra = downstream_job(s)
                    w = dict(dataset=d, network=n, seed=seed, **extra)
                    m = read_metrics(metrics(stage, **w), "acc", "auc")
                    row = {"dataset": d, "network": n, "adaptation": NETWORKS[n].adaptation(grid.image_sizes[d]),
                           "set": s, "seed": seed, "epochs": grid.epochs, **{k: m.get(k) for k in GRADING},
                           **{k: m.get(k) for k in ("best_epoch", "n_real", "n_synthetic", "wall_s", "machine")}}
                    if predictions is not None:
                        path = predictions(stage, **w)
                        f = read_npz(path)
                        if not {"probs", "labels"} <= set(f):
                            raise FileError(f"{path}: not a test-prediction file (expected 'probs' and 'labels')")
                        row["test_correct"] = "".join("1" if c else "0" for c in f["probs"].argmax(1) == f["labels"])
                    rows.append(row)
    return pd.DataFrame(rows, columns=[c for c in RUN_COLUMNS if predictions is not None or c != "test_correct"])


def read_runs(path: str | Path) -> pd.DataFrame:
    """Read a profile's run records (records/runs.csv), as the tables use them ('train set' for `set`)."""
    try:
        runs = pd.read_csv(path, dtype={"test_correct": str, "machine": str})
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no run records (run `mgdm report` once the runs have finished)") from None
    missing = [c for c in RUN_COLUMNS if c not in runs]
    if missing:
        raise FileError(f"{path}: columns {missing} missing; not mgdm run records")
    twice = runs[runs.duplicated(list(RUN_KEY), keep=False)]
    if len(twice):  # records merged or edited by hand: each pair would be counted twice
        r, n_runs = twice.iloc[0], len(twice.drop_duplicates(list(RUN_KEY)))
        raise FileError(f"{path}: {len(twice)} rows record {n_runs} runs more than once (e.g. {r['network']} on "
                        f"{r['set']}, seed {r['seed']}); one row per run")
    return runs.rename(columns={"set": "train set"})


def image_records(datasets: list[str], sets: list[str], metrics) -> dict:
    """The generator's metrics the tables read (fidelity, distribution, guidance net, wall clocks), as records."""
    fid, dist, guidance, runtime = [], [], [], []
    for d in datasets:
        floors = {}  # FID is biased by n: sets of one size share one floor, sized sets (-x1) have their own
        for s in sets:
            f = read_metrics(metrics("fidelity", dataset=d, set=s), "n_fake")
            fid.append({"dataset": d, "set": s, "n": f.get("n_fake"),
                        **{k: v for k, v in f.items() if k.split("_")[0] in ("domain", "inception")}})
            floors[f.get("n_fake")] = {"dataset": d, "set": FLOOR, "n": f.get("n_fake"), **floor_row(f)}
            runtime.append(timing("fidelity", f))
            runtime.append(timing("sample", read_metrics(metrics("sample", dataset=d, set=s))))
        fid.extend(floors.values())
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
    return {"fidelity": fid, "distribution": dist, "guidance_net": guidance, "runtime": runtime}


@dataclass(frozen=True)
class Report:
    """What `report` needs besides the records: the profile's name, the MGDM stage-2 measure (which one-stage
    set MGDM is compared with), the equivalence margin (points) and alpha."""

    profile: str
    mgdm_measure: str = "entropy"
    margin: float = paired.MARGIN
    alpha: float = paired.ALPHA


def collect(grid: RunGrid, metrics, predictions, records_dir: str | Path, images_only: bool = False) -> None:
    """Gather every job's metrics JSON (at `metrics(stage, **wildcards)`) and test predictions into the
    profile's records: records/images.json and records/runs.csv, from which alone the tables are built."""
    records_dir = Path(records_dir)
    write_json(records_dir / "images.json", image_records(grid.datasets, grid.sets, metrics))
    if images_only:
        return
    with atomic_path(records_dir / "runs.csv") as tmp:
        downstream_runs(grid, metrics, predictions).to_csv(tmp, index=False)


def build(report: Report, records_dir: str | Path, tables_dir: str | Path, figures: dict[str, str | Path] | None,
          images_only: bool = False) -> dict:
    """Write every table (and, given `figures`, the summary figures) from the records alone."""
    records_dir, tables_dir = Path(records_dir), Path(tables_dir)
    try:
        images = read_json(records_dir / "images.json")
    except FileNotFoundError:
        raise FileNotFoundError(f"{records_dir / 'images.json'}: no image records (run `mgdm report` once the "
                                "stages have finished)") from None
    fid, runtime = images["fidelity"], list(images["runtime"])
    image_tables(report.profile, fid, images["distribution"], images["guidance_net"], tables_dir)
    if images_only:
        write_runtime(report.profile, runtime, tables_dir)
        return {"metrics": {"n_downstream_runs": 0}}
    runs = read_runs(records_dir / "runs.csv")
    runtime += [timing("train_baseline" if r["train set"] == "real" else "train_classifier", r)
                for r in runs.to_dict("records")]
    write_runtime(report.profile, runtime, tables_dir)
    sets = [s for s in runs["train set"].unique() if s != "real"]
    networks, seeds = list(runs["network"].unique()), sorted(runs["seed"].unique().tolist())
    preds = {d: {(r["network"], r["train set"], r["seed"]): np.array([c == "1" for c in r["test_correct"]])
                 for r in frame.to_dict("records") if isinstance(r["test_correct"], str)}
             for d, frame in runs.groupby("dataset", sort=False)}
    machines = sorted(set(runs["machine"].dropna()))
    write_table(downstream_table(runs), tables_dir / "downstream",
                f"Downstream grading on the real test split (profile `{report.profile}`; networks trained on real + "
                f"each synthetic set for {format_list(runs['epochs'].unique())} epochs, epoch selected on real "
                f"validation AUC; mean ± std over seeds {seeds}" + (f"; run on {', '.join(machines)}" if machines else "")
                + "). Every number is recomputed from records/runs.csv.")
    graded = [c for c in GRADING if c in runs and runs[c].notna().any()]
    scope = f"profile `{report.profile}`, {len(networks)} networks {networks}, seeds {seeds}"
    inference = (f"Two inferences: `networks` treats the networks as a random sample of architectures (the t interval "
                 f"over per-network mean differences, df = networks − 1: what generalises beyond these networks); "
                 f"`pairs` is about these networks only (t interval over (network, seed) pairs, df = pairs − 1; "
                 f"Wilcoxon and d_z beside it). p: two-sided paired t; p_margin: one-sided t of H0 'gain ≥ "
                 f"{report.margin:g} points'; both Holm-adjusted (p_holm, p_margin_holm) over this table, each "
                 f"inference its own family. Verdict on the adjusted p at alpha {report.alpha:g}: supported / "
                 f"contradicted; else 'gain of at least {report.margin:g} excluded' (the upper one-sided test of "
                 f"Schuirmann's TOST, at alpha one-sided: unadjusted, the upper end of the "
                 f"{100 - 200 * report.alpha:g}% interval is below the margin, so the 95% CI shown may reach a "
                 f"little past it); else undecided, "
                 f"with the reason. With one pair, McNemar's exact test on the test predictions (it ignores training "
                 f"noise).")
    comparisons = paired.comparisons_table(runs, sets, graded, preds, report.margin, report.alpha)
    write_table(paired.format_table(comparisons), tables_dir / "paired",
                f"Paired changes in each grading metric (points; {scope}): each training set against real-only and "
                f"against classifier guidance, one pair per (network, seed) (same initialisation, real-data order "
                f"and test split). {inference}")
    claims = paired.claims_table(runs, sets, report.mgdm_measure, "acc", preds, report.margin, report.alpha)
    write_table(paired.format_table(claims), tables_dir / "claims",
                f"The paper's claims tested on downstream accuracy (points; {scope}); the paper claims a gain of 1-3 "
                f"points. {inference}")
    if figures:
        forest_plot(comparisons, report.margin, figures["downstream"])
        fidelity_plot(fid, runs, figures["fidelity_vs_downstream"])
        quantity_plot(comparisons, runs, figures["quantity"])
    counted = claims[claims["inference"] == "networks"] if "inference" in claims and (
        claims["inference"] == "networks").any() else claims
    verdicts = counted["verdict"].str.split(" (", regex=False).str[0].value_counts() if len(counted) else {}
    return {"metrics": {"n_downstream_runs": len(runs), "claims_inference": str(counted["inference"].iloc[0])
                        if len(counted) else "none",
                        **{f"claims_{k}": int(verdicts.get(v, 0)) for k, v in (
                            ("supported", "supported"), ("contradicted", "contradicted"),
                            ("margin_excluded", f"gain of at least {report.margin:g} excluded"),
                            ("undecided", "undecided"))}}}


def format_list(values) -> str:
    return ", ".join(str(v) for v in sorted(values))


def placeholder_figure(text: str, path: str | Path) -> None:
    """A figure that says why it has nothing to draw (the report's outputs exist whatever the runs hold)."""
    fig, ax = plt.subplots(figsize=(6, 1.5))
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()
    save_figure(fig, path)


def forest_plot(comparisons: pd.DataFrame, margin: float, path: str | Path) -> None:
    """Every paired difference with its 95% interval (networks as a random factor where there are several,
    else pairs), the margin drawn at ±margin: effects of 1-2 points visible, unlike bars from 0."""
    if comparisons.empty:
        return placeholder_figure("no comparisons", path)
    level = "networks" if (comparisons["inference"] == "networks").any() else "pairs"
    df = comparisons[(comparisons["inference"] == level) & comparisons["metric"].isin(["acc", "balanced_acc", "auc"])]
    metrics = list(dict.fromkeys(df["metric"]))
    n_rows = max(len(g) for _, g in df.groupby("metric")) if len(df) else 1
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 0.32 * n_rows + 1.4), sharey=True,
                             squeeze=False)
    for ax, m in zip(axes[0], metrics):
        g = df[df["metric"] == m].iloc[::-1]
        labels = [f"{d}: {s} − {v}" if df["dataset"].nunique() > 1 else f"{s} − {v}"
                  for d, s, v in zip(g["dataset"], g["train set"], g["vs"])]
        y = np.arange(len(g))
        colour = ["tab:green" if v == "supported" else "tab:red" if v == "contradicted" else
                  "tab:blue" if v.startswith("gain") else "grey" for v in g["verdict"]]
        ax.hlines(y, g["ci_low"], g["ci_high"], colors=colour, lw=1.5)
        ax.scatter(g["mean"], y, c=colour, s=18, zorder=3)
        ax.axvline(0, color="black", lw=0.8)
        for x in (-margin, margin):
            ax.axvline(x, color="grey", lw=0.8, ls="--")
        ax.set_yticks(y, labels)
        ax.set(title=m, xlabel="paired change (points)")
    fig.suptitle(f"Paired changes, 95% CI ({level} as the unit); dashed: ±{margin:g}-point margin; "
                 "green supported, red contradicted, blue gain ≥ margin excluded, grey undecided", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def quantity_plot(comparisons: pd.DataFrame, runs: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Dose-response (returns what it drew): each guidance's paired change against real-only (95% interval, the
    forest plot's unit) over the synthetic quantity, as a multiple of the real training split (n_synthetic /
    n_real of its runs; real-only is 0 at 0). One line per guidance and scale, one panel per metric and dataset."""
    level = "networks" if len(comparisons) and (comparisons["inference"] == "networks").any() else "pairs"
    df = comparisons[(comparisons["inference"] == level) & (comparisons["vs"] == "real")
                     & comparisons["metric"].isin(["acc", "balanced_acc", "auc"])] if len(comparisons) else comparisons
    if df.empty:
        placeholder_figure("no comparisons against real-only", path)
        return df
    dose = (runs["n_synthetic"] / runs["n_real"]).groupby([runs["dataset"], runs["train set"]]).mean()
    df = df.assign(quantity=[dose[(d, s)] for d, s in zip(df["dataset"], df["train set"])],
                   guidance=df["train set"].str.replace(r"-x[\d.]+$", "", regex=True))
    panels = list(df.groupby(["dataset", "metric"], sort=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, ((dataset, metric), g) in zip(axes[0], panels):
        lines = list(g.sort_values("quantity").groupby("guidance", sort=False))
        for i, (guidance, line) in enumerate(lines):  # nudged apart, so that the intervals do not overlap
            x = line["quantity"].to_numpy() + 0.012 * g["quantity"].max() * (i - (len(lines) - 1) / 2)
            ax.errorbar(np.r_[0, x], np.r_[0, line["mean"]], capsize=2, marker="o", ms=4, label=guidance,
                        yerr=[np.r_[0, line["mean"] - line["ci_low"]], np.r_[0, line["ci_high"] - line["mean"]]])
        ax.axhline(0, color="black", lw=0.8)
        ax.set(title=f"{dataset}: {metric}" if df["dataset"].nunique() > 1 else metric,
               xlabel="synthetic images ÷ real training images", ylabel="paired change vs real-only (points)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"Downstream change against the synthetic quantity, 95% CI ({level} as the unit)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return df  # what was drawn


def fidelity_plot(fid: list[dict], runs: pd.DataFrame, path: str | Path) -> None:
    acc = runs.groupby(["dataset", "train set"])["acc"].mean()
    fd = pd.DataFrame([r for r in fid if r["set"] != FLOOR and (r["dataset"], r["set"]) in acc.index])
    fig, ax = plt.subplots(figsize=(6, 4))
    if len(fd):
        fd["Δacc vs real"] = [acc[(d, s)] - acc[(d, "real")] for d, s in zip(fd["dataset"], fd["set"])]
        x = "domain_fid" if "domain_fid" in fd else "inception_fid"
        sns.scatterplot(fd, x=x, y="Δacc vs real", hue="set", style="dataset", s=80, ax=ax)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(title="Fidelity vs downstream gain (mean over networks and seeds)")
    save_figure(fig, path)


def image_tables(profile: str, fid: list[dict], dist: list[dict], guidance: list[dict], tables_dir: Path) -> None:
    """Write the fidelity, distribution and guidance-net tables."""
    fd = pd.DataFrame(fid)
    for col in [c for c in fd if c.endswith("_fid")]:
        floors = fd[fd["set"] == FLOOR].set_index(["dataset", "n"])[col]  # the floor at the set's own n
        fd[f"{col} ÷ floor"] = [v / floors[(d, n)] for d, n, v in zip(fd["dataset"], fd["n"], fd[col])]
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

