"""Every committed table is rebuilt from the committed run records alone, and equals what is committed."""

import numpy as np
import pytest
from conftest import ROOT, finished_copy, run

from mgdm.analysis.tables import Report, build, read_runs
from mgdm.config import load

# Profiles whose tables were made before run records were committed: the machines that held their runs are
# gone, so their tables cannot be rebuilt (README, "Run records"). No other profile may join this list.
LEGACY = {"paper-downstream"}

RECORDED = sorted(p.parent.parent.name for p in ROOT.glob("results/*/records/images.json"))


def test_every_reported_profile_has_records_or_is_named_legacy():
    reported = {p.parent.parent.name for p in ROOT.glob("results/*/tables/report.json")}
    assert reported - set(RECORDED) <= LEGACY
    assert not LEGACY & set(RECORDED), "a legacy profile with records: take it off the list"


@pytest.mark.parametrize("profile", RECORDED)
def test_committed_tables_are_rebuilt_from_committed_records(profile, tmp_path):
    p = load(ROOT / "params.yaml", profile).profile
    records = ROOT / "results" / profile / "records"
    downstream = (records / "runs.csv").exists()
    out = tmp_path / profile / "tables"  # the profile's folder name: the LaTeX labels are tab:<profile>-<table>
    out.mkdir(parents=True)
    build(Report(profile, p.sampling.mgdm.measure, p.inference.margin, p.inference.alpha), records, out,
          None, images_only=not downstream)
    written = sorted(out.iterdir())
    assert len(written) >= 8
    for f in written:
        assert f.read_text() == (ROOT / "results" / profile / "tables" / f.name).read_text(), f"{profile}: {f.name}"


@pytest.mark.parametrize("profile", [p for p in RECORDED if (ROOT / "results" / p / "records/runs.csv").exists()])
def test_run_records_agree_with_their_test_predictions(profile):
    runs = read_runs(ROOT / "results" / profile / "records/runs.csv")
    correct = runs["test_correct"].map(lambda s: np.mean([c == "1" for c in s]))
    assert np.allclose(correct, runs["acc"]), "accuracy is the share of test images a run got right"


def test_records_that_hold_a_run_twice_are_refused(tmp_path):
    """Records merged or edited by hand with a run in two rows would count its pairs twice: refused, naming one."""
    import pandas as pd

    from mgdm.files import FileError

    runs = pd.read_csv(ROOT / "results/pilot/records/runs.csv", dtype=str)
    assert len(runs) == 15 and runs["set"].nunique() == 3  # one network, 3 sets x 5 seeds
    pd.concat([runs, runs[runs["seed"] == "0"]]).to_csv(tmp_path / "runs.csv", index=False)
    with pytest.raises(FileError, match=r"runs.csv: 6 rows record 3 runs more than once \(e.g. resnet18 on real, "
                                        r"seed 0\); one row per run"):
        read_runs(tmp_path / "runs.csv")


@pytest.mark.parametrize("records", sorted(ROOT.glob("results/*/records/training_length.json")),
                         ids=lambda p: p.parent.parent.name)
def test_committed_training_length_tables_are_rebuilt_from_their_records(records, tmp_path):
    import pandas as pd

    from mgdm.files import read_json
    from mgdm.tools.training_length import report

    profile = records.parent.parent.name
    p = load(ROOT / "params.yaml", profile).profile
    root = tmp_path / profile  # the profile's folder name: the LaTeX label is tab:<profile>-training_length
    report(pd.DataFrame(read_json(records)), p, p.datasets[0], root)
    for f in ("training_length.md", "training_length.tex"):
        assert (root / "tables" / f).read_text() == (records.parent.parent / "tables" / f).read_text(), f


@pytest.mark.parametrize("power", sorted(ROOT.glob("results/*/tables/power.md")), ids=lambda p: p.parent.parent.name)
def test_committed_power_tables_are_rebuilt_from_the_run_records(power, tmp_path):
    import shutil

    profile = power.parent.parent.name
    shutil.copy(ROOT / "params.yaml", tmp_path)
    shutil.copytree(ROOT / "results" / profile / "records", tmp_path / "results" / profile / "records")
    run(["mgdm", "power", "--profile", profile], tmp_path)  # the defaults the committed tables were made with
    for f in ("power.md", "power.tex"):
        assert (tmp_path / "results" / profile / "tables" / f).read_text() == (power.parent / f).read_text(), f


@pytest.mark.parametrize("table", sorted(ROOT.glob("results/*/tables/set_draws.md")),
                         ids=lambda p: p.parent.parent.name)
def test_committed_set_draw_tables_are_rebuilt_from_the_run_records(table, tmp_path):
    import shutil

    profile = table.parent.parent.name
    shutil.copy(ROOT / "params.yaml", tmp_path)
    shutil.copytree(ROOT / "results" / profile / "records", tmp_path / "results" / profile / "records")
    run(["mgdm", "set-draws", "--profile", profile], tmp_path)
    for f in ("set_draws.md", "set_draws.tex"):
        assert (tmp_path / "results" / profile / "tables" / f).read_text() == (table.parent / f).read_text(), f


CONTROLS = {"priors.npz": ("prior-shift", "prior_shift"), "copies.csv": ("copies-control", "copies_control")}


@pytest.mark.parametrize("record", sorted(p for name in CONTROLS for p in ROOT.glob(f"results/*/records/{name}")),
                         ids=lambda p: f"{p.parent.parent.name}-{p.name}")
def test_committed_control_tables_are_rebuilt_from_their_records(record, tmp_path):
    import shutil

    profile, (command, stem) = record.parent.parent.name, CONTROLS[record.name]
    shutil.copy(ROOT / "params.yaml", tmp_path)
    shutil.copytree(record.parent, tmp_path / "results" / profile / "records")
    if record.suffix == ".csv":  # a trained control's runs: each accuracy is its share of right test images
        runs = read_runs(record)
        assert np.allclose(runs["test_correct"].map(lambda c: np.mean([x == "1" for x in c])), runs["acc"])
    run(["mgdm", command, "--profile", profile, "--from-records"], tmp_path)
    for f in (f"{stem}.md", f"{stem}.tex"):
        rebuilt = (tmp_path / "results" / profile / "tables" / f).read_text()
        assert rebuilt == (record.parent.parent / "tables" / f).read_text(), f"{profile}: {f}"


@pytest.mark.parametrize("table", sorted(ROOT.glob("results/*/tables/against_*.md")),
                         ids=lambda p: f"{p.parent.parent.name}-{p.stem}")
def test_committed_comparisons_are_rebuilt_by_the_command_their_caption_names(table, tmp_path):
    """`mgdm compare-runs A B --out results/<profile>/tables/against_<what>`: A and B, named in the caption,
    are committed (run records, or a committed downstream table)."""
    import re

    a, b = re.search(r"A = (\S+?),? (?:against the cells of )?B = (\S+?)[ ;]", table.read_text()).groups()
    assert (ROOT / a).is_file() and (ROOT / b).is_file(), "a comparison of files that are not committed"
    out = tmp_path / table.parent.parent.name / "tables" / table.stem  # the LaTeX label: tab:<profile>-<stem>
    out.parent.mkdir(parents=True)
    run(["mgdm", "compare-runs", a, b, "--out", str(out)], ROOT, mlflow=False)
    for suffix in (".md", ".tex"):
        assert out.with_suffix(suffix).read_text() == table.with_suffix(suffix).read_text(), suffix


def test_every_committed_zoo_table_has_its_record():
    surveyed = {p.parent.parent.name for p in ROOT.glob("results/*/tables/zoo.md")}
    recorded = {p.parent.parent.name for p in ROOT.glob("results/*/records/zoo.json")}
    assert surveyed == recorded, "a zoo table without its record, or a record without its table"


@pytest.mark.parametrize("records", sorted(ROOT.glob("results/*/records/zoo.json")), ids=lambda p: p.parent.parent.name)
def test_committed_zoo_tables_are_rebuilt_from_their_records(records, tmp_path):
    from mgdm.files import read_json
    from mgdm.tools.zoo_survey import report

    profile = records.parent.parent.name
    root = tmp_path / profile  # the profile's folder name: the LaTeX label is tab:<profile>-zoo
    report(read_json(records), load(ROOT / "params.yaml", profile).profile, root)
    for f in ("zoo.md", "zoo.tex"):
        assert (root / "tables" / f).read_text() == (records.parent.parent / "tables" / f).read_text(), f


@pytest.mark.slow
def test_report_from_records_rewrites_the_same_tables_without_the_jsons(smoke_dag, tmp_path):
    work = finished_copy(smoke_dag, tmp_path)
    tables = work / "results/smoke/tables"
    before = {f.name: f.read_text() for f in tables.iterdir() if f.suffix in (".md", ".tex")}
    runs = read_runs(work / "results/smoke/records/runs.csv")
    assert len(runs) == 7 and set(runs["train set"]) >= {"real", "none", "entropy-s2", "mgdm-s2"}  # real + 6 sets
    for f in tables.iterdir():
        f.unlink()
    for f in (work / "results/smoke/discs").rglob("*.json"):  # every job's metrics JSON gone
        f.unlink()
    run(["mgdm", "report", "--profile", "smoke", "--from-records", "--no-mlflow"], work)
    after = {f.name: f.read_text() for f in tables.iterdir() if f.suffix in (".md", ".tex")}
    assert after == before


def test_legacy_network_level_inference_is_the_t_over_differences_of_committed_means(tmp_path):
    from scipy import stats

    from mgdm.analysis.tables import write_table
    from mgdm.tools.legacy_networks import network_means, table

    means = {"a": (0.50, 0.52), "b": (0.40, 0.43), "c": (0.60, 0.60), "d": (0.55, 0.56)}  # (real, entropy-s2)
    rows = [{"dataset": "d", "network": n, "adaptation": "as-is", "train set": s, "acc": f"{v:.3f} ± 0.010",
             "balanced_acc": f"{v:.3f}", "auc": f"{v:.3f}"} for n, (r, e) in means.items()
            for s, v in (("real", r), ("none", r), ("entropy-s2", e))]
    import pandas as pd

    write_table(pd.DataFrame(rows), tmp_path / "downstream", "caption")
    result = table(network_means(tmp_path / "downstream.md"), "entropy", 1.0, 0.05)
    row = result[(result["family"] == "claims") & (result["comparison"] == "entropy-s2 − real")].iloc[0]
    ref = stats.ttest_1samp([2.0, 3.0, 0.0, 1.0], 0.0)
    assert row["n"] == 4 and row["mean"] == pytest.approx(1.5)
    assert row["ci_low"] == pytest.approx(ref.confidence_interval().low) and row["p"] == pytest.approx(ref.pvalue)


def test_compare_runs_names_the_runs_a_rerun_changed(tmp_path):
    """Known answer: a copy of committed records with one prediction flipped and one run dropped."""
    import pandas as pd

    committed = ROOT / "results/study/records/runs.csv"
    runs = pd.read_csv(committed, dtype={"test_correct": str, "machine": str})
    i = runs.index[(runs["network"] == "densenet121") & (runs["set"] == "none") & (runs["seed"] == 3)][0]
    flipped = runs.at[i, "test_correct"]
    runs.at[i, "test_correct"] = ("1" if flipped[0] == "0" else "0") + flipped[1:]
    runs.at[i, "acc"] += (1 if flipped[0] == "0" else -1) / len(flipped)
    runs = runs.drop(runs.index[(runs["network"] == "convnext_atto") & (runs["seed"] == 7) & (runs["set"] == "real")])
    runs.to_csv(tmp_path / "runs.csv", index=False)

    missing = run(["mgdm", "compare-runs", str(committed), str(tmp_path / "nothing")], ROOT, check=False)
    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == [
        f"mgdm: error: {tmp_path / 'nothing'}: no run records (a records/runs.csv, or the folder holding one)"]
    same = run(["mgdm", "compare-runs", str(committed.parent), str(committed), "--exact"], ROOT)
    assert "280 runs in both; every one identical; 0 of 150 changes" in same.stdout  # 5 networks x 6 sets x 5

    changed = run(["mgdm", "compare-runs", str(committed), str(tmp_path), "--exact", "--out",
                   str(tmp_path / "compare")], ROOT, check=False)
    assert changed.returncode == 1 and "279 runs in both; not all identical" in changed.stdout
    table = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]]
             for r in (tmp_path / "compare.md").read_text().splitlines() if r.startswith("| ")}
    head = table.pop("network")
    row = dict(zip(head, table["densenet121"]))
    assert row["runs in both"] == "56" and row["same predictions"] == "55" and row["max Δ acc"] == "0.250"
    assert row["max Δ auc"] == "0.000" and row["same best epoch"] == "56"
    assert dict(zip(head, table["convnext_atto"]))["only in A"] == "1"
    assert all(dict(zip(head, r))["max Δ acc"] == "0.000" for n, r in table.items() if n != "densenet121")


def test_compare_runs_counts_the_paired_changes_a_rerun_moved(tmp_path):
    """Known answer: one network's `none` runs moved 20 accuracy points on every seed (its seed sd unchanged) is one
    change outside; the same runs on seeds 0-2 only are judged on those seeds."""
    import pandas as pd

    committed = ROOT / "results/study/records/runs.csv"
    runs = pd.read_csv(committed, dtype={"test_correct": str, "machine": str})
    runs.loc[(runs["network"] == "efficientnet_b0") & (runs["set"] == "none"), "acc"] += 0.2
    runs.to_csv(tmp_path / "moved.csv", index=False)
    out = run(["mgdm", "compare-runs", str(committed), str(tmp_path / "moved.csv"), "--out", str(tmp_path / "t")],
              ROOT, mlflow=False).stdout
    assert "1 of 150 changes against real-only outside 2 sd" in out
    rows = [[c.strip() for c in r.split("|")[1:-1]] for r in (tmp_path / "t.md").read_text().splitlines()
            if r.startswith("| ")]
    table = {r[0]: dict(zip(rows[0], r)) for r in rows[1:]}
    assert table["efficientnet_b0"]["outside 2 sd"] == "1" and table["efficientnet_b0"]["changes"] == "30"
    runs[runs["seed"] <= 2].to_csv(tmp_path / "three.csv", index=False)
    out = run(["mgdm", "compare-runs", str(tmp_path / "three.csv"), str(committed)], ROOT, mlflow=False).stdout
    assert "105 runs in both; not all identical; 1 of 150 changes" in out  # 35 a seed


def test_compare_runs_against_a_downstream_table_counts_changes_outside_the_seed_spread(tmp_path):
    """Known answers: a profile's records against its own downstream.md agree to the table's rounding; moving one
    network's `none` runs 20 accuracy points (every seed: the seed sd stays) puts exactly that change outside."""
    import pandas as pd

    committed, cells = ROOT / "results/study/records/runs.csv", ROOT / "results/study/tables/downstream.md"
    same = run(["mgdm", "compare-runs", str(committed), str(cells), "--out", str(tmp_path / "same")], ROOT)
    assert "0 of 90 changes outside 2 sd" in same.stdout
    rows = [[c.strip() for c in r.split("|")[1:-1]] for r in (tmp_path / "same.md").read_text().splitlines()
            if r.startswith("| ")]
    table = [dict(zip(rows[0], r)) for r in rows[1:]]
    assert len(table) == 5 and all(r["seeds in both"] == "8" for r in table)
    assert all(float(r[f"max Δ {m}"]) <= 0.05 for r in table for m in ("acc", "balanced_acc", "auc"))

    runs = pd.read_csv(committed, dtype={"test_correct": str, "machine": str})
    moved = (runs["network"] == "efficientnet_b0") & (runs["set"] == "none")
    runs.loc[moved, "acc"] += 0.2
    runs.to_csv(tmp_path / "runs.csv", index=False)
    out = run(["mgdm", "compare-runs", str(tmp_path / "runs.csv"), str(cells)], ROOT).stdout
    assert "1 of 90 changes outside 2 sd" in out
    row = next(line for line in out.splitlines() if line.startswith("| efficientnet_b0"))
    assert abs(float(row.split("|")[4]) - 20) <= 0.05 and row.rstrip(" |").endswith(" 1")  # the table rounds

    (tmp_path / "bare.md").write_text("No seeds named.\n\n" + cells.read_text().split("\n\n", 1)[1])
    bare = run(["mgdm", "compare-runs", str(committed), str(tmp_path / "bare.md")], ROOT, check=False)
    assert bare.returncode == 2 and bare.stderr.strip() == (
        f"mgdm: error: {tmp_path / 'bare.md'}: its caption names no seeds ('mean ± std over seeds [...]')")


# The README quotes these from tables that later reruns replaced (its "Earlier statements that changed" and the
# like), or derives them from several rows: the only quoted intervals no committed table holds.
README_HISTORY = {
    "-0.02 [-1.22, +1.19]": "architectures with its first ten networks",
    "[-1.19, +0.41]": "study's first run, percentile bootstrap",
    "[-1.49, +0.47]": "study's first run, percentile bootstrap",
    "-2.61 [-4.15, -1.22]": "paper-downstream with its first three networks",
    "-1.08 [-2.24, +0.07]": "paper-downstream-cpu with two networks",
    "+1.42 [-0.10, +2.94]": "study-pneumonia's H200 run",
    "+1.06 [-0.12, +2.24]": "study-pneumonia's H200 run",
    "-0.28 [-1.30, +0.74]": "study-pneumonia's H200 run",
    "+1.23 [-0.79, +3.24]": "study's records with inception_v3 at 2 threads",
    "-0.26 [-1.09, +0.71]": "pneumonia's first (H200) run",
    "[-1.54, +1.72]": "draws: the envelope of four sets' intervals against real-only",
}


def test_every_interval_the_readme_quotes_is_in_a_committed_table():
    """A report rerun that moves a number leaves no stale quote: each `estimate [low, high]` in the README equals
    an estimate and its interval in a committed table row (to the README's decimals), and a p quoted right after
    it is a number of that row; each bare interval is one there, each other Holm p a number there. The few
    historical quotes are named above, and each is still quoted."""
    import re

    def clean(text):  # one minus sign, no emphasis
        return text.replace("−", "-").replace("*", "")

    readme = re.sub(r"\s+", " ", clean((ROOT / "README.md").read_text()))  # one line: quotes break across lines
    lines = clean("\n".join(p.read_text() for p in sorted(ROOT.glob("results/*/tables/*.md")))).splitlines()
    num, pnum = r"[+-]?\d+\.\d+", r"\d*\.\d+(?:e-\d+)?"

    def numbers(text):
        return {float(x) for x in re.findall(rf"(?<![\w.])({pnum})(?![\w.])", text)}

    rows = [(tuple(map(float, t)), numbers(line)) for line in lines
            for t in re.findall(rf"({num}) ?\|? ?\[({num}), ({num})\]", line)]

    def in_a_row(estimate, low, high, p_value=None):
        decimals = [len(s.split(".")[1]) for s in (estimate, low, high)]
        want = (float(estimate), float(low), float(high))
        return any(all(round(t, d) == w for t, d, w in zip(row, decimals, want))
                   and (p_value is None or float(p_value) in ps) for row, ps in rows)

    stale = [m[0] for m in re.finditer(rf"({num}) \[({num}), ({num})\](?:[,;]?(?: one-sided)?(?: Holm)?"
                                       rf"(?: one-sided)? p ({pnum}))?", readme)
             if m[0].split("]")[0] + "]" not in README_HISTORY and not in_a_row(*m.groups())]
    intervals = {row[1:] for row, _ in rows}
    stale += [m[0] for m in re.finditer(rf"(?<!\d )\[({num}), ({num})\]", readme)
              if m[0] not in README_HISTORY and (float(m[1]), float(m[2])) not in intervals]
    holm = re.findall(rf"Holm(?: one-sided)? p ({pnum})|Holm (\.\d+)", readme)
    in_tables = numbers("\n".join(lines))
    stale += [f"Holm p {a or b}" for a, b in holm if float(a or b) not in in_tables]
    assert len(holm) >= 20 and not stale, f"README quotes numbers no committed table holds: {stale}"
    assert all(q in readme for q in README_HISTORY), "a historical quote left the README: take it off the list"
