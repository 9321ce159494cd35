"""MLflow logging: one run per stage job (params, metrics with history, artifacts, tags, dataset inputs),
nested under one parent run per pipeline invocation.

Stages run in parallel processes against one sqlite file, so logging is serialised with a file
lock and done in one go at the end of the stage, with the stage's real start and end times.
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from contextlib import nullcontext
from pathlib import Path

from filelock import FileLock

DEFAULT_URI = "sqlite:///results/mlflow.db"
PARENT_ENV = "MGDM_MLFLOW_PARENT_RUN"  # the run id of the pipeline invocation (set by the Snakefile's onstart)
OFF_ENV = "MGDM_NO_MLFLOW"  # set (not "0"): no logging, for every job a workflow manager starts (as --no-mlflow)


def enabled() -> bool:
    """Whether to log: on unless MGDM_NO_MLFLOW is set. Importing MLflow and opening its store cost a job
    about 4 s on 2 cores, which short jobs (tests, CI) may not want to pay."""
    return os.environ.get(OFF_ENV, "0") == "0"


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Refuse, before any work, an http(s) tracking URI where no server answers: MLflow's client retries for
    about 4 minutes, then fails the job whose work was done (its outputs removed with it)."""
    if not uri.startswith(("http://", "https://")):
        return
    import ssl
    import urllib.error
    import urllib.request

    from mgdm.config import ConfigError

    # the TLS settings MLflow's client honours: a self-signed server it accepts is accepted here too
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        context = ssl._create_unverified_context()
    else:
        context = ssl.create_default_context(cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"))
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout, context=context).close()  # 200 OK
        return
    except urllib.error.HTTPError as err:
        if err.code != 404:
            return  # a server that wants a login (401, 403) or is busy: MLflow's client judges
        problem = "answers, but is not an MLflow server (HTTP 404 for /health)"
    except OSError as err:  # URLError, a timeout, a refused connection
        problem = f"no MLflow server answers ({getattr(err, 'reason', err)})"
    raise ConfigError(f"MLFLOW_TRACKING_URI {uri}: {problem}; start one there, or run without logging "
                      "(--no-mlflow, or MGDM_NO_MLFLOW=1)")


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, f"{key}."))
        else:
            out[key] = v
    return out


def _experiment_id(client, experiment: str, local_db: Path | None) -> str:
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    # a local database keeps its artifacts beside it, not in ./mlruns of wherever the job ran
    where = (local_db.parent / "mlartifacts").resolve().as_uri() if local_db else None
    return client.create_experiment(experiment, artifact_location=where)


def _store(uri: str):
    """(client, lock, local sqlite path or None) for a tracking URI; a local database's folder is created and
    the file is locked while written."""
    import mlflow

    local_db = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if local_db:
        local_db.parent.mkdir(parents=True, exist_ok=True)
    return mlflow.MlflowClient(uri), (FileLock(f"{local_db}.lock") if local_db else nullcontext()), local_db


def start_pipeline(uri: str, experiment: str, run_name: str, tags: dict) -> str:
    """Open the parent run of one pipeline invocation; stage runs started with PARENT_ENV set nest under it."""
    if not enabled():
        return ""
    check_server(uri)
    client, lock, local_db = _store(uri)
    with lock:
        run = client.create_run(_experiment_id(client, experiment, local_db), run_name=run_name, tags=tags)
    os.environ[PARENT_ENV] = run.info.run_id  # inherited by every job Snakemake starts
    return run.info.run_id


def end_pipeline(uri: str, status: str = "FINISHED") -> None:
    run_id = os.environ.get(PARENT_ENV)
    if run_id and enabled():
        client, lock, _ = _store(uri)
        with lock:
            client.set_terminated(run_id, status)


def dataset_input(path: str | Path, name: str, context: str):
    """An MLflow dataset input for a processed dataset's training split or a synthetic set (digest of its arrays)."""
    import warnings

    import mlflow.data
    from mlflow.entities import DatasetInput, InputTag

    from mgdm.files import read_npz

    arrays = read_npz(path)
    images, labels = (arrays["train_images"], arrays["train_labels"]) if "train_images" in arrays else \
        (arrays["images"], arrays["labels"])
    with warnings.catch_warnings():  # a local path matches two equivalent source types; either is right
        warnings.simplefilter("ignore", UserWarning)
        ds = mlflow.data.from_numpy(images, targets=labels, source=str(path), name=name)
    return DatasetInput(ds._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])


def log_stage(uri: str, experiment: str, run_name: str, tags: dict, params: dict, metrics: dict,
              history: dict | None = None, artifacts: list[str | Path] = (), start: float | None = None,
              end: float | None = None, inputs: list = ()) -> str:
    """Log one finished stage as an MLflow run with its real start and end (seconds since the epoch), nested
    under the pipeline's parent run when there is one in the same experiment; return its run id."""
    from mlflow.entities import Metric, Param

    numeric = {k: float(v) for k, v in _flat(metrics).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    other = {k: str(v)[:500] for k, v in _flat(metrics).items() if k not in numeric}
    end = end or time.time()
    client, lock, local_db = _store(uri)
    with lock:
        experiment_id = _experiment_id(client, experiment, local_db)
        tags = dict(tags)
        parent = os.environ.get(PARENT_ENV)
        if parent and client.get_run(parent).info.experiment_id == experiment_id:
            tags["mlflow.parentRunId"] = parent
        run = client.create_run(experiment_id, start_time=int(1000 * (start or end)), tags=tags, run_name=run_name)
        run_id = run.info.run_id
        flat_params = [Param(k, str(v)[:6000]) for k, v in {**_flat(params), **other}.items()]
        series = [Metric(k, v, int(1000 * end), 0) for k, v in numeric.items()]
        series += [Metric(name, float(v), int(1000 * end), int(step)) for name, points in (history or {}).items()
                   for step, v in points if math.isfinite(v)]
        for i in range(0, len(flat_params), 100):
            client.log_batch(run_id, params=flat_params[i:i + 100])
        for i in range(0, len(series), 1000):
            client.log_batch(run_id, metrics=series[i:i + 1000])
        if inputs:
            client.log_inputs(run_id, datasets=list(inputs))
        for a in artifacts:
            if Path(a).exists():
                client.log_artifact(run_id, str(a))
        client.set_terminated(run_id, "FINISHED", end_time=int(1000 * end))
        return run_id
