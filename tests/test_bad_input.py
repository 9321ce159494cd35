"""Every stage's every input, broken: refused in one line that names the file, exit 2, nothing left behind.

The inputs come from the stage table (each stage's deps, one job per stage), taken from a finished
smoke DAG and broken one at a time, two ways: unreadable (a JSON that does not parse, an .npz that is
not a zip, a safetensors checkpoint cut short) and foreign (well-formed files holding something else).
The bad data files themselves (MedMNIST keys, md5, labels, image folders) and foreign or pickled
checkpoints are tested in test_data.py.
"""

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, finished_copy, run

from mgdm.cli import TOOLS
from mgdm.config import load
from mgdm.workflow.stages import STAGES
from mgdm.workflow.plan import Plan

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


@pytest.fixture(scope="module")
def finished(smoke_dag, tmp_path_factory):
    """One finished copy shared by the in-process cases; each case puts back what it broke or removed."""
    return finished_copy(smoke_dag, tmp_path_factory.mktemp("bad_input"))


@pytest.mark.parametrize("how", ["unreadable", "foreign"])
@pytest.mark.parametrize("stage, path", CASES, ids=[f"{s}:{Path(p).name}" for s, p in CASES])
def test_a_broken_input_is_refused_naming_it(finished, monkeypatch, capsys, stage, path, how):
    """In-process through `cli.main`, as `mgdm jobs` runs stages (the subprocess path is the test below)."""
    from mgdm.cli import main

    monkeypatch.chdir(finished)
    kept = {p: (finished / p).read_bytes() for p in [path, *outputs(stage)] if (finished / p).exists()}
    try:
        break_file(finished / path, how)
        rc = main(command(stage)[1:])
        err = capsys.readouterr().err
        assert_refused(type("Res", (), {"returncode": rc, "stderr": err}), stage, path, finished)
    finally:
        for p in outputs(stage) + [path]:
            (finished / p).unlink(missing_ok=True)
        for p, data in kept.items():
            (finished / p).write_bytes(data)


@pytest.mark.parametrize("stage, path", CASES[:1] + [c for c in CASES if c[0] == "report"][:1])
def test_a_broken_input_is_refused_by_the_command_line_too(smoke_dag, tmp_path, stage, path):
    workdir = finished_copy(smoke_dag, tmp_path / "w")
    break_file(workdir / path, "unreadable")
    assert_refused(run(command(stage), workdir, check=False), stage, path, workdir)


@pytest.mark.parametrize("stage", ["sample", "train_classifier", "report"])
def test_an_unwritable_results_folder_is_refused_before_work_starts(smoke_dag, tmp_path, stage):
    workdir = finished_copy(smoke_dag, tmp_path / "w")
    folder = workdir / Path(outputs(stage)[0]).parent
    shutil.rmtree(folder)
    folder.write_text("a file where the results folder should be")  # unwritable even for root
    assert_refused(run(command(stage), workdir, check=False), stage, "results folder not writable", workdir)


@pytest.mark.parametrize("args, needle", [(["train-ddpm", "--dataset", "discs"], "processed dataset not found"),
                                           (["report", "--from-records"], "no image records")])
def test_a_stage_refused_in_a_fresh_folder_leaves_no_empty_results_tree(tmp_path, monkeypatch, capsys, args, needle):
    """The folders made for a job's outputs are taken back with the outputs: nothing at all is left."""
    from mgdm.cli import main

    monkeypatch.chdir(tmp_path)
    rc = main([*args, "--params", str(ROOT / "params.yaml"), "--profile", "smoke", "--no-mlflow", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err, err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("tool, missing", [("survey-zoo", "dataset.npz"), ("training-length", "dataset.npz"),
                                           ("calibrate-scales", "model.safetensors")])
def test_a_tool_without_its_inputs_is_refused_in_one_line(tmp_path, monkeypatch, capsys, tool, missing):
    """The commands outside the DAG read what the DAG made (the preprocessed dataset, the DDPM): where it is
    missing they name the file and how to make it in one line (not a traceback), and write nothing."""
    from mgdm.cli import main

    monkeypatch.chdir(tmp_path)
    rc = main([tool, "--params", str(ROOT / "params.yaml"), "--profile", "smoke", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("mgdm: error: ") and missing in err, err
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("tool", TOOLS)
def test_a_tool_given_a_dataset_outside_its_profile_is_refused_before_it_imports_torch(tmp_path, tool):
    """`--dataset` names one of the profile's datasets: another one is refused in one line naming it (until now
    `mgdm power` wrote a table of nothing over the profile's committed one), and the check comes before the tool's
    module is imported, so a typo costs a fraction of a second, not the 5-20 s of importing torch and the rest."""
    probe = ("import sys; from mgdm.cli import main; rc = main(sys.argv[1:]); "
             "print('torch imported' if 'torch' in sys.modules else 'torch not imported'); sys.exit(rc)")
    res = run([sys.executable, "-c", probe, tool, "--params", str(ROOT / "params.yaml"), "--profile", "smoke",
               "--dataset", "nope"], tmp_path, check=False)
    err = res.stderr.strip()
    assert res.returncode == 2 and len(err.splitlines()) == 1, err
    assert err == ("mgdm: error: " + str(ROOT / "params.yaml") + " (profile 'smoke'): dataset 'nope' is not in this "
                   "profile's datasets (discs)"), err
    assert res.stdout.strip() == "torch not imported"
    assert not any(tmp_path.rglob("*"))


@pytest.mark.parametrize("args, said", [
    (["power", "--parallel", "0"], "argument --parallel: 0 must be >= 1"),  # was a ZeroDivisionError traceback
    (["power", "--budget-min", "-5"], "argument --budget-min: -5 must be > 0"),  # was a table that nothing fits
    (["power", "--sets", "x"], "argument --sets: 'x' is not an integer"),
    (["benchmark", "--threads", "-3"], "argument --threads: -3 must be >= 0"),  # was torch's RuntimeError
    (["plan", "--cores", "0"], "argument --cores: 0 must be >= 1"),  # was a wall clock on 0 cores
    (["jobs", "--workers", "0"], "argument --workers: 0 must be >= 1"),
    (["jobs", "--deadline-min", "nan"], "argument --deadline-min: nan must be >= 0"),  # (0 starts no job)
    (["survey-zoo", "--network", "nope"], "argument --network: invalid choice: 'nope'"),  # was a KeyError traceback
    (["training-length", "--network", "resnet18", "--network", "nope"], "argument --network: invalid choice: 'nope'"),
    (["smk", "--profile", "nope"], "unrecognized arguments: --profile nope"),  # was accepted and ignored
    (["report", "--seeds", "0", "--from-records"], "--seeds chooses the runs to gather or train; --from-records"),
    (["copies-control", "--networks", "resnet18", "--seeds", "0", "--from-records"],
     "--seeds and --networks choose the runs"),  # both were ignored without a word
])
def test_a_meaningless_option_is_refused_by_the_parser(tmp_path, monkeypatch, capsys, args, said):
    from mgdm.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main([*args, "--params", str(ROOT / "params.yaml"), "--profile", "smoke"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert stop.value.code == 2 and err.startswith("mgdm") and said in err, err
    assert not any(tmp_path.rglob("*"))


def test_a_bounded_option_parses_its_value():
    from mgdm.cli import COUNT, THREADS, bounded

    minutes = bounded(float, 0, strict=True)
    assert (COUNT("3"), THREADS("0"), minutes("2.5"), minutes("1e-3"), bounded(float, 0)("0")) == (3, 0, 2.5, 1e-3, 0)
    assert isinstance(COUNT("3"), int) and isinstance(minutes("2"), float)


def test_legacy_networks_refuses_one_network_and_compare_runs_a_file_that_is_not_a_downstream_table(
        tmp_path, monkeypatch, capsys):
    """Network-level inference from one network's means was a table of no comparisons written over the profile's
    tables; a file that is not a downstream table was a pandas ValueError traceback."""
    from mgdm.cli import main

    monkeypatch.chdir(tmp_path)
    table = tmp_path / "results/smoke/tables/downstream.md"
    table.parent.mkdir(parents=True)
    shutil.copy(ROOT / "results/cpu/tables/downstream.md", table)  # one network: resnet18
    assert main(["legacy-networks", "--params", str(ROOT / "params.yaml"), "--profile", "smoke"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("mgdm: error: results/smoke/tables/downstream.md: 1 network (resnet18); network-level inference "
                   "needs two or more"), err
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [table]
    assert main(["compare-runs", str(ROOT / "results/study/records"), str(ROOT / "README.md")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "README.md: not a downstream table" in err, err


@pytest.mark.parametrize("args", [["train-reference-net", "--dataset", "discs"], ["benchmark"], ["jobs"]])
@pytest.mark.parametrize("device, said", [("tpu", "not a torch device"), ("cuda:0", "no cuda device on this machine")])
def test_a_device_torch_cannot_use_here_is_refused_before_work_starts(tmp_path, monkeypatch, capsys, args, device,
                                                                      said):
    """`--device cuda` without a card was torch's 'Found no NVIDIA driver' traceback once the job had started."""
    import torch

    from mgdm.cli import main

    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    monkeypatch.chdir(tmp_path)
    assert main([*args, "--device", device, "--params", str(ROOT / "params.yaml"), "--profile", "smoke"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mgdm: error: --device '{device}': {said}") and len(err.splitlines()) == 1, err
    assert not any(tmp_path.rglob("*"))


def test_a_profile_made_for_a_card_is_refused_on_a_machine_without_one_by_the_jobs_that_compute(
        tmp_path, monkeypatch, capsys):
    """The profile's own device is checked by the stages and tools that compute on it (and `mgdm jobs`), not by
    preprocess, the report or the tools that read records, which run anywhere (a GPU study's report is rebuilt on a
    laptop)."""
    import torch
    import yaml

    from mgdm.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["profiles"]["smoke"]["device"] = "cuda"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    said = "mgdm: error: params.yaml (profile 'smoke'): device 'cuda': no cuda device on this machine"
    for args in (["train-reference-net", "--dataset", "discs"], ["sample", "--dataset", "discs", "--set", "none"],
                 ["jobs"], ["survey-zoo"], ["copies-control"]):
        assert main([*args, "--profile", "smoke"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(said) and len(err.splitlines()) == 1, err
    assert not any(p for p in tmp_path.rglob("*") if p.name != "params.yaml")
    # the arguments before the machine: a network outside the profile is named as such
    assert main(["train-baseline", "--dataset", "discs", "--network", "nope", "--seed", "0", "--profile", "smoke"]) == 2
    assert "network 'nope' is not in this profile's networks (convnext_atto)" in capsys.readouterr().err
    assert main(["train-baseline", "--dataset", "discs", "--network", "convnext_atto", "--seed", "-1", "--profile",
                 "smoke"]) == 2
    assert "seed -1 is not in this profile's seeds (0)" in capsys.readouterr().err
    for args in (["report", "--no-mlflow"], ["copies-control", "--from-records"], ["power"]):
        assert main([*args, "--profile", "smoke"]) == 2  # for want of runs, not for the device
        err = capsys.readouterr().err
        assert ("not found" in err or "no run records" in err) and "device" not in err, err


def serve(codes: dict, tls=None):
    """A local HTTP(S) server answering every GET with the status `codes[path]` (404 for any other path);
    returns (its URL, the server)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(codes.get(self.path, 404))
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"{'https' if tls else 'http'}://127.0.0.1:{server.server_port}", server


@pytest.fixture
def http_server():
    codes = {}
    url, server = serve(codes)
    yield url, codes
    server.shutdown()
    server.server_close()


def test_a_tracking_server_that_is_not_there_is_refused_before_work_starts(http_server, tmp_path, monkeypatch,
                                                                          capsys):
    """MLflow's client retries an absent server for about 4 minutes, then failed the finished job (its outputs
    removed): the runner asks the server's /health first and names the URI in one line."""
    import socket

    from mgdm.cli import main
    from mgdm.config import ConfigError
    from mgdm.workflow.tracking import check_server

    url, codes = http_server
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(ConfigError, match=f"MLFLOW_TRACKING_URI {closed}: no MLflow server answers"):
        check_server(closed)
    with pytest.raises(ConfigError, match=r"answers, but is not an MLflow server \(HTTP 404 for /health\)"):
        check_server(url)
    for code in (200, 401):  # an MLflow server; one that wants a login (the client judges)
        codes["/health"] = code
        check_server(url + "/")
    check_server("sqlite:///nowhere/mlflow.db")  # a local store: nothing to ask
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", closed)
    monkeypatch.delenv("MGDM_NO_MLFLOW", raising=False)
    rc = main(["preprocess", "--params", str(ROOT / "params.yaml"), "--profile", "smoke", "--dataset", "discs"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and re.fullmatch(f"mgdm preprocess: error: MLFLOW_TRACKING_URI {closed}: no MLflow server "
                                    r"answers \(.*Connection refused\); start one there, or run without logging "
                                    r"\(--no-mlflow, or MGDM_NO_MLFLOW=1\)", err), err
    assert not list(tmp_path.iterdir())


def test_a_tracking_server_on_tls_is_asked_with_the_tls_settings_mlflow_honours(tmp_path, monkeypatch):
    """A self-signed server is refused as MLflow's client would refuse it, and accepted where MLflow is told to
    accept it (MLFLOW_TRACKING_SERVER_CERT_PATH, MLFLOW_TRACKING_INSECURE_TLS)."""
    import shutil
    import ssl
    import subprocess

    from mgdm.config import ConfigError
    from mgdm.workflow.tracking import check_server

    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    url, server = serve({"/health": 200}, tls)
    try:
        for name in ("MLFLOW_TRACKING_SERVER_CERT_PATH", "MLFLOW_TRACKING_INSECURE_TLS"):
            monkeypatch.delenv(name, raising=False)
        with pytest.raises(ConfigError, match="no MLflow server answers .*certificate verify failed"):
            check_server(url)
        monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(cert))
        check_server(url)
        monkeypatch.delenv("MLFLOW_TRACKING_SERVER_CERT_PATH")
        monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
        check_server(url)
    finally:
        server.shutdown()
        server.server_close()


def test_a_failure_after_sampling_keeps_the_finished_batches_for_the_rerun(smoke_dag, tmp_path, monkeypatch):
    """MLflow gone when a `sample` job records its set: the job fails and removes its outputs, but the finished
    batches stay until a job is recorded, so the rerun draws none of them again (before, they went with the set)."""
    from mgdm.cli import main
    from mgdm.files import read_json
    from mgdm.workflow import runner

    workdir = finished_copy(smoke_dag, tmp_path / "w")
    monkeypatch.chdir(workdir)
    samples = workdir / "results/smoke/discs/samples"
    args = ["sample", "--profile", "smoke", "--dataset", "discs", "--set", "none", "--no-mlflow", "--no-progress",
            "--threads", "1"]
    record = runner._finish

    def tracking_gone(*args, **kwargs):
        raise ConnectionError("MLflow at http://127.0.0.1:5000: connection refused")

    monkeypatch.setattr(runner, "_finish", tracking_gone)
    with pytest.raises(ConnectionError):
        main(args)
    batches = sorted((samples / ".none.shards").glob("batch*.npz"))
    assert batches and not (samples / "none.npz").exists() and not (samples / "none.json").exists()
    monkeypatch.setattr(runner, "_finish", record)
    assert main(args) == 0
    assert read_json(samples / "none.json")["resumed_batches"] == len(batches)
    assert not (samples / ".none.shards").exists()  # recorded: the batches go
