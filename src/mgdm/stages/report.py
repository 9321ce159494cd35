"""Stage `report`: every job's metrics gathered into the profile's run records (records/runs.csv, one row per
downstream run; records/images.json), then every table (markdown, LaTeX) and summary figure built from those
records alone (mgdm.analysis.tables), so a reader rebuilds them from git with `--from-records`."""

from __future__ import annotations

from pathlib import Path

from mgdm.analysis.tables import Report, RunGrid, build, collect
from mgdm.stages import StageResult


def main(config, plan, a) -> StageResult:
    out = plan.paths("report")
    p = config.profile
    figures = {k: out[f"{k}.png"] for k in ("downstream", "fidelity_vs_downstream", "quantity")}
    records = Path(out["runs.csv"]).parent
    if not a.from_records:
        def predictions(stage, **w):
            return plan.paths(stage, **w)[f"seed{w['seed']}_test.npz"]

        grid = RunGrid(list(p.datasets), plan.values["set"], config.chosen("networks", a.networks),
                       config.chosen("seeds", a.seeds), {d: config.dataset(d).image_size for d in p.datasets},
                       p.downstream.epochs)
        collect(grid, plan.metrics_path, predictions, records, a.images_only)
    report = Report(p.name, p.sampling.mgdm.measure, p.inference.margin, p.inference.alpha)
    result = run(report, records, Path(out["downstream.md"]).parent, figures, a.images_only)
    if not a.images_only:
        result.artifacts = list(figures.values()) + [v for k, v in out.items() if k.endswith((".md", ".csv"))]
    return result


def run(report: Report, records: str | Path, tables_dir: str | Path, figures: dict[str, str | Path] | None,
        images_only: bool = False) -> StageResult:
    """Write every table (and figure) from the records alone; metrics: runs and claims counted by verdict."""
    return StageResult.of(build(report, records, tables_dir, figures, images_only))
