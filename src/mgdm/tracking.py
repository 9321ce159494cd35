"""MLflow logging of one stage run: params, metrics (with history), artifacts and tags.

Stages run in parallel processes against one sqlite file, so logging is serialised with a file
lock and done in one go at the end of the stage.
"""

from __future__ import annotations

import math
import subprocess
from contextlib import nullcontext
from pathlib import Path

from filelock import FileLock

DEFAULT_URI = "sqlite:///results/mlflow.db"


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


def log_stage(uri: str, experiment: str, run_name: str, tags: dict, params: dict, metrics: dict,
              history: dict | None = None, artifacts: list[str | Path] = ()) -> str:
    """Log one finished stage as an MLflow run; return its run id."""
    import mlflow
    from mlflow.entities import Metric

    local_db = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if local_db:
        local_db.parent.mkdir(parents=True, exist_ok=True)
    numeric = {k: float(v) for k, v in _flat(metrics).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    other = {k: str(v)[:500] for k, v in _flat(metrics).items() if k not in numeric}
    with FileLock(f"{local_db}.lock") if local_db else nullcontext():
        mlflow.set_tracking_uri(uri)
        if mlflow.get_experiment_by_name(experiment) is None:
            # a local database keeps its artifacts beside it, not in ./mlruns of wherever the job ran
            where = (local_db.parent / "mlartifacts").resolve().as_uri() if local_db else None
            mlflow.create_experiment(experiment, artifact_location=where)
        mlflow.set_experiment(experiment)
        with mlflow.start_run(run_name=run_name, tags=tags) as run:
            client = mlflow.MlflowClient()
            flat_params = {k: str(v)[:6000] for k, v in {**_flat(params), **other}.items()}
            mlflow.log_params(flat_params)
            mlflow.log_metrics(numeric)
            if history:
                series = [Metric(name, float(v), 0, int(step)) for name, points in history.items()
                          for step, v in points if math.isfinite(v)]
                for i in range(0, len(series), 1000):
                    client.log_batch(run.info.run_id, metrics=series[i:i + 1000])
            for a in artifacts:
                if Path(a).exists():
                    mlflow.log_artifact(str(a))
            return run.info.run_id
