"""The stage table resolved for one profile: wildcard values, file paths, commands, settings and code.

The generator stages belong to `Plan.generator`: a Plan of the profile named by `generator` (or of this
profile), so a study profile reuses another profile's images as they are.
"""

from __future__ import annotations

import functools
import itertools
import json
import re

from mgdm.config import Config
from mgdm.workflow.sources import stage_sources
from mgdm.workflow.stages import DATASET, GENERATOR_STAGES, PER_RUN, STAGES, fields


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
        """Return every file the stage writes (outs, each run's metrics JSON, its own), with its wildcards left in."""
        s = STAGES[stage]
        return [p for o in (*s.outs, *s.metric_files) for p in self.expand(o, s.matrix)]

    def paths(self, stage: str, **wildcards) -> dict[str, str]:
        """Return {file name: path} of one job's outputs, e.g. {"model.safetensors": "results/..."}."""
        paths = (p.format(**wildcards) for p in self.outputs(stage))
        return {path.rsplit("/", 1)[-1]: path for path in paths}

    def dataset_file(self, name: str) -> str:
        """The preprocessed dataset (its splits) every stage reads."""
        return self.paths("preprocess", dataset=name)["dataset.npz"]

    def metrics_path(self, stage: str, **wildcards) -> str:
        return self.fill_roots(STAGES[stage].metrics).format(**wildcards)

    def fill_roots(self, pattern: str) -> str:
        return pattern.replace("{root}", self.root).replace("{gen}", self.generator.root)

    def owner(self, stage: str) -> "Plan":
        return self.generator if stage in GENERATOR_STAGES else self

    @property
    def stages(self) -> list[str]:
        """The stages this profile runs: the downstream runs one job each, or one job per network (grouped)."""
        skip = PER_RUN if self.config.profile.downstream.grouped else ("train_group",)
        return [s for s in STAGES if s not in skip]

    def targets(self) -> list[str]:
        """Return every file of every job: what `snakemake` (rule all) builds."""
        return list(dict.fromkeys(p for s in self.stages for o in self.outputs(s) for p in self.owner(s).expand(o)))

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
        """The source files the stage runs (mgdm.workflow.sources): editing one reruns the stage and what follows."""
        return stage_sources().get(stage, [])

    def wildcard_constraints(self) -> dict[str, str]:
        values = {k: list(dict.fromkeys(v + self.generator.values[k])) for k, v in self.values.items()}
        return {k: "|".join(re.escape(v) for v in vals) for k, vals in values.items()}

MISSING = object()


def lookup(tree: dict, dotted: str):
    """Return tree["a"]["b"] for "a.b", or MISSING."""
    for k in dotted.split("."):
        if not isinstance(tree, dict) or k not in tree:
            return MISSING
        tree = tree[k]
    return tree
