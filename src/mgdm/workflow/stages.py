"""The one table of stages, from which the Snakemake rules, dvc.yaml and the CLI's output paths are written.

Each stage names its matrix (the wildcards it runs over), its command, what it reads and what it writes,
and its module (mgdm.stages.<name>: its CLI handler and its `run`). Placeholders in a path that are not in
the stage's matrix are expanded over all their values (a stage that gathers, like `analyze` over every
synthetic set). So the two workflow managers and the code cannot drift apart.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field


TABLES = ("downstream", "paired", "claims", "fidelity", "distribution", "guidance_net", "runtime")
# `mgdm survey-zoo` under a profile's root: one JSON per surveyed network (not committed), and the committed
# record of them all, from which its table is built and `mgdm plan` prices networks
ZOO_RUNS = "{dataset}/zoo"
ZOO_RECORD = "records/zoo.json"


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
    run_metrics: tuple[str, ...] = ()  # each run's metrics JSON, for a stage that runs several (train_group)
    threads: int = 1
    priority: int = 0  # Snakemake starts higher first: the DDPM is the long pole of every DAG
    # jobs of unequal cost (train_group: one per network): Snakemake starts the dearest first, by the cost
    # `mgdm plan` prices (mgdm.workflow.estimate.group_priority; longest processing time first: a few cores end
    # nearer together)
    longest_first: bool = False
    on_device: bool = True  # computes on the profile's device (preprocess and report never touch it)

    @property
    def metric_files(self) -> tuple[str, ...]:
        """Every metrics JSON the stage writes: each run's (a stage that runs several), then its own."""
        return (*self.run_metrics, *filter(None, [self.metrics]))

    @property
    def module(self) -> str:
        """The module holding the stage's CLI handler (`main`) and its `run`."""
        return f"mgdm.stages.{self.name}"


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

# which downstream jobs exist, not how one trains (its network, set and seed are in its wildcards); and how
# often a run keeps its resume state, which its result does not depend on
GRID = ("downstream.networks", "downstream.seeds", "downstream.sets", "downstream.checkpoint_s", "downstream.grouped")
RUNS = f"{R}/downstream/{{network}}"  # a network's runs: real/seed0.json, entropy-s2/seed0.json, ...
BASELINE_RUN, CLASSIFIER_RUN = f"{RUNS}/real/seed{{seed}}", f"{RUNS}/{{set}}/seed{{seed}}"  # + _test.npz, .json

STAGES = {s.name: s for s in [
    Stage("preprocess", ("dataset",), "--dataset {dataset}", (),
          (DATA, f"{D}/data/preview.png"), f"{D}/data/summary.json", (DATASET,), on_device=False),
    Stage("train_ddpm", ("dataset",), "--dataset {dataset}", (DATA, REFERENCE_NET),
          (DDPM, f"{D}/ddpm/model.json"), f"{D}/ddpm/metrics.json",
          ("ddpm", "sampling.seed", "analysis.knn_k"), threads=2, priority=10),  # the last two: its fidelity probe
    Stage("train_guidance_net", ("dataset",), "--dataset {dataset}", (DATA,),
          (GUIDANCE_NET, f"{D}/guidance_net/model.json"), f"{D}/guidance_net/metrics.json", ("guidance_net", *SCHEDULE),
          priority=5),
    Stage("train_reference_net", ("dataset",), "--dataset {dataset}", (DATA,),
          (REFERENCE_NET, f"{D}/reference_net/model.json"), f"{D}/reference_net/metrics.json", ("reference_net",),
          ignore=("reference_net.checkpoint_s",)),
    Stage("sample", ("dataset", "set"), "--dataset {dataset} --set {set}", (DATA, DDPM, GUIDANCE_NET),
          (SAMPLES, f"{D}/samples/{{set}}.png"), f"{D}/samples/{{set}}.json", ("sampling",),
          # the scale grid says which sets exist; a set's own guidance and scale are in its name
          # 1 thread: two sets side by side, bit-identical to one 2-thread set at a time; the cpu profile's
          # 9 sets under `snakemake --cores 2` took 1508 s instead of 1733 (README, Speed)
          ignore=("sampling.scales", "sampling.sized_sets", "sampling.redraws"), priority=5),
    Stage("fidelity", ("dataset", "set"), "--dataset {dataset} --set {set}", (DATA, SAMPLES, REFERENCE_NET),
          (), f"{D}/fidelity/{{set}}.json", ("fidelity",)),
    Stage("train_baseline", ("dataset", "network", "seed"), "--dataset {dataset} --network {network} --seed {seed}",
          (DATA,), (f"{BASELINE_RUN}_test.npz",), f"{BASELINE_RUN}.json", ("downstream",), ignore=GRID),
    Stage("train_classifier", ("dataset", "network", "set", "seed"),
          "--dataset {dataset} --network {network} --set {set} --seed {seed}", (DATA, SAMPLES),
          (f"{CLASSIFIER_RUN}_test.npz",), f"{CLASSIFIER_RUN}.json", ("downstream",), ignore=GRID),
    # the two above as one job per network (profiles with `downstream.grouped`): every run's files, as they write
    Stage("train_group", ("dataset", "network"), "--dataset {dataset} --network {network}", (DATA, SAMPLES),
          (f"{BASELINE_RUN}_test.npz", f"{CLASSIFIER_RUN}_test.npz"), f"{RUNS}/group.json", ("downstream",),
          ignore=GRID, run_metrics=(f"{BASELINE_RUN}.json", f"{CLASSIFIER_RUN}.json"), longest_first=True),
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
          + ("{root}/figures/downstream.png", "{root}/figures/fidelity_vs_downstream.png",
             "{root}/figures/quantity.png"),
          "{root}/tables/report.json", ("sampling.mgdm.measure", "inference"),
          committed=("records", "tables", "figures"), on_device=False),
]}


def fields(pattern: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(pattern) if f]


PER_RUN = ("train_baseline", "train_classifier")  # a grouped profile runs train_group instead


GENERATOR_STAGES = ("preprocess", "train_ddpm", "train_guidance_net", "train_reference_net", "sample", "fidelity",
                    "analyze")
