"""MLflow as users browse it: `mlflow ui` serving the smoke run's store, opened in headless Chromium."""

import json
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, debian_command

from mgdm.config import load
from mgdm.workflow.plan import Plan

SCREENSHOTS = ROOT / "results/mlflow-ui"


@pytest.fixture(scope="module")
def chromium():
    path = debian_command(("chromium", "chromium-browser", "google-chrome"), ["chromium"])
    if path is None:
        pytest.skip("no headless Chromium, and no root and apt-get to install Debian's `chromium`")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui(smoke_dag):
    store = f"sqlite:///{smoke_dag[0]}/results/mlflow.db"
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store, "--host",
                               "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/health", timeout=2).read() == b"OK":
                    break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail(f"mlflow ui did not answer on {url}")
        yield url, store
    finally:
        server.terminate()
        server.wait(30)


def page_text(chromium: str, url: str, screenshot: Path | None = None) -> str:
    """The page's text after its scripts ran (headless Chromium, 30 s of virtual time)."""
    flags = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--virtual-time-budget=30000", "--window-size=3840,1600"]  # wide: the tables render only visible columns
    if screenshot:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([*flags, f"--screenshot={screenshot}", url], capture_output=True, timeout=180, check=True)
    html = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=180, check=True).stdout
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_runs_table_counts_every_job_and_the_compare_view_shows_each_sets_metrics(chromium, ui):
    from mlflow import MlflowClient

    url, store = ui
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("mgdm-smoke").experiment_id
    sets = Plan(load(ROOT / "params.yaml", "smoke")).values["set"]
    jobs = client.search_runs([experiment], "tags.stage != ''")
    # MLflow 3 opens an experiment on an overview: the runs table has its own route. The jobs' runs
    # nest under the invocation's parent run (collapsed until clicked): the table counts them all
    text = page_text(chromium, f"{url}/#/experiments/{experiment}/runs", SCREENSHOTS / "runs.png")
    assert "snakemake smoke" in text and f"{len(jobs) + 1} matching runs" in text
    runs = client.search_runs([experiment], "tags.stage = 'fidelity'")
    assert sorted(r.data.tags["set"] for r in runs) == sorted(sets)
    ids = urllib.parse.quote(json.dumps([r.info.run_id for r in runs]))
    experiments = urllib.parse.quote(json.dumps([experiment]))
    text = page_text(chromium, f"{url}/#/compare-runs?runs={ids}&experiments={experiments}",
                     SCREENSHOTS / "compare-fidelity.png")
    assert "domain_fid" in text and "floor_domain_fid" in text
    for r in runs:
        assert f"fidelity/discs/{r.data.tags['set']}" in text
        fid = r.data.metrics["domain_fid"]  # shown to 4 significant digits, below 1 to 3 decimals
        assert f"{fid:.4g}" in text or str(round(fid, 3)) in text, (r.data.tags["set"], fid)
