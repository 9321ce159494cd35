"""Every stage's every input, broken: refused in one line that names the file, exit 2, nothing left behind.

The inputs come from the stage table (each stage's deps, one job per stage), taken from a finished
smoke DAG and broken one at a time, two ways: unreadable (a JSON that does not parse, an .npz that is
not a zip, a safetensors checkpoint cut short) and foreign (well-formed files holding something else).
The bad data files themselves (MedMNIST keys, md5, labels, image folders) and foreign or pickled
checkpoints are tested in test_data.py.
"""

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, finished_copy, run

from mgdm.config import load
from mgdm.pipeline import STAGES, Plan, fields

pytestmark = pytest.mark.slow

PLAN = Plan(load(ROOT / "params.yaml", "smoke"))


def one_job(stage: str) -> dict:
    """Wildcards of one job of the stage (a guided set, so that the guidance net is read)."""
    values = {**PLAN.owner(stage).values, "set": ["entropy-s2"]}
    return {k: values[k][0] for k in STAGES[stage].matrix}


def inputs(stage: str) -> list[str]:
    """One file per dep pattern of the stage's job (a gathering stage's first file of each pattern)."""
    job = one_job(stage)
    files = []
    for pattern in STAGES[stage].deps:
        expanded = PLAN.owner(stage).expand(pattern, tuple(job))
        files.append(expanded[0].format(**job))
    return files


CASES = [(stage, path) for stage in STAGES for path in inputs(stage)]


def command(stage: str) -> list[str]:
    args = [a for k, v in one_job(stage).items() for a in (f"--{k}", str(v))]
    return ["mgdm", stage.replace("_", "-"), "--profile", "smoke", *args, "--no-mlflow", "--no-progress"]


def outputs(stage: str) -> list[str]:
    return [p.format(**one_job(stage)) for p in PLAN.outputs(stage)]


def break_file(path: Path, how: str) -> None:
    """`unreadable`: cut short or not of its format; `foreign`: well-formed, but not what the stage wrote."""
    if how == "unreadable":
        if path.suffix == ".json":
            path.write_text("{not json")
        elif path.suffix == ".safetensors":
            path.write_bytes(path.read_bytes()[:200])
        else:
            path.write_bytes(b"not a zip")
    elif path.suffix == ".json":
        path.write_text('{"unrelated": 1}')
    elif path.suffix == ".safetensors":
        from safetensors.numpy import save_file

        save_file({"unrelated": np.zeros(3, np.float32)}, str(path))
    else:
        np.savez(path.with_suffix(""), unrelated=np.zeros(3))  # np.savez adds .npz


def assert_refused(res, stage: str, needle: str, workdir: Path):
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, f"exit {res.returncode}:\n{res.stderr[-2000:]}"
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    assert lines and lines[-1].startswith(f"mgdm {stage}: error: ") and needle in lines[-1], lines[-1:]
    left = [p for p in outputs(stage) if (workdir / p).exists()]
    assert not left, f"outputs left behind: {left}"


def test_every_stage_has_its_inputs_in_the_matrix():
    assert {s for s, _ in CASES} == {s for s in STAGES if STAGES[s].deps}
    assert all(not fields(path) for _, path in CASES)


@pytest.mark.parametrize("how", ["unreadable", "foreign"])
@pytest.mark.parametrize("stage, path", CASES, ids=[f"{s}:{Path(p).name}" for s, p in CASES])
def test_a_broken_input_is_refused_naming_it(smoke_dag, tmp_path, stage, path, how):
    workdir = finished_copy(smoke_dag, tmp_path / "w")
    break_file(workdir / path, how)
    assert_refused(run(command(stage), workdir, check=False), stage, path, workdir)


@pytest.mark.parametrize("stage", ["sample", "train_classifier", "report"])
def test_an_unwritable_results_folder_is_refused_before_work_starts(smoke_dag, tmp_path, stage):
    workdir = finished_copy(smoke_dag, tmp_path / "w")
    folder = workdir / Path(outputs(stage)[0]).parent
    shutil.rmtree(folder)
    folder.write_text("a file where the results folder should be")  # unwritable even for root
    assert_refused(run(command(stage), workdir, check=False), stage, "results folder not writable", workdir)
