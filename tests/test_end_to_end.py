"""The whole DAG on the smoke profile under Snakemake: real stages, tables at the end (DVC on the finished DAG:
tests/test_dvc.py)."""

import pytest

from conftest import mlflow_runs, run
from mgdm.config import load
from mgdm.workflow.stages import STAGES, TABLES
from mgdm.workflow.plan import Plan

pytestmark = pytest.mark.slow


def check_outputs(root):
    tables = root / "results" / "smoke" / "tables"
    for t in TABLES:
        rows = [line for line in (tables / f"{t}.md").read_text().splitlines() if line.startswith("| ")]
        assert len(rows) >= 2, f"{t}.md has no rows under its header"
        tex = (tables / f"{t}.tex").read_text()
        assert "\\begin{table}" in tex and tex.count("\\\\") >= len(rows) - 1, f"{t}.tex lacks rows"
    downstream = (tables / "downstream.md").read_text()
    for name in ("real", "none", "entropy-s2", "mgdm-s2", "cfg-s1", "classifier-s2", "bald-s2"):
        assert f"| {name} " in downstream
    figures = root / "results" / "smoke" / "figures"
    for f in ("downstream", "fidelity_vs_downstream", "discs_entropy", "discs_embedding", "discs_samples"):
        assert (figures / f"{f}.png").stat().st_size > 5000


def smoke_jobs(root):
    """How many jobs the smoke DAG has: one metrics JSON each."""
    plan = Plan(load(root / "params.yaml", "smoke"))
    return sum(len(plan.expand(STAGES[s].metrics)) for s in plan.stages)


def test_snakemake_runs_the_smoke_dag(smoke_dag):
    tmp_workflow, output = smoke_dag
    assert "total: about" in output, "the plan's estimate is printed before running"
    check_outputs(tmp_workflow)
    everything = mlflow_runs(tmp_workflow)
    parent = everything[everything["tags.pipeline"] == "snakemake"]
    runs = everything[everything["tags.stage"].notna()]
    assert len(parent) == 1 and parent["status"].iloc[0] == "FINISHED", "one parent run per invocation"
    assert (runs["tags.mlflow.parentRunId"] == parent["run_id"].iloc[0]).all(), "every job nests under it"
    assert len(runs) == smoke_jobs(tmp_workflow) and set(runs["tags.stage"]) >= {"train_ddpm", "sample", "fidelity", "report"}
    ddpm = runs[runs["tags.stage"] == "train_ddpm"].iloc[0]  # a run lasts as long as its job, not 0.1 s
    assert (ddpm["end_time"] - ddpm["start_time"]).total_seconds() >= 0.9 * ddpm["metrics.wall_s"] > 1
    import mlflow

    job = runs[runs["tags.stage"] == "train_classifier"].iloc[0]
    inputs = mlflow.get_run(job["run_id"]).inputs.dataset_inputs
    assert {(i.dataset.name, i.tags[0].value) for i in inputs} == {("discs-train", "training"),
                                                                   (f"discs-{job['tags.set']}", "synthetic")}
    sample_runs = runs[runs["tags.stage"] == "sample"]
    assert set(sample_runs["tags.guidance"]) == {"none", "classifier", "cfg", "entropy", "bald", "mgdm"}
    assert sample_runs["tags.git_commit"].notna().all() and (runs["tags.profile"] == "smoke").all()
    assert (tmp_workflow / "results/smoke/benchmarks/train_ddpm/discs.tsv").exists()
    again = run(["snakemake", "--cores", "2", "--config", "profile=smoke", "-n"], tmp_workflow)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_snakemake_report_shows_the_figures_and_tables_captioned(smoke_dag, tmp_path):
    workdir = smoke_dag[0]
    run(["snakemake", "--config", "profile=smoke", "--report", str(tmp_path / "report.html")], workdir)
    html = (tmp_path / "report.html").read_text()
    for name in ("discs_samples.png", "entropy-s2.png", "claims.md", "paired.md", "downstream.png"):
        assert name in html, f"{name} is not in the report"
    assert "real-vs-real floor" in html and "Synthetic sets" in html, "captions and categories"
