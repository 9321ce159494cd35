"""The one table of stages, from which the Snakemake rules and dvc.yaml are both written.

Each stage names its matrix (the wildcards it runs over), its command, what it reads and what it
writes. Placeholders in a path that are not in the stage's matrix are expanded over all their
values (a stage that gathers, like `analyze` over every synthetic set). Snakemake's rules take
their inputs and outputs from here; `mgdm dvc-yaml` writes dvc.yaml from here; the CLI takes its
output paths from here. So the two workflow managers and the code cannot drift apart.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import string
from dataclasses import dataclass, field

from mgdm.config import Config
from mgdm.sources import stage_sources

TABLES = ("downstream", "paired", "claims", "fidelity", "distribution", "guidance_net", "runtime")


@dataclass(frozen=True)
class Stage:
    name: str
    matrix: tuple[str, ...]
    args: str  # CLI arguments after `mgdm <name>`, with {wildcards}
    deps: tuple[str, ...]
    outs: tuple[str, ...]
    metrics: str | None = None  # a JSON of metrics (DVC `metrics:`, also logged to MLflow)
    # the settings the stage reads (rerun when they change): profile keys, dotted for part of a section,
    # and DATASET for the dataset's own entry in params.yaml
    params: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()  # dotted parts of `params` the stage's result does not depend on
    committed: tuple[str, ...] = field(default_factory=tuple)  # outs kept in git (DVC cache: false)
    threads: int = 1
    priority: int = 0  # Snakemake starts higher first: the DDPM is the long pole of every DAG


# {gen}: where the profile that makes the images keeps its files (the profile's own root unless it sets
# `generator`); {root}: this profile's. The generator's files are shared by every profile built on it.
D = "{gen}/{dataset}"
R = "{root}/{dataset}"
DATA = f"{D}/data/dataset.npz"
DDPM = f"{D}/ddpm/model.safetensors"
GUIDANCE_NET = f"{D}/guidance_net/model.safetensors"
REFERENCE_NET = f"{D}/reference_net/model.safetensors"
SAMPLES = f"{D}/samples/{{set}}.npz"
FIGURES = "{gen}/figures"
DATASET = "datasets.{dataset}"
# what the guidance net reads of the DDPM's section: the noise schedule and the data's encoding
SCHEDULE = tuple(f"ddpm.{k}" for k in ("normalization", "schedule", "train_timesteps", "zero_terminal_snr",
                                       "timestep_spacing", "prediction_type"))

# which downstream jobs exist, not how one trains (its network, set and seed are in its wildcards)
GRID = ("downstream.networks", "downstream.seeds", "downstream.sets")

STAGES = {s.name: s for s in [
    Stage("preprocess", ("dataset",), "--dataset {dataset}", (),
          (DATA, f"{D}/data/preview.png"), f"{D}/data/summary.json", (DATASET,)),
    Stage("train_ddpm", ("dataset",), "--dataset {dataset}", (DATA, REFERENCE_NET),
          (DDPM, f"{D}/ddpm/model.json"), f"{D}/ddpm/metrics.json",
          ("ddpm", "sampling.seed", "analysis.knn_k"), threads=2, priority=10),  # the last two: its fidelity probe
    Stage("train_guidance_net", ("dataset",), "--dataset {dataset}", (DATA,),
          (GUIDANCE_NET, f"{D}/guidance_net/model.json"), f"{D}/guidance_net/metrics.json", ("guidance_net", *SCHEDULE),
          priority=5),
    Stage("train_reference_net", ("dataset",), "--dataset {dataset}", (DATA,),
          (REFERENCE_NET, f"{D}/reference_net/model.json"), f"{D}/reference_net/metrics.json", ("reference_net",)),
    Stage("sample", ("dataset", "set"), "--dataset {dataset} --set {set}", (DATA, DDPM, GUIDANCE_NET),
          (SAMPLES, f"{D}/samples/{{set}}.png"), f"{D}/samples/{{set}}.json", ("sampling",),
          # the scale grid says which sets exist; a set's own guidance and scale are in its name
          # 1 thread: two sets side by side, bit-identical to one 2-thread set at a time; the cpu profile's
          # 9 sets under `snakemake --cores 2` took 1508 s instead of 1733 (README, Speed)
          ignore=("sampling.scales",), priority=5),
    Stage("fidelity", ("dataset", "set"), "--dataset {dataset} --set {set}", (DATA, SAMPLES, REFERENCE_NET),
          (), f"{D}/fidelity/{{set}}.json", ("fidelity",)),
    Stage("train_baseline", ("dataset", "network", "seed"), "--dataset {dataset} --network {network} --seed {seed}",
          (DATA,), (f"{R}/downstream/{{network}}/real/seed{{seed}}_test.npz",),
          f"{R}/downstream/{{network}}/real/seed{{seed}}.json", ("downstream",), ignore=GRID),
    Stage("train_classifier", ("dataset", "network", "set", "seed"),
          "--dataset {dataset} --network {network} --set {set} --seed {seed}", (DATA, SAMPLES),
          (f"{R}/downstream/{{network}}/{{set}}/seed{{seed}}_test.npz",),
          f"{R}/downstream/{{network}}/{{set}}/seed{{seed}}.json", ("downstream",), ignore=GRID),
    Stage("analyze", ("dataset",), "--dataset {dataset}", (DATA, REFERENCE_NET, SAMPLES),
          (f"{FIGURES}/{{dataset}}_entropy.png", f"{FIGURES}/{{dataset}}_embedding.png",
           f"{FIGURES}/{{dataset}}_samples.png"), f"{D}/analysis/distribution.json", ("analysis",),
          committed=("figures",)),
    Stage("report", (), "",
          (f"{D}/data/summary.json", f"{D}/ddpm/metrics.json", f"{D}/guidance_net/metrics.json",
           f"{D}/reference_net/metrics.json", f"{D}/samples/{{set}}.json", f"{D}/fidelity/{{set}}.json",
           f"{R}/downstream/{{network}}/real/seed{{seed}}.json", f"{R}/downstream/{{network}}/{{set}}/seed{{seed}}.json",
           f"{R}/downstream/{{network}}/real/seed{{seed}}_test.npz",
           f"{R}/downstream/{{network}}/{{set}}/seed{{seed}}_test.npz", f"{D}/analysis/distribution.json"),
          ("{root}/records/images.json", "{root}/records/runs.csv")
          + tuple(f"{{root}}/tables/{t}.{ext}" for t in TABLES for ext in ("md", "tex"))
          + ("{root}/figures/downstream.png", "{root}/figures/fidelity_vs_downstream.png"),
          "{root}/tables/report.json", ("sampling.mgdm.measure", "inference"),
          committed=("records", "tables", "figures")),
]}


def fields(pattern: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(pattern) if f]


def dvc_fields(pattern: str, matrix: tuple[str, ...]) -> str:
    """Write `{x}` placeholders as DVC does: `${item}` under foreach, `${item.x}` under matrix."""
    return re.sub(r"\{(\w+)\}", r"${item.\1}" if len(matrix) > 1 else r"${item}", pattern)


GENERATOR_STAGES = ("preprocess", "train_ddpm", "train_guidance_net", "train_reference_net", "sample", "fidelity",
                    "analyze")


def delegated(method):
    """Run a generator stage's method on the generator's Plan (its profile, its root, all its sets)."""
    @functools.wraps(method)
    def wrapper(self, stage, *args, **kwargs):
        return method(self.owner(stage), stage, *args, **kwargs)
    return wrapper


class Plan:
    """The stage table resolved for one profile: wildcard values, paths, commands.

    The generator stages belong to `self.generator`: a Plan of the profile named by `generator` (or of
    this profile, sampling every set), so a study profile reuses another profile's images as they are.
    Downstream stages and the report are this profile's, over `downstream.sets`.
    """

    def __init__(self, config: Config, params_file: str = "params.yaml", _generator: bool = False):
        self.config, self.params_file = config, params_file
        p = config.profile
        self.profile = p.name
        self.root = f"results/{p.name}"
        self.generator = self if _generator else Plan(config.generator_config(), params_file, _generator=True)
        sets = config.sample_sets() if _generator else config.downstream_sets()
        self.values = {"dataset": list(p.datasets), "set": sets,
                       "network": list(p.downstream.networks), "seed": [str(s) for s in p.downstream.seeds]}

    def expand(self, pattern: str, keep: tuple[str, ...] = ()) -> list[str]:
        """Return `pattern` with every field not in `keep` expanded over its values (keep stays `{field}`)."""
        pattern = self.fill_roots(pattern)
        free = [f for f in dict.fromkeys(fields(pattern)) if f not in keep]
        out = []
        for combo in itertools.product(*(self.values[f] for f in free)):
            out.append(pattern.format(**dict(zip(free, combo)), **{k: "{" + k + "}" for k in keep}))
        return list(dict.fromkeys(out))

    @delegated
    def deps(self, stage: str) -> list[str]:
        s = STAGES[stage]
        return [p for d in s.deps for p in self.expand(d, s.matrix)]

    @delegated
    def outputs(self, stage: str) -> list[str]:
        """Return every file the stage writes (outs, then its metrics JSON), with its wildcards left in."""
        s = STAGES[stage]
        return [p for o in (*s.outs, *([s.metrics] if s.metrics else [])) for p in self.expand(o, s.matrix)]

    def paths(self, stage: str, **wildcards) -> dict[str, str]:
        """Return {file name: path} of one job's outputs, e.g. {"model.safetensors": "results/..."}."""
        paths = (p.format(**wildcards) for p in self.outputs(stage))
        return {path.rsplit("/", 1)[-1]: path for path in paths}

    def metrics_path(self, stage: str, **wildcards) -> str:
        return self.fill_roots(STAGES[stage].metrics).format(**wildcards)

    def fill_roots(self, pattern: str) -> str:
        return pattern.replace("{root}", self.root).replace("{gen}", self.generator.root)

    def owner(self, stage: str) -> "Plan":
        return self.generator if stage in GENERATOR_STAGES else self

    def targets(self) -> list[str]:
        """Return every file of every job: what `snakemake` (rule all) builds."""
        return [p for s in STAGES for o in self.outputs(s) for p in self.owner(s).expand(o)]

    @delegated
    def command(self, stage: str, args: str | None = None) -> str:
        """Return the stage's shell command with wildcards as `{x}`, or with `args` as dvc.yaml writes them."""
        args = STAGES[stage].args if args is None else args
        return f"mgdm {stage.replace('_', '-')} --params {self.params_file} --profile {self.profile} {args}".strip()

    @delegated
    def settings(self, stage: str, **wildcards) -> str:
        """The settings a stage reads, as JSON: Snakemake reruns a job when they change."""
        p, out = self.config.profile.model_dump(), {}
        for key in STAGES[stage].params:
            if key == DATASET:
                out[key.format(**wildcards)] = self.config.dataset(wildcards["dataset"]).model_dump()
            else:
                out[key] = lookup(p, key)
        for dotted in STAGES[stage].ignore:
            key, _, sub = dotted.rpartition(".")
            lookup(out, key).pop(sub, None)
        return json.dumps(out, sort_keys=True)

    def code(self, stage: str) -> list[str]:
        """The source files the stage runs (mgdm.sources): editing one reruns the stage and what follows."""
        return stage_sources().get(stage, [])

    def wildcard_constraints(self) -> dict[str, str]:
        values = {k: list(dict.fromkeys(v + self.generator.values[k])) for k, v in self.values.items()}
        return {k: "|".join(re.escape(v) for v in vals) for k, vals in values.items()}

    def dvc_yaml(self) -> dict:
        """Return dvc.yaml's content: the same stages, with their grids read from params.yaml by DVC's templating.

        A stage over synthetic sets becomes one stage per guidance kind whose matrix reads that kind's scale
        list (`${defaults.sampling.scales.entropy}`), and networks and seeds are read the same way, so
        `dvc exp run -S 'defaults.sampling.scales.entropy=[1]'` runs a variant without rewriting this file.
        Stages that gather over sets depend on the folders the sets are written to.
        """
        stages = {}
        for name, s in STAGES.items():
            for suffix, fixed, matrix in self._dvc_variants(name):
                stages[name + suffix] = self._dvc_stage(name, fixed, matrix)
        # every figure not drawn per set, for `dvc plots show` and `dvc plots diff <rev>`
        plots = [p for name, s in STAGES.items() for o in s.outs if o.endswith(".png") and "{set}" not in o
                 for p in self.owner(name).expand(o)]
        return {"stages": stages, "plots": plots}

    def _dvc_variants(self, name: str) -> list[tuple[str, dict, dict]]:
        """[(stage-name suffix, {field: fixed text}, {matrix field: values or '${params key}'})] for one stage."""
        s, owner = STAGES[name], self.owner(name)
        grid = {f: owner._dvc_values(f) for f in s.matrix if f != "set"}
        if "set" not in s.matrix:
            return [("", {}, grid)]
        chosen = owner.layer_key("downstream.sets") if name == "train_classifier" else None
        if chosen:  # the profile names its sets
            return [("", {}, {**grid, "set": f"${{{chosen}}}"})]
        gen = owner.generator
        variants = []
        for g in gen.config.profile.sampling.scales:
            if g == "none":
                variants.append(("_none", {"set": "none"}, grid))
            else:
                scales = gen.layer_key(f"sampling.scales.{g}")
                variants.append((f"_{g}", {"set": f"{g}-s${{item.scale}}"}, {**grid, "scale": f"${{{scales}}}"}))
        return variants

    def _dvc_values(self, field: str):
        """A matrix field's values: the params key DVC reads them from (networks, seeds), else the list."""
        key = {"network": "downstream.networks", "seed": "downstream.seeds"}.get(field)
        found = self.layer_key(key) if key else None
        return f"${{{found}}}" if found else self.values[field]

    def _layers(self) -> list[tuple[str, dict]]:
        """params.yaml's layers of this profile, each with its key prefix: the defaults, the generator's, its own."""
        raw = self.config.params
        return [("defaults", raw.defaults)] + [
            (f"profiles.{g}", raw.profiles[g]) for g in (self.config.profile.generator, self.profile) if g]

    def layer_key(self, dotted: str) -> str | None:
        """The params.yaml key that sets `dotted` for this profile: its own override, its generator's, or the
        defaults' (None where only the code's default sets it)."""
        for prefix, tree in reversed(self._layers()):
            if lookup(tree, dotted) is not MISSING:
                return f"{prefix}.{dotted}"
        return None

    def _dvc_stage(self, name: str, fixed: dict, matrix: dict) -> dict:
        s, owner = STAGES[name], self.owner(name)

        def sub(pattern: str) -> str:
            for k, v in fixed.items():
                pattern = pattern.replace("{" + k + "}", v)
            return dvc_fields(pattern, tuple(matrix))

        entry: dict = {"cmd": self.command(name, args=sub(s.args))}
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
        deps = list(dict.fromkeys(deps)) + self.code(name)
        if deps:
            body["deps"] = deps
        raw_keys = owner._param_keys(s, tuple(matrix))
        if raw_keys:
            body["params"] = [{self.params_file: raw_keys}]
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
        if s.metrics:
            body["metrics"] = [{sub(m): {"cache": False}} for m in owner.expand(s.metrics, keep)]
        return entry

    def _param_keys(self, s: Stage, matrix: tuple[str, ...]) -> list[str]:
        """The params.yaml keys behind a stage's settings that exist in the file (DVC wants real keys)."""
        keys = []
        for key in s.params:
            if key == DATASET:
                keys.append(dvc_fields(key, matrix))
                continue
            ignored = {i.removeprefix(key + ".") for i in s.ignore if i.startswith(key + ".")}
            for prefix, tree in self._layers():
                node = lookup(tree, key)
                if node is MISSING:
                    continue
                if ignored and isinstance(node, dict):  # the section's other keys, one by one
                    keys += [f"{prefix}.{key}.{sub}" for sub in node if sub not in ignored]
                else:
                    keys.append(f"{prefix}.{key}")
        return keys


MISSING = object()


def lookup(tree: dict, dotted: str):
    """Return tree["a"]["b"] for "a.b", or MISSING."""
    for k in dotted.split("."):
        if not isinstance(tree, dict) or k not in tree:
            return MISSING
        tree = tree[k]
    return tree
