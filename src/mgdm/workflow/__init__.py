"""The DAG's glue: the stage table, its resolution for a profile (Plan), the Snakemake and DVC writers, source
tracking, the stage runner, `mgdm jobs`, the plan's estimate and MLflow tracking. Not the method."""

from __future__ import annotations

import sys
from pathlib import Path


def emit(text: str, output: str) -> int:
    """Write a generated file to `output`, or to standard output for '-'."""
    if output == "-":
        sys.stdout.write(text)
    else:
        Path(output).write_text(text)
    return 0
