"""DVC as users use it: the committed dvc.lock tells a fresh clone that the committed tables are current,
and a remote restores data and checkpoints bit for bit in another clone."""

import hashlib
import re
import shutil
import subprocess

import pytest
import yaml
from conftest import ROOT, finished_copy, mlflow_runs, run, stage_of


def dvc_status(workdir) -> dict:
    return yaml.safe_load(run(["dvc", "status", "--json"], workdir).stdout or "{}")


def git(*args, cwd):
    run(["git", "-c", "user.name=mgdm", "-c", "user.email=mgdm@localhost", *args], cwd)


def changes(status: dict) -> dict[str, str]:
    """{path: what changed} over every stage of `dvc status --json`."""
    out = {}
    for entries in status.values():
        for entry in entries:
            if isinstance(entry, dict):
                for kind in ("changed deps", "changed outs"):
                    out.update(entry.get(kind, {}))
            else:
                out[str(entry)] = "stage changed"
    return out


@pytest.mark.skipif(not (ROOT / ".git").exists() or not (ROOT / "dvc.lock").exists(),
                    reason="needs the project's git checkout with its dvc.lock")
def test_a_fresh_clone_finds_the_committed_tables_current_with_the_code_and_params(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    # every stage's code, settings and committed files (records, tables, figures) match dvc.lock
    found = changes(dvc_status(clone))
    # the clone lacks only what git does not hold (data, checkpoints, sets: `dvc pull` brings them)
    absent = {"deleted", "not in cache"}  # DVC's words for a file the clone lacks
    assert found and set(found.values()) <= absent, {k: v for k, v in found.items() if v not in absent}
    outs = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]["analyze@retinamnist"]["outs"]
    figures = [o["path"] for o in outs if o["path"].endswith(".png")]  # committed: present and current
    assert len(figures) == 3 and not set(figures) & set(found), found
    (clone / "src/mgdm/sampling/ddim.py").write_text((clone / "src/mgdm/sampling/ddim.py").read_text() + "# edit\n")
    assert changes(dvc_status(clone)).get("src/mgdm/sampling/ddim.py") == "modified"


def test_a_local_remote_restores_data_and_checkpoints_bit_for_bit(smoke_dag, tmp_path):
    work = finished_copy(smoke_dag, tmp_path / "work")
    remote = tmp_path / "remote"
    git("init", "-q", cwd=work)
    run(["dvc", "init", "-q"], work)
    run(["mgdm", "dvc-yaml", "--profile", "smoke"], work)
    run(["dvc", "commit", "-f", "-q"], work)  # the finished smoke run into dvc.lock and the cache
    run(["dvc", "remote", "add", "-d", "local", str(remote)], work)
    run(["dvc", "push", "-q"], work)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "smoke run", cwd=work)
    lock = yaml.safe_load((work / "dvc.lock").read_text())["stages"]
    cached = [o["path"] for s in lock.values() for o in s.get("outs", []) if (work / o["path"]).is_file()]
    assert any(p.endswith("model.safetensors") for p in cached) and any(p.endswith(".npz") for p in cached)

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(work), str(clone)], check=True)
    assert not (clone / cached[0]).exists()
    run(["dvc", "pull", "-q"], clone)
    for p in cached:
        assert hashlib.sha256((clone / p).read_bytes()).digest() == hashlib.sha256((work / p).read_bytes()).digest(), p
    assert dvc_status(clone) == {}
    shutil.rmtree(remote)


def test_experiments_on_a_scale_or_the_seeds_run_only_their_jobs_and_compare(smoke_dag, tmp_path):
    """`dvc exp run -S` on one guidance's scale list: DVC's templating makes the new set's stages, only they
    and the gathering stages run (each logging its MLflow run), the workspace is then current, and `dvc exp show`
    / `dvc plots diff` put the variant beside the baseline."""
    import json

    work = finished_copy(smoke_dag, tmp_path / "work")
    git("init", "-q", cwd=work)
    run(["dvc", "init", "-q"], work)
    run(["mgdm", "dvc-yaml", "--profile", "smoke"], work)
    run(["dvc", "commit", "-f", "-q"], work)  # the finished smoke run is the baseline
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "baseline", cwd=work)

    def experiment(name, setting):
        res = run(["dvc", "exp", "run", "-n", name, "-S", setting], work)
        return {line.split("'")[1].split("@")[0] for line in res.stdout.splitlines() if line.startswith("Running stage")}

    before = len(mlflow_runs(work))
    ran = experiment("entropy-1", "defaults.sampling.scales.entropy=[1.0]")
    assert ran == {"sample_entropy", "fidelity_entropy", "train_classifier_entropy", "analyze", "report"}, ran
    assert (work / "results/smoke/discs/samples/entropy-s1.0.npz").exists()
    fidelity = (work / "results/smoke/tables/fidelity.md").read_text()
    assert "| entropy-s1.0 " in fidelity and "| entropy-s2 " not in fidelity
    assert len(mlflow_runs(work)) == before + 5  # one MLflow run a stage; DVC has no hooks, so no parent run
    assert "up to date" in run(["dvc", "status"], work).stdout
    plots = run(["dvc", "plots", "show", "--json"], work).stdout
    for name in ("discs_samples.png", "entropy-s1.0.png", "downstream.png", "preview.png"):
        assert name in plots, f"{name} is not among dvc's plots"

    shown = json.loads(run(["dvc", "exp", "show", "--json"], work).stdout)
    exps = [e for rev in shown for e in (rev.get("experiments") or []) if e.get("name") == "entropy-1"]
    assert exps, "the experiment is not in dvc exp show"
    params = exps[0]["revs"][0]["data"]["params"]["params.yaml"]["data"]
    assert params["defaults"]["sampling"]["scales"]["entropy"] == [1.0]
    diff = json.loads(run(["dvc", "plots", "diff", "HEAD", "entropy-1", "--json"], work).stdout)["data"]
    for name in ("figures/downstream.png", "samples/entropy-s1.0.png"):  # a table figure, the new set's grid
        revisions = {r for k, images in diff.items() if k.endswith(name) for i in images for r in i["revisions"]}
        assert "entropy-1" in revisions, (name, revisions)
    assert {"HEAD", "entropy-1"} <= {r for k, images in diff.items() if k.endswith("figures/downstream.png")
                                     for i in images for r in i["revisions"]}

    # networks and seeds are read from params.yaml too: more seeds plan only the downstream jobs they add (a dry
    # run: running them would take 11 serial jobs and test nothing that the first experiment has not)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["defaults"]["downstream"]["seeds"] = [0, 1]
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    res = run(["dvc", "repro", "--dry"], work)
    ran = {line.split("'")[1] for line in res.stdout.splitlines() if line.startswith("Running stage")}
    # (a dry run lists the stages whose own deps changed; the report follows them when they run)
    assert {stage_of(n) for n in ran} - {"report"} == {"train_baseline", "train_classifier"}, ran
    # seed 1's jobs only: train_classifier_<guidance>@<dataset>-<network>-<seed>[-<scale>]
    assert all(re.search(r"@discs-convnext_atto-1(-|$)", n) for n in ran if n.startswith("train_")), ran
