"""`mgdm plan`: the jobs of a profile and a rough estimate of their time, before anything runs.

The unit costs were measured on 2 cores of the development machines (fp32): a 1.1 M-parameter UNet
at 28 px trains at 0.55 s per batch of 64 and runs a forward of 50 images in 0.14 s; ResNet-18 with
the 3x3 stem trains at about 25 ms per 28 px image and epoch; sampling costs come from the committed
`cpu` run's sample jobs (1 thread each), downstream networks' from `mgdm survey-zoo` where it has run.
Other sizes are scaled by pixels, batch and parameters, so the figures are a guide, not a promise; the
total is job time, and the wall clock is those jobs scheduled on the cores as Snakemake starts them; real
wall clocks are in each stage's metrics JSON and the Snakemake benchmark files.
"""

from __future__ import annotations

import heapq
from collections import Counter
from pathlib import Path

from mgdm.config import load, parse_set_name, set_multiple
from mgdm.workflow.stages import STAGES, ZOO_RECORD, ZOO_RUNS
from mgdm.workflow.plan import Plan

UNET_STEP_S = 0.55 / (64 * 28 * 28 * 1.1e6)  # per image-pixel-parameter
UNET_FORWARD_S = 0.14 / (50 * 28 * 28 * 1.1e6)  # the DDPM's fidelity probe, at its 2 threads
# A `sample` job runs at 1 thread (two side by side): an unguided DDIM step of one image, per pixel and UNet
# parameter, and each sampler's cost in unguided steps, from the committed `cpu` run's sample jobs
# (results/cpu/records/images.json, 200 images x 50 steps, less JOB_OVERHEAD_S: none 64 s, the four
# measure-guided sets 88-112 s, cfg 104, mgdm 276, the two BALD sets 745 and 829); the old constants (the
# 2-thread forward, 1.4 passes for guidance, 4.2 for BALD) priced that stage at 11 min against its 41
# (tests/test_pipeline.py)
UNET_SAMPLE_S = 64.0 / (200 * 50 * 28 * 28 * 1.115e6)
CLASSIFIER_IMAGE_EPOCH_S = 0.025 / (28 * 28)
GUIDANCE_STEP_S = 0.35  # width 32, batch 64, 28 px
JOB_OVERHEAD_S = 6.0  # python, torch and mlflow imports, logging
PROBE_SCORE_S = 3.0  # reference-net features and metrics of one probe
FIDELITY_CALL_S = 4.0  # one torch-fidelity call (IS, FID, KID, PR) of ~200 images against cached real features
SAMPLER_PASSES = {"none": 1.0, "classifier": 1.6, "entropy": 1.6, "margin": 1.6, "leastconf": 1.6, "cfg": 1.6,
                  "bald": 12.3,  # 8 MC-dropout passes of the guidance net, each differentiated
                  "mgdm": 4.3}  # stage 1 (cfg), inversion, guided decode


def unet_parameters(cfg, image_size: int, channels: int, num_classes: int) -> float:
    """The UNet's parameter count (built on the meta device: no memory, no time)."""
    import torch

    from mgdm.diffusion.unet import make_unet, unet_config

    with torch.device("meta"):
        return float(sum(t.numel() for t in make_unet(unet_config(cfg, image_size, channels, num_classes)).parameters()))


def dataset_size(spec, data_dir: str | None) -> tuple[int, int] | None:
    """Return (training images, classes) of a dataset without preprocessing it, or None if unknown."""
    import numpy as np

    if spec.source == "procedural":
        return spec.n_train, spec.num_classes
    if spec.source == "medmnist" and data_dir and (Path(data_dir) / spec.file).exists():
        with np.load(Path(data_dir) / spec.file) as f:
            labels = f["train_labels"]
        return len(labels), int(labels.max()) + 1
    return None


def survey_costs(root: str, dataset: str) -> dict[str, float]:
    """Seconds per epoch of each network `mgdm survey-zoo` surveyed under `root` on `dataset`: its JSONs,
    else its committed record (a fresh clone has only the record)."""
    from mgdm.files import read_json  # here: mgdm.files imports torch, which the Snakefile (group_priority) need not

    path, costs = Path(root) / ZOO_RECORD, {}
    record = read_json(path) if path.exists() else {"dataset": None}
    if record["dataset"] == dataset:
        costs = {r["network"]: r["s_per_epoch"] for r in record["networks"]}
    runs = Path(root) / ZOO_RUNS.format(dataset=dataset)
    costs.update({f.stem: read_json(f)["s_per_epoch"] for f in runs.glob("*.json")})
    return costs


def network_costs(plan: Plan, dataset: str, n_train: int) -> tuple[dict[str, float], dict[str, str]]:
    """Seconds per training image and epoch of each of the profile's downstream networks on `dataset`, and for
    the measured ones where they were measured ("<profile folder>", or "<profile folder> on <dataset>" for
    another dataset). Measured by `mgdm survey-zoo` where it has run on this dataset (this profile's survey
    first, then its generator's, then another profile's record; at the thread count it ran with; the committed
    record where the per-network JSONs are not here); else its cost per image in a survey on another dataset of
    the same image size whose training split is here to count (`architectures-pneumonia`'s seven networks
    surveyed only on RetinaMNIST: 6,335 s priced, 6,585 s measured, 0.91-1.24x a network, where the ResNet-18
    constant said 33,869 s); else the ResNet-18 constant."""
    own = dict.fromkeys([plan.generator.root, plan.root])  # one root where the profile is its own generator
    roots = [*sorted({str(r.parents[1]) for r in Path(plan.root).parent.glob(f"*/{ZOO_RECORD}")} - set(own)), *own]
    cfg = plan.config
    size = cfg.dataset(dataset).image_size
    networks = cfg.profile.downstream.networks
    costs, source = {}, {}
    for root in roots:  # each survey read once; the later wins
        found = {n: c / n_train for n, c in survey_costs(root, dataset).items()}
        costs.update(found)
        source.update(dict.fromkeys(found, root))
    missing = set(networks) - set(costs)  # other datasets' surveys (and their splits) are read only for these
    others = [d for d in cfg.params.datasets if d != dataset and cfg.dataset(d).image_size == size] if missing else []
    for other in others:
        counted = dataset_size(cfg.dataset(other), cfg.data_dir())
        for root in roots if counted else []:
            found = {n: c / counted[0] for n, c in survey_costs(root, other).items() if n in missing}
            costs.update(found)
            source.update(dict.fromkeys(found, f"{root} on {other}"))
    return ({n: costs.get(n, CLASSIFIER_IMAGE_EPOCH_S * size ** 2) for n in networks},
            {n: source[n] for n in networks if n in costs})


def group_priority(plan: Plan, dataset: str, network: str) -> float:
    """Snakemake's priority for a network's train_group job: 0 for the dearest network, its cost ratio to the
    dearest minus 1 for the others, so the longest groups start first and unequal groups sharing a few cores
    end nearer together (longest processing time first). Every group of a dataset trains on the same images,
    so a group's cost is its network's cost per image and epoch times a constant."""
    size = dataset_size(plan.config.dataset(dataset), plan.config.data_dir())
    costs, _ = network_costs(plan, dataset, size[0] if size else 2000)
    return relative_cost(costs, network)


def relative_cost(costs: dict[str, float], network: str) -> float:
    """A network's cost over the dearest's, minus 1: 0 for the dearest, down towards -1."""
    return costs[network] / max(costs.values()) - 1


def stage_needs(stages) -> dict[str, set[str]]:
    """Which of `stages` each one waits for: those that write a file it reads (from the stage table)."""
    made = {p: name for name in stages for p in (*STAGES[name].outs, *STAGES[name].metric_files)}
    return {name: {made[d] for d in STAGES[name].deps if d in made} - {name} for name in stages}


def makespan(jobs: list[tuple[str, str | None, float, int, float]], cores: int) -> float:
    """Wall clock of `jobs`, each (stage, dataset, seconds, threads, priority), on `cores` as Snakemake starts
    them: whenever cores are free, the ready job of highest priority (then the longest) that fits, a job being
    ready once every job of the stages it reads from (of its dataset; all of them for a job of none) has
    finished. Stage-level dependencies: a job that reads one synthetic set waits for every set."""
    needs = stage_needs(list(dict.fromkeys(stage for stage, *_ in jobs)))
    left = Counter((stage, dataset) for stage, dataset, *_ in jobs)  # unfinished jobs, per stage and dataset
    left_any = Counter(stage for stage, *_ in jobs)  # and per stage, for a job of every dataset (the report)
    pending = sorted(range(len(jobs)), key=lambda i: (-jobs[i][4], -jobs[i][2]))
    running: list[tuple[float, int]] = []
    free, now = cores, 0.0

    def ready(stage, dataset):
        return not any(left_any[n] if dataset is None else left[n, dataset] for n in needs[stage])

    while pending or running:
        for i in list(pending):
            stage, dataset, seconds, threads, _ = jobs[i]
            if min(threads, cores) <= free and ready(stage, dataset):
                heapq.heappush(running, (now + seconds, i))
                free -= min(threads, cores)
                pending.remove(i)
        now, i = heapq.heappop(running)
        free += min(jobs[i][3], cores)
        left[jobs[i][0], jobs[i][1]] -= 1
        left_any[jobs[i][0]] -= 1
    return now


def estimate(plan: Plan, data_dir: str | None = None, cores: int = 2) -> str:
    """Return a table of jobs per stage with estimated seconds, the total, and the wall clock on `cores`."""
    cfg, p = plan.config, plan.config.profile
    jobs, notes = [], []  # (stage, dataset, seconds, threads, priority)

    def add(stage, dataset, seconds, priority=None):
        jobs.append((stage, dataset, seconds + JOB_OVERHEAD_S, STAGES[stage].threads,
                     STAGES[stage].priority if priority is None else priority))

    for d in p.datasets:
        spec = cfg.dataset(d)
        px = spec.image_size ** 2
        size = dataset_size(spec, data_dir)
        if size is None:
            size = (2000, 5)
            notes.append(f"{d}: data not found, assumed 2000 training images in 5 classes")
        n_train, k = size
        params = unet_parameters(p.ddpm, spec.image_size, 3, k)
        sets, trained = cfg.sample_sets(), cfg.downstream_sets()
        # images per set: per_class of each class, or a sized set's multiple of the training split
        size_of = {s: p.sampling.per_class * k if set_multiple(s) is None else set_multiple(s) * n_train
                   for s in {*sets, *trained}}
        forward = UNET_FORWARD_S * px * params
        if p.generator and Path(plan.metrics_path("analyze", dataset=d)).exists():
            notes.append(f"{d}: images already made by profile {p.generator!r} (not counted)")
        else:
            add("preprocess", d, 2)
            add("train_ddpm", d, p.ddpm.steps * UNET_STEP_S * p.ddpm.batch_size * px * params
                # the fidelity probe: every probe_every steps and at the end, plain DDIM of probe_images
                + (p.ddpm.steps // p.ddpm.probe_every if p.ddpm.probe_every else 1)
                * (p.ddpm.probe_steps * p.ddpm.probe_images * forward + PROBE_SCORE_S))
            add("train_guidance_net", d, p.guidance_net.steps * GUIDANCE_STEP_S * p.guidance_net.batch_size / 64
                * px / 784 * (p.guidance_net.width / 32) ** 2)
            add("train_reference_net", d, p.reference_net.epochs * n_train * CLASSIFIER_IMAGE_EPOCH_S * px)
            for s in sets:
                add("sample", d, SAMPLER_PASSES[parse_set_name(s)[0]] * size_of[s] * p.sampling.ddim_steps
                    * UNET_SAMPLE_S * px * params)
                add("fidelity", d, FIDELITY_CALL_S * 4)  # the set and three floor draws
            add("analyze", d, 10)
        image_epoch_s, source = network_costs(plan, d, n_train)
        here = [n for n, where in source.items() if " on " not in where]
        if here:
            elsewhere = sorted({source[n] for n in here} - {plan.generator.root, plan.root})
            notes.append(f"{d}: downstream cost of {', '.join(here)} from the zoo survey"
                         + (f" ({', '.join(elsewhere)}: another profile's)" if elsewhere else ""))
        there = [n for n in source if n not in here]
        if there:
            notes.append(f"{d}: downstream cost of {', '.join(there)} per image from the zoo survey on another "
                         f"dataset ({', '.join(sorted({source[n] for n in there}))})")
        epochs, seeds = p.downstream.epochs, p.downstream.seeds
        for n, cost in image_epoch_s.items():
            runs = [("train_baseline", epochs * n_train * cost)] + [
                ("train_classifier", epochs * (n_train + size_of[s]) * cost) for s in trained]
            if p.downstream.grouped:  # the same training, one job per network, the dearest started first
                add("train_group", d, len(seeds) * sum(seconds for _, seconds in runs),
                    relative_cost(image_epoch_s, n))
            else:
                for stage, seconds in runs * len(seeds):
                    add(stage, d, seconds)
    add("report", None, 5)
    totals: dict[str, list[float]] = {}
    for stage, _, seconds, _, _ in jobs:
        t = totals.setdefault(stage, [0, 0.0])
        t[0] += 1
        t[1] += seconds
    lines = [f"profile {plan.profile}: datasets {list(p.datasets)}, {len(cfg.downstream_sets())} synthetic sets, "
             f"networks {list(p.downstream.networks)}, seeds {list(p.downstream.seeds)}", "",
             f"{'stage':<22}{'jobs':>6}{'est. minutes':>14}"]
    for stage in STAGES:
        if stage in totals:
            lines.append(f"{stage:<22}{totals[stage][0]:>6}{totals[stage][1] / 60:>14.1f}")
    total = sum(t[1] for t in totals.values())
    wall = makespan(jobs, cores)
    if p.device != "cpu":  # the unit costs are CPU measurements: they price no card
        notes.append(f"device {p.device}: the minutes here are what CPU cores would take; `mgdm benchmark --profile "
                     f"{plan.profile} --device {p.device}` measures the card and prices its downstream grid")
    lines += [""] + notes + [f"total: about {total / 60:.0f} min of job time (on CPU cores), about "
                             f"{wall / 60:.0f} min of wall clock with --cores {cores} (the jobs scheduled as "
                             "Snakemake starts them: by priority, each when what it reads is made)"]
    return "\n".join(lines)


def main(a) -> int:
    config = load(a.params, a.profile)
    print(estimate(Plan(config, a.params), config.data_dir(), a.cores))
    return 0
