"""The source files each stage runs: Snakemake and DVC rerun a stage when one of them changes.

A stage's code is its module (mgdm.stages.<stage>: its CLI handler and its `run`) and every mgdm module
imported from there, transitively, function-local imports included. Read from the source with `ast`, so
the list cannot drift from the code. Left out is the glue every stage shares only to find its files and
log its run: the CLI, the config schema (whose values reach a stage as its settings, which both workflow
managers already track) and mgdm.workflow (stage table, plan, runner, MLflow). Editing those reruns
nothing; editing anything else reruns the stages that import it and everything downstream of them.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

GLUE = frozenset({"mgdm.cli", "mgdm.config"})


def is_glue(module: str) -> bool:
    """The CLI, the config schema and the DAG's glue (mgdm.workflow: stage table, plan, runner, tracking)."""
    return module in GLUE or module == "mgdm.workflow" or module.startswith("mgdm.workflow.")


SOURCE_ROOT = Path("src")  # the checkout's layout: the workflow's code as <workdir>/src/mgdm/...


def package_root() -> Path:
    """Where the running mgdm's modules are: a checkout's src/ for an editable install, else site-packages."""
    return Path(__file__).resolve().parents[2]  # <root>/mgdm/workflow/sources.py


def module_file(root: Path, module: str) -> Path | None:
    """Return the file of `module` (a dotted name) under `root`, or None if it is not a module there."""
    base = root.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(root: Path, tree: ast.AST) -> set[str]:
    """The mgdm modules a syntax tree imports (`from mgdm.x import y` counts y when y is a module)."""
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found.update(n for n in names if n.split(".")[0] == "mgdm" and module_file(root, n))
    return found


def closure(root: Path, modules: set[str]) -> set[str]:
    """`modules` and every mgdm module they import, transitively, less the glue."""
    seen, todo = set(), {m for m in modules if not is_glue(m)}
    while todo:
        m = todo.pop()
        seen.add(m)
        tree = ast.parse(module_file(root, m).read_text())
        todo |= {n for n in imported_modules(root, tree) if not is_glue(n)} - seen
    return seen


@functools.cache
def stage_sources(root: str = str(SOURCE_ROOT)) -> dict[str, list[str]]:
    """Return {stage: its source files, as paths under `root`}; {} where `root` holds no mgdm checkout
    (the package installed from an index: its code is then versioned by its release, not tracked)."""
    from mgdm.workflow.stages import STAGES

    base = Path(root)
    if module_file(base, "mgdm.cli") is None:
        return {}
    sources = {}
    for name, stage in STAGES.items():
        files = {module_file(base, m) for m in closure(base, {stage.module})}
        # every package __init__ above a module runs when the module is imported
        files |= {d / "__init__.py" for p in files for d in p.parents if d != base and d.is_relative_to(base)
                  and (d / "__init__.py").is_file()}
        sources[name] = sorted(p.as_posix() for p in files)
    return sources
