"""`mgdm dvc-yaml`: dvc.yaml written from the stage table, its grids read from params.yaml by DVC's templating.

A stage over synthetic sets becomes one stage per guidance kind whose matrix reads that kind's scale list
(`${defaults.sampling.scales.entropy}`), and networks and seeds are read the same way, so
`dvc exp run -S 'defaults.sampling.scales.entropy=[1]'` runs a variant without rewriting dvc.yaml.
"""

from __future__ import annotations

import re

from mgdm.workflow import emit
from mgdm.workflow.plan import MISSING, Plan, lookup
from mgdm.config import load
from mgdm.workflow.stages import DATASET, STAGES, Stage, fields


def dvc_fields(pattern: str, matrix: tuple[str, ...]) -> str:
    """Write `{x}` placeholders as DVC does: `${item}` under foreach, `${item.x}` under matrix."""
    return re.sub(r"\{(\w+)\}", r"${item.\1}" if len(matrix) > 1 else r"${item}", pattern)


def dvc_yaml(plan: Plan) -> dict:
    """Return dvc.yaml's content: the same stages, with their grids read from params.yaml by DVC's templating.

    A stage over synthetic sets becomes one stage per guidance kind whose matrix reads that kind's scale
    list (`${defaults.sampling.scales.entropy}`), and networks and seeds are read the same way, so
    `dvc exp run -S 'defaults.sampling.scales.entropy=[1]'` runs a variant without rewriting this file.
    Stages that gather over sets depend on the folders the sets are written to.
    """
    stages = {}
    for name in plan.stages:
        for suffix, fixed, matrix in _variants(plan, name):
            stages[name + suffix] = _stage(plan, name, fixed, matrix)
    # every figure not drawn per set, for `dvc plots show` and `dvc plots diff <rev>`
    plots = [p for name in plan.stages for o in STAGES[name].outs if o.endswith(".png") and "{set}" not in o
             for p in plan.owner(name).expand(o)]
    return {"stages": stages, "plots": plots}

def _variants(plan: Plan, name: str) -> list[tuple[str, dict, dict]]:
    """[(stage-name suffix, {field: fixed text}, {matrix field: values or '${params key}'})] for one stage."""
    s, owner = STAGES[name], plan.owner(name)
    grid = {f: _values(owner, f) for f in s.matrix if f != "set"}
    if "set" not in s.matrix:
        return [("", {}, grid)]
    chosen = layer_key(owner, "downstream.sets") if name == "train_classifier" else None
    if chosen:  # the profile names its sets
        return [("", {}, {**grid, "set": f"${{{chosen}}}"})]
    gen = owner.generator
    variants = []
    redraws = layer_key(gen, "sampling.redraws") if gen.config.profile.sampling.redraws else None
    for g in gen.config.profile.sampling.scales:
        scales = {} if g == "none" else {"scale": f"${{{layer_key(gen, f'sampling.scales.{g}')}}}"}
        name = "none" if g == "none" else f"{g}-s${{item.scale}}"
        variants.append((f"_{g}", {"set": name}, {**grid, **scales}))
        if redraws:  # the further draws of the grid's sets (entropy-s2-d1, ...)
            variants.append((f"_{g}_redrawn", {"set": f"{name}-d${{item.draw}}"},
                             {**grid, **scales, "draw": f"${{{redraws}}}"}))
    sized = layer_key(gen, "sampling.sized_sets")
    if sized and gen.config.profile.sampling.sized_sets:  # sets sized by the training split, named in full
        variants.append(("_sized", {}, {**grid, "set": f"${{{sized}}}"}))
    return variants

def _values(plan: Plan, field: str):
    """A matrix field's values: the params key DVC reads them from (networks, seeds), else the list."""
    key = {"network": "downstream.networks", "seed": "downstream.seeds"}.get(field)
    found = layer_key(plan, key) if key else None
    return f"${{{found}}}" if found else plan.values[field]

def layers(plan: Plan) -> list[tuple[str, dict]]:
    """params.yaml's layers of this profile, each with its key prefix: the defaults, the generator's, its own."""
    raw = plan.config.params
    return [("defaults", raw.defaults)] + [
        (f"profiles.{g}", raw.profiles[g]) for g in (plan.config.profile.generator, plan.profile) if g]

def layer_key(plan: Plan, dotted: str) -> str | None:
    """The params.yaml key that sets `dotted` for this profile: its own override, its generator's, or the
    defaults' (None where only the code's default sets it)."""
    for prefix, tree in reversed(layers(plan)):
        if lookup(tree, dotted) is not MISSING:
            return f"{prefix}.{dotted}"
    return None

def _stage(plan: Plan, name: str, fixed: dict, matrix: dict) -> dict:
    s, owner = STAGES[name], plan.owner(name)

    def sub(pattern: str) -> str:
        for k, v in fixed.items():
            pattern = pattern.replace("{" + k + "}", v)
        return dvc_fields(pattern, tuple(matrix))

    entry: dict = {"cmd": plan.command(name, args=sub(s.args))}
    if len(matrix) == 1:
        entry = {"foreach": next(iter(matrix.values())), "do": entry}
    elif matrix:
        entry = {"matrix": matrix, **entry}
    body = entry.get("do", entry)
    keep = s.matrix  # a set is either in the DVC matrix or fixed by the variant
    deps = []
    for d in s.deps:
        d = owner.fill_roots(d)
        gathered = [f for f in fields(d) if f not in keep and f in ("set", "network", "seed")]
        if gathered:  # a gathering stage reads the folder that DVC's templated grids write into
            d = d[:d.index("{" + gathered[0] + "}")].rstrip("/")
        deps += [sub(p) for p in owner.expand(d, keep)]
    deps = list(dict.fromkeys(deps)) + plan.code(name)
    if deps:
        body["deps"] = deps
    raw_keys = _param_keys(owner, s, tuple(matrix))
    if raw_keys:
        body["params"] = [{plan.params_file: raw_keys}]
    outs, plots = [], []
    for out in s.outs:
        for o in (sub(p) for p in owner.expand(out, keep)):
            committed = any(f"/{c}/" in o for c in s.committed)
            # a set's grid is a plot of its stage (top-level plots cannot follow the templated sets)
            (plots if "{set}" in out and o.endswith(".png") else outs).append({o: {"cache": False}} if committed else o)
    if outs:
        body["outs"] = outs
    if plots:
        body["plots"] = plots
    metrics = [sub(m) for pattern in s.metric_files for m in owner.expand(pattern, keep)]
    if metrics:
        body["metrics"] = [{m: {"cache": False}} for m in metrics]
    return entry

def _param_keys(plan: Plan, s: Stage, matrix: tuple[str, ...]) -> list[str]:
    """The params.yaml keys behind a stage's settings that exist in the file (DVC wants real keys)."""
    keys = []
    for key in s.params:
        if key == DATASET:
            keys.append(dvc_fields(key, matrix))
            continue
        ignored = {i.removeprefix(key + ".") for i in s.ignore if i.startswith(key + ".")}
        for prefix, tree in layers(plan):
            node = lookup(tree, key)
            if node is MISSING:
                continue
            if isinstance(node, dict) and ignored & set(node):  # the section's other keys, one by one
                keys += [f"{prefix}.{key}.{sub}" for sub in node if sub not in ignored]
            else:
                keys.append(f"{prefix}.{key}")
    return keys


def main(a) -> int:
    import yaml

    class NoAliases(yaml.SafeDumper):
        def ignore_aliases(self, data):
            return True

    plan = Plan(load(a.params, a.profile), a.params)
    text = ("# Written by `mgdm dvc-yaml --profile " + plan.profile + "` from the stage table in "
            "src/mgdm/workflow/stages.py; do not edit by hand.\n" + yaml.dump(dvc_yaml(plan), Dumper=NoAliases, sort_keys=False, width=120))
    return emit(text, a.output)
