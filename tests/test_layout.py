"""The package's layout is its architecture: no import cycles, every import points down the layers, one
module per stage holding its handler and its `run`."""

import ast
import importlib

import pytest
from conftest import ROOT

from mgdm.workflow.sources import imported_modules
from mgdm.workflow.stages import STAGES

SRC = ROOT / "src"
# lower layers never import higher ones; a layer's packages may import each other without a cycle
LAYERS = [{"config", "files", "interrupts", "machine", "training"}, {"data"}, {"diffusion", "guidance", "classifiers"},
          {"sampling"}, {"metrics"}, {"analysis"}, {"workflow"}, {"stages"}, {"tools"}, {"cli"}]
LAYER = {part: i for i, layer in enumerate(LAYERS) for part in layer}


def modules() -> dict[str, set[str]]:
    """{module: the mgdm modules it imports anywhere in its source (function-local imports included)}."""
    graph = {}
    for path in (SRC / "mgdm").rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        graph[name] = imported_modules(SRC, ast.parse(path.read_text())) - {name}
    return graph


def part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "mgdm"


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph`, or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles_between_modules_or_packages():
    graph = modules()
    assert cycle(graph) is None, " -> ".join(cycle(graph))
    packages = {}
    for m, deps in graph.items():
        packages.setdefault(part(m), set()).update(part(d) for d in deps if part(d) != part(m))
    assert cycle(packages) is None, " -> ".join(cycle(packages))


def test_every_import_points_down_the_layers():
    graph = modules()
    assert set(part(m) for m in graph) - {"mgdm"} <= set(LAYER), "a package not placed in LAYERS"
    upward = [(m, d) for m, deps in graph.items() for d in deps
              if part(m) != "mgdm" and LAYER[part(d)] > LAYER[part(m)]]
    assert not upward, upward


def test_the_checks_can_fail():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("stage", list(STAGES))
def test_one_module_per_stage_holds_its_handler_and_its_run(stage):
    module = importlib.import_module(STAGES[stage].module)
    assert callable(module.main) and callable(module.run)
    assert (SRC / "mgdm/stages" / f"{stage}.py").exists()
    assert "mgdm.cli" not in modules()[STAGES[stage].module], "stages never import the CLI"
