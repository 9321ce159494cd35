"""One module per DAG stage, named as in the stage table (mgdm.workflow.stages): its `run` does the stage's
work from files and settings; its `main(config, plan, args)` is the CLI handler that finds the files."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass
class StageResult:
    """What a stage returns: metrics (its JSON, MLflow metrics), params and history (MLflow), artifacts
    (files logged to MLflow beside the JSON), and `recorded`: what to do once the job is recorded (its metrics
    JSON written and MLflow logged), e.g. removing what a rerun after a failure there would resume from."""

    metrics: dict
    params: dict = field(default_factory=dict)
    history: dict | None = None
    artifacts: list[str] = field(default_factory=list)
    recorded: Callable[[], None] | None = None

    @classmethod
    def of(cls, result: dict, artifacts: list[str] | None = None) -> "StageResult":
        """From a domain function's {metrics, params, history, <other summary values>}."""
        extra = {k: v for k, v in result.items() if k not in ("metrics", "params", "history")}
        return cls({**result.get("metrics", {}), **extra}, result.get("params", {}), result.get("history"),
                   list(artifacts or []))
