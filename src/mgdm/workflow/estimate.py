"""`mgdm plan`: the jobs of a profile and a rough estimate of their time, before anything runs.

The unit costs were measured on 2 cores of the development machines (fp32): a 1.1 M-parameter UNet
at 28 px trains at 0.55 s per batch of 64 and runs a forward of 50 images in 0.14 s; ResNet-18 with
the 3x3 stem trains at about 25 ms per 28 px image and epoch; sampling costs come from the committed
`cpu` run's sample jobs (1 thread each), downstream networks' from `mgdm survey-zoo` where it has run.
Other sizes are scaled by pixels, batch and parameters, so the figures are a guide, not a promise; the
total is job time, which jobs side by side share; real wall clocks are in each stage's metrics JSON and
the Snakemake benchmark files.
"""

from __future__ import annotations

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
    the measured ones the profile folder whose survey measured them. Measured by `mgdm survey-zoo` where it has
    run on this dataset (this profile's survey first, then its generator's, then another profile's record; at
    the thread count it ran with; the committed record where the per-network JSONs are not here), else the
    ResNet-18 constant."""
    own = dict.fromkeys([plan.generator.root, plan.root])  # one root where the profile is its own generator
    others = sorted({str(r.parents[1]) for r in Path(plan.root).parent.glob(f"*/{ZOO_RECORD}")} - set(own))
    costs, source = {}, {}
    for root in [*others, *own]:  # each survey read once; the later wins
        found = survey_costs(root, dataset)
        costs.update(found)
        source.update(dict.fromkeys(found, root))
    px = plan.config.dataset(dataset).image_size ** 2
    networks = plan.config.profile.downstream.networks
    return ({n: costs[n] / n_train if n in costs else CLASSIFIER_IMAGE_EPOCH_S * px for n in networks},
            {n: source[n] for n in networks if n in costs})


def group_priority(plan: Plan, dataset: str, network: str) -> float:
    """Snakemake's priority for a network's train_group job: 0 for the dearest network, its cost ratio to the
    dearest minus 1 for the others, so the longest groups start first and unequal groups sharing a few cores
    end nearer together (longest processing time first). Every group of a dataset trains on the same images,
    so a group's cost is its network's cost per image and epoch times a constant."""
    size = dataset_size(plan.config.dataset(dataset), plan.config.data_dir())
    costs, _ = network_costs(plan, dataset, size[0] if size else 2000)
    return costs[network] / max(costs.values()) - 1


def estimate(plan: Plan, data_dir: str | None = None) -> str:
    """Return a table of jobs per stage with estimated seconds, and the total."""
    cfg, p = plan.config, plan.config.profile
    rows, notes = [], []
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
        generator_rows = [
            ("preprocess", 1, 2),
            ("train_ddpm", 1, p.ddpm.steps * UNET_STEP_S * p.ddpm.batch_size * px * params
             # the fidelity probe: every probe_every steps and at the end, plain DDIM of probe_images
             + (p.ddpm.steps // p.ddpm.probe_every if p.ddpm.probe_every else 1)
             * (p.ddpm.probe_steps * p.ddpm.probe_images * forward + PROBE_SCORE_S)),
            ("train_guidance_net", 1, p.guidance_net.steps * GUIDANCE_STEP_S * p.guidance_net.batch_size / 64
             * px / 784 * (p.guidance_net.width / 32) ** 2),
            ("train_reference_net", 1, p.reference_net.epochs * n_train * CLASSIFIER_IMAGE_EPOCH_S * px),
            ("sample", len(sets), sum(SAMPLER_PASSES[parse_set_name(s)[0]] * size_of[s] for s in sets)
             * p.sampling.ddim_steps * UNET_SAMPLE_S * px * params),
            ("fidelity", len(sets), FIDELITY_CALL_S * 4 * len(sets)),  # the set and three floor draws
            ("analyze", 1, 10),
        ]
        if p.generator and Path(plan.metrics_path("analyze", dataset=d)).exists():
            notes.append(f"{d}: images already made by profile {p.generator!r} (not counted)")
        else:
            rows += generator_rows
        image_epoch_s, source = network_costs(plan, d, n_train)
        if source:
            elsewhere = sorted(set(source.values()) - {plan.generator.root, plan.root})
            notes.append(f"{d}: downstream cost of {', '.join(source)} from the zoo survey"
                         + (f" ({', '.join(elsewhere)}: another profile's)" if elsewhere else ""))
        seeds, per_net = len(p.downstream.seeds), sum(image_epoch_s.values())
        runs = [("train_baseline", len(p.downstream.networks) * seeds, seeds * p.downstream.epochs * n_train * per_net),
                ("train_classifier", len(p.downstream.networks) * seeds * len(trained),
                 seeds * p.downstream.epochs * sum(n_train + size_of[s] for s in trained) * per_net)]
        if p.downstream.grouped:  # the same training, one job per network
            runs = [("train_group", len(p.downstream.networks), sum(seconds for _, _, seconds in runs))]
        rows += runs
    rows.append(("report", 1, 5))
    totals: dict[str, list[float]] = {}
    for stage, jobs, seconds in rows:
        t = totals.setdefault(stage, [0, 0.0])
        t[0] += jobs
        t[1] += seconds + jobs * JOB_OVERHEAD_S
    lines = [f"profile {plan.profile}: datasets {list(p.datasets)}, {len(cfg.downstream_sets())} synthetic sets, "
             f"networks {list(p.downstream.networks)}, seeds {list(p.downstream.seeds)}", "",
             f"{'stage':<22}{'jobs':>6}{'est. minutes':>14}"]
    for stage in STAGES:
        if stage in totals:
            lines.append(f"{stage:<22}{totals[stage][0]:>6}{totals[stage][1] / 60:>14.1f}")
    total = sum(t[1] for t in totals.values())
    # with --cores 2, 1-thread jobs run two side by side and the 2-thread DDPM alone: the cores' busy time
    # over two (the dependencies between stages ignored)
    wall = sum(t[1] * min(STAGES[stage].threads, 2) for stage, t in totals.items()) / 2
    lines += [""] + notes + [f"total: about {total / 60:.0f} min of job time (device {p.device}), about "
                             f"{wall / 60:.0f} min of wall clock with --cores 2"]
    return "\n".join(lines)


def main(a) -> int:

    config = load(a.params, a.profile)
    print(estimate(Plan(config, a.params), config.data_dir()))
    return 0
