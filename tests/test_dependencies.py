"""Code and settings are dependencies: an edit plans exactly the stages that read it, and what follows.

The smoke DAG is finished on paper once (every output written empty, then `snakemake --touch` puts
their times in DAG order); each test copies it (`dvc commit` records it in dvc.lock), edits one source
file or one setting, and asks the workflow manager what it would rerun.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run, stage_of, workflow_copy

from mgdm.config import load
from mgdm.workflow.stages import STAGES
from mgdm.workflow.plan import Plan
from mgdm.workflow.sources import stage_sources

DOWNSTREAM = {"train_classifier", "fidelity", "analyze", "report"}  # what follows `sample` in the smoke DAG


@pytest.fixture(scope="module")
def on_paper(tmp_path_factory):
    """The smoke DAG finished on paper once for this module; each test edits a copy (mtimes kept)."""
    workdir = workflow_copy(tmp_path_factory.mktemp("on_paper"))
    for target in Plan(load(workdir / "params.yaml", "smoke")).targets():
        path = workdir / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    run(["snakemake", "--config", "profile=smoke", "--touch", "--cores", "1"], workdir)
    assert snakemake_plan(workdir) == set()
    return workdir


@pytest.fixture
def finished(on_paper, tmp_path):
    return Path(shutil.copytree(on_paper, tmp_path / "w", symlinks=True))


def snakemake_plan(workdir) -> set[str]:
    res = run(["snakemake", "--config", "profile=smoke", "-n"], workdir)
    table = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal", res.stdout, re.S)
    return {line.split()[0] for line in table.group(1).splitlines()} - {"all"} if table else set()


def dvc_changed(workdir) -> set[str]:
    """The stage-table stages with a changed DVC stage (`sample_entropy@discs-2` is `sample`)."""
    res = run(["dvc", "status", "--json"], workdir)
    return {stage_of(name) for name in yaml.safe_load(res.stdout or "{}")}


def edit(path, old=None, new=None):
    text = path.read_text()
    path.write_text(text.replace(old, new) if old else text + "\n# an edit\n")
    assert path.read_text() != text, f"{path}: {old!r} not found"


def test_each_stage_depends_on_the_modules_it_imports_and_not_on_the_glue():
    sources = stage_sources(str(ROOT / "src"))
    assert set(sources) == set(STAGES)
    short = {s: {p.split("src/mgdm/")[1] for p in files} for s, files in sources.items()}
    assert "sampling/ddim.py" in short["sample"] and "sampling/ddim.py" in short["train_ddpm"]  # its probe samples
    assert "analysis/tables.py" in short["report"] and "analysis/tables.py" not in short["analyze"]
    assert "classifiers/train.py" in short["train_baseline"] and "diffusion/train.py" not in short["train_baseline"]
    assert "data/splits.py" in short["preprocess"]
    for stage, files in short.items():  # each stage's own module (its handler and run) is its code
        assert f"stages/{stage}.py" in files, stage
        assert not {"cli.py", "config.py"} & files and not any(f.startswith("workflow/") for f in files), stage


@pytest.mark.parametrize("source, stages", [
    ("src/mgdm/analysis/tables.py", {"report"}),
    ("src/mgdm/metrics/fidelity.py", {"fidelity", "report"}),
    ("src/mgdm/sampling/ddim.py", {"train_ddpm", "sample"} | DOWNSTREAM),
    ("src/mgdm/stages/fidelity.py", {"fidelity", "report"}),  # a stage's handler is its code
    ("src/mgdm/cli.py", set()),  # glue: parses, finds files and logs, computes nothing
    ("src/mgdm/workflow/runner.py", set()),
])
def test_editing_a_source_file_plans_its_stages_and_what_follows_in_snakemake(finished, source, stages):
    workdir = finished
    edit(workdir / source)
    assert snakemake_plan(workdir) == stages


@pytest.mark.parametrize("edit_params, new_set", [
    (lambda smoke: smoke["sampling"].update(sized_sets=["entropy-s2-x1"]), "entropy-s2-x1"),  # a quantity
    (lambda smoke: smoke["sampling"]["scales"].update(entropy=[2, 5]), "entropy-s5"),  # a scale
], ids=["quantity", "scale"])
def test_a_new_quantity_or_scale_plans_only_its_own_jobs(finished, edit_params, new_set):
    workdir = finished
    raw = yaml.safe_load((workdir / "params.yaml").read_text())
    edit_params(raw["profiles"]["smoke"])
    (workdir / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    res = run(["snakemake", "--config", "profile=smoke", "-n", "--quiet", "rules"], workdir)
    jobs = re.findall(r"^(\w+)\s+(\d+)$", res.stdout, re.M)
    # the new set's sampling, fidelity and one downstream run (smoke: one network, one seed), and what gathers sets
    assert {rule: int(n) for rule, n in jobs if rule not in ("all", "total")} == {
        "sample": 1, "fidelity": 1, "train_classifier": 1, "analyze": 1, "report": 1}
    assert f"samples/{new_set}.npz" in run(["snakemake", "--config", "profile=smoke", "-n"], workdir).stdout


def test_dvc_tracks_code_and_the_narrow_settings_each_stage_reads(finished):
    workdir = finished
    run(["dvc", "init", "--no-scm", "-q"], workdir)
    run(["mgdm", "dvc-yaml", "--profile", "smoke"], workdir)
    run(["dvc", "commit", "-f", "-q"], workdir)
    assert dvc_changed(workdir) == set()
    params = workdir / "params.yaml"
    steps = [  # (edit, stages whose own deps or params changed)
        (lambda: edit(workdir / "src/mgdm/stages/report.py"), {"report"}),  # the stage's handler
        (lambda: edit(workdir / "src/mgdm/analysis/tables.py"), {"report"}),
        (lambda: edit(workdir / "src/mgdm/sampling/ddim.py"), {"report", "train_ddpm", "sample"}),
        (lambda: edit(workdir / "src/mgdm/cli.py"), {"report", "train_ddpm", "sample"}),
        (lambda: edit(params, "    lr: 0.0005\n", "    lr: 0.0004\n"), {"report", "train_ddpm", "sample"}),
        (lambda: edit(params, "    schedule: linear\n", "    schedule: cosine\n"),
         {"report", "train_ddpm", "sample", "train_guidance_net"}),
        (lambda: edit(params, "    n_train: 240\n", "    n_train: 200\n"),
         {"report", "train_ddpm", "sample", "train_guidance_net", "preprocess"}),
    ]
    for change, expected in steps:
        change()
        assert dvc_changed(workdir) == expected


def test_snakemake_settings_are_the_narrow_ones_each_stage_reads():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())

    def settings(stage, **edits):
        params = yaml.safe_load(yaml.safe_dump(raw))
        for dotted, value in edits.items():
            *path, key = dotted.split(".")
            node = params
            for k in path:
                node = node[k]
            node[key] = value
        from mgdm.config import resolve

        return Plan(resolve(params, "smoke")).settings(stage, dataset="discs")

    assert settings("train_guidance_net") == settings("train_guidance_net", **{"defaults.ddpm.lr": 0.1})
    assert settings("train_guidance_net") != settings("train_guidance_net", **{"defaults.ddpm.schedule": "cosine"})
    assert settings("train_guidance_net") != settings("train_guidance_net", **{"defaults.guidance_net.seed": 3})
    assert settings("preprocess") != settings("preprocess", **{"datasets.discs.image_size": 20})
    assert settings("train_ddpm") != settings("train_ddpm", **{"defaults.ddpm.seed": 3})
    assert settings("analyze") != settings("analyze", **{"defaults.analysis.seed": 3})


def test_a_fresh_checkout_without_src_still_plans(tmp_workflow):
    import shutil

    shutil.rmtree(tmp_workflow / "src")  # the package installed from an index: nothing to track
    res = subprocess.run(["snakemake", "--config", "profile=smoke", "-n"], cwd=tmp_workflow, capture_output=True,
                         text=True, env=__import__("conftest").mgdm_env())
    assert res.returncode == 0, res.stderr[-2000:]
