"""DVC as users use it: the committed dvc.lock tells a fresh clone that the committed tables are current,
and a remote restores data and checkpoints bit for bit in another clone."""

import hashlib
import shutil
import subprocess

import pytest
import yaml
from conftest import ROOT, finished_copy, run


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
    found = changes(dvc_status(clone))
    # the clone lacks only what git does not hold (data, checkpoints, sets: `dvc pull` brings them);
    # every committed table and figure, every source file and setting matches what dvc.lock recorded
    absent = {"deleted", "not in cache"}  # DVC's words for a file the clone lacks
    assert found and set(found.values()) <= absent, {k: v for k, v in found.items() if v not in absent}
    tables = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]["report"]["outs"]
    assert all(o["path"] not in found for o in tables) and len(tables) > 10
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
