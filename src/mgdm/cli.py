"""`mgdm <stage>`: the one way every stage runs, for Snakemake, DVC and people alike.

The CLI parses, loads and validates params.yaml, resolves paths from the stage table, calls the
stage's `run` function with plain arguments, writes the stage's metrics JSON (with its wall clock)
and logs the run to MLflow. On failure it prints what went wrong, removes the job's outputs and
exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from mgdm.config import ConfigError, load
from mgdm.pipeline import DATA, SAMPLES, STAGES, Plan


def _dataset(plan: Plan, name: str):
    from mgdm.data.splits import Dataset

    return Dataset(plan.paths("preprocess", dataset=name)["dataset.npz"])


def stage_preprocess(config, plan, a):
    from mgdm.data.preprocess import run

    out = plan.paths("preprocess", dataset=a.dataset)
    return run(a.dataset, config.dataset(a.dataset), config.data_dir(), Path(out["dataset.npz"]).parent), \
        [out["preview.png"]]


def stage_train_ddpm(config, plan, a):
    from mgdm.diffusion.train import run

    from mgdm.metrics.probe import FidelityProbe

    out = plan.paths("train_ddpm", dataset=a.dataset)
    p, dataset = config.profile, _dataset(plan, a.dataset)
    reference = plan.paths("train_reference_net", dataset=a.dataset)["model.safetensors"]
    probe = FidelityProbe(dataset, reference, p.ddpm.probe_images, p.ddpm.probe_steps, p.sampling.seed, p.device,
                          p.analysis.knn_k)
    return run(dataset, p.ddpm, out["model.safetensors"], p.ddpm.seed, p.device, a.progress, probe), []


def stage_train_guidance_net(config, plan, a):
    from mgdm.guidance.train import run

    out = plan.paths("train_guidance_net", dataset=a.dataset)
    p = config.profile
    return run(_dataset(plan, a.dataset), p.guidance_net, p.ddpm, out["model.safetensors"], p.guidance_net.seed,
               p.device, a.progress), []


def stage_train_reference_net(config, plan, a):
    from mgdm.classifiers.stage import run

    out = plan.paths("train_reference_net", dataset=a.dataset)
    cfg = config.profile.reference_net
    return run(_dataset(plan, a.dataset), cfg.network, cfg, cfg.seed, model_path=out["model.safetensors"],
               device=config.profile.device, progress=a.progress,
               resume_path=Path(out["model.safetensors"]).with_name("resume.safetensors")), []


def stage_sample(config, plan, a):
    from mgdm.sampling.stage import run

    import numpy as np

    dataset = _dataset(plan, a.dataset)
    out = plan.paths("sample", dataset=a.dataset, set=a.set)
    counts = np.bincount(dataset.numpy("train")[1], minlength=dataset.num_classes).tolist()
    ddpm = plan.paths("train_ddpm", dataset=a.dataset)["model.safetensors"]
    guidance = plan.paths("train_guidance_net", dataset=a.dataset)["model.safetensors"]
    result = run(ddpm, guidance, a.set, config.profile.sampling, counts, out[f"{a.set}.npz"], out[f"{a.set}.png"],
                 config.profile.device, a.progress)
    return result, [out[f"{a.set}.png"]]


def stage_fidelity(config, plan, a):
    from mgdm.metrics.fidelity import run

    samples = plan.paths("sample", dataset=a.dataset, set=a.set)[f"{a.set}.npz"]
    reference = plan.paths("train_reference_net", dataset=a.dataset)["model.safetensors"]
    return run(_dataset(plan, a.dataset), samples, reference, config.profile.fidelity, config.profile.device), []


def _downstream_files(plan, stage: str, a) -> dict:
    """A downstream job's test-prediction file and its resume state (beside its metrics JSON)."""
    wildcards = {k: getattr(a, k) for k in STAGES[stage].matrix}
    out = plan.paths(stage, **wildcards)
    return {"predictions_path": out[f"seed{a.seed}_test.npz"],
            "resume_path": out[f"seed{a.seed}.json"].replace(".json", ".resume.safetensors")}


def stage_train_baseline(config, plan, a):
    from mgdm.classifiers.stage import run

    return run(_dataset(plan, a.dataset), a.network, config.profile.downstream, a.seed,
               device=config.profile.device, progress=a.progress, **_downstream_files(plan, "train_baseline", a)), []


def stage_train_classifier(config, plan, a):
    from mgdm.classifiers.stage import run

    samples = plan.paths("sample", dataset=a.dataset, set=a.set)[f"{a.set}.npz"]
    return run(_dataset(plan, a.dataset), a.network, config.profile.downstream, a.seed, samples,
               device=config.profile.device, progress=a.progress, **_downstream_files(plan, "train_classifier", a)), []


def stage_analyze(config, plan, a):
    from mgdm.analysis.distribution import run

    out = plan.paths("analyze", dataset=a.dataset)
    sets = {s: plan.paths("sample", dataset=a.dataset, set=s)[f"{s}.npz"] for s in config.sample_sets()}
    figures = {k: out[f"{a.dataset}_{k}.png"] for k in ("entropy", "embedding", "samples")}
    reference = plan.paths("train_reference_net", dataset=a.dataset)["model.safetensors"]
    result = run(_dataset(plan, a.dataset), reference, sets, config.profile.analysis, figures, config.profile.device)
    return result, list(figures.values())


def _chosen(config, a, option: str) -> list:
    """--seeds / --networks: a part of downstream.<option> (default: all of it); anything else is refused."""
    allowed = list(getattr(config.profile.downstream, option))
    picked = getattr(a, option) or allowed
    if not set(picked) <= set(allowed):
        raise ConfigError(f"{a.params} (profile {config.profile.name!r}): --{option} {picked} not among "
                          f"downstream.{option} {allowed}")
    return picked


def stage_report(config, plan, a):
    from mgdm.analysis.tables import Report, build, collect

    out = plan.paths("report")
    p = config.profile
    figures = {k: out[f"{k}.png"] for k in ("downstream", "fidelity_vs_downstream")}
    records = Path(out["runs.csv"]).parent
    if not a.from_records:
        def predictions(stage, **w):
            return plan.paths(stage, **w)[f"seed{w['seed']}_test.npz"]

        collect(list(p.datasets), plan.values["set"], _chosen(config, a, "networks"), _chosen(config, a, "seeds"),
                {d: config.dataset(d).image_size for d in p.datasets}, p.downstream.epochs, plan.metrics_path,
                predictions, records, a.images_only)
    report = Report(p.name, p.sampling.mgdm.measure, p.inference.margin, p.inference.alpha)
    result = build(report, records, Path(out["downstream.md"]).parent, figures, a.images_only)
    if a.images_only:
        return result, []
    return result, list(figures.values()) + [v for k, v in out.items() if k.endswith((".md", ".csv"))]


HANDLERS = {name: globals()[f"stage_{name}"] for name in STAGES}
WILDCARD_ARGS = {"dataset": str, "set": str, "network": str, "seed": int}
WILDCARD_HELP = {"dataset": "a dataset of the profile (params.yaml `datasets`), e.g. retinamnist",
                 "set": "a synthetic set: `none` or <guidance>-s<scale> from sampling.scales, e.g. entropy-s2",
                 "network": "a zoo network of downstream.networks, e.g. resnet18",
                 "seed": "a downstream seed of downstream.seeds (initialisation and data order)"}
STAGE_HELP = {
    "preprocess": ("read a dataset (MedMNIST .npz, image folder or generated), check it, write its splits",
                   "--dataset retinamnist"),
    "train_ddpm": ("train the class-conditional DDPM with the fidelity probe; resumes from its last checkpoint",
                   "--dataset retinamnist"),
    "train_guidance_net": ("train the noise-conditioned classifier that guidance differentiates; resumes",
                           "--dataset retinamnist"),
    "train_reference_net": ("train the reference classifier whose features score fidelity and distributions",
                            "--dataset retinamnist"),
    "sample": ("draw one synthetic set with guided DDIM (or MGDM's two stages)", "--dataset retinamnist --set entropy-s2"),
    "fidelity": ("score one synthetic set against the real training split, beside the held-out floor",
                 "--dataset retinamnist --set entropy-s2"),
    "train_baseline": ("train a downstream network on real images only and score it on the test split",
                       "--dataset retinamnist --network resnet18 --seed 0"),
    "train_classifier": ("train a downstream network on real + one synthetic set and score it on the test split",
                         "--dataset retinamnist --network resnet18 --set entropy-s2 --seed 0"),
    "analyze": ("compare every set with the real data in the reference net's features (entropy, density, ...)",
                "--dataset retinamnist"),
    "report": ("write the tables (markdown, LaTeX) and summary figures from every job's metrics", ""),
}


def remove(outputs: list[str]) -> None:
    """A failed job leaves nothing that looks finished (older outputs of the job included)."""
    for p in outputs:
        try:
            Path(p).unlink(missing_ok=True)
        except OSError:  # e.g. under a path that is a file: nothing there to remove
            pass


def run_stage(stage: str, a: argparse.Namespace) -> int:
    from mgdm.files import FileError, check_writable, write_json
    from mgdm.machine import device_name

    config = load(a.params, a.profile)
    if a.device:  # the card at hand instead of the profile's; the metrics JSON names the machine it ran on
        config.profile = config.profile.model_copy(update={"device": a.device})
    plan = Plan(config, a.params)
    wildcards = {k: getattr(a, k) for k in STAGES[stage].matrix}
    values = plan.owner(stage).values
    for k, v in wildcards.items():
        if str(v) not in values[k]:
            raise ConfigError(f"{a.params} (profile {plan.profile!r}): {k} {v!r} is not in this profile's "
                              f"{k}s {values[k]} (a dvc.yaml written for other settings? `mgdm dvc-yaml`)")
    outputs = [p.format(**wildcards) for p in plan.outputs(stage)]
    if getattr(a, "from_records", False):  # the records are this run's input: never removed on failure
        outputs = [p for p in outputs if "/records/" not in p]
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    start = time.time()
    try:
        check_writable(outputs)  # before work starts, not after an hour of training
        result, artifacts = HANDLERS[stage](config, plan, a)
        summary = {**result.get("metrics", {}), **{k: v for k, v in result.items()
                                                    if k not in ("metrics", "history", "params")}}
        summary["wall_s"] = time.time() - start
        summary["machine"] = device_name(config.profile.device)  # what wall_s was measured on
        metrics_path = plan.metrics_path(stage, **wildcards)
        write_json(metrics_path, summary)
    except BaseException as err:
        remove(outputs)
        if isinstance(err, (ConfigError, FileError, FileNotFoundError)):
            print(f"mgdm {stage}: error: {err}", file=sys.stderr)
            return 2
        raise
    if not a.no_mlflow:
        from mgdm.tracking import DEFAULT_URI, dataset_input, git_commit, log_stage

        uri = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI)
        tags = {"stage": stage, "profile": plan.profile, "git_commit": git_commit(),
                **{k: str(v) for k, v in wildcards.items()}}
        if "set" in wildcards:
            tags["guidance"] = wildcards["set"].split("-s")[0]
        params = {**result.get("params", {}), **json.loads(plan.settings(stage, **wildcards))}
        name = "/".join([stage, *map(str, wildcards.values())])
        inputs = []  # the data it read, as MLflow datasets: the real training split, and a synthetic set
        if DATA in (*STAGES[stage].deps, *STAGES[stage].outs):
            inputs.append(dataset_input(plan.paths("preprocess", dataset=a.dataset)["dataset.npz"],
                                        f"{a.dataset}-train", "training"))
        if SAMPLES in STAGES[stage].deps and "set" in wildcards:  # one set (analyze gathers them all)
            inputs.append(dataset_input(plan.paths("sample", dataset=a.dataset, set=a.set)[f"{a.set}.npz"],
                                        f"{a.dataset}-{a.set}", "synthetic"))
        log_stage(uri, f"mgdm-{plan.profile}", name, tags, params, summary, result.get("history"),
                  [metrics_path, *artifacts], start=start, end=start + summary["wall_s"], inputs=inputs)
    print(f"mgdm {stage}: done in {summary['wall_s']:.1f} s -> {metrics_path}")
    return 0


def _emit(text: str, output: str) -> int:
    """Write a generated file to `output`, or to standard output for '-'."""
    if output == "-":
        sys.stdout.write(text)
    else:
        Path(output).write_text(text)
    return 0


def write_smk(a) -> int:
    from mgdm.smk import write

    return _emit(write(), a.output)


def dvc_yaml(a) -> int:
    import yaml

    class NoAliases(yaml.SafeDumper):
        def ignore_aliases(self, data):
            return True

    plan = Plan(load(a.params, a.profile), a.params)
    text = ("# Written by `mgdm dvc-yaml --profile " + plan.profile + "` from the stage table in "
            "src/mgdm/pipeline.py; do not edit by hand.\n" + yaml.dump(plan.dvc_yaml(), Dumper=NoAliases, sort_keys=False, width=120))
    return _emit(text, a.output)


def write_schema(a) -> int:
    import json

    from mgdm.config import Params, Profile

    # params.yaml's own schema (Snakemake validates the config against it); a profile (`defaults` deep-merged
    # with `profiles.<name>`) is documented under $defs/Profile, and validated by mgdm itself (pydantic).
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **Params.model_json_schema()}
    profile = Profile.model_json_schema()
    schema["$defs"] = {**schema.get("$defs", {}), **profile.pop("$defs", {}), "Profile": profile}
    schema["description"] = "mgdm params.yaml: `defaults` and each of `profiles` deep-merge into a $defs/Profile."
    Path(a.output).write_text(json.dumps(schema, indent=2) + "\n")
    return 0


def _tool(a):
    """Load the profile, apply --threads, pick --dataset (default: the profile's first): the shared start of the
    commands outside the DAG. Returns (config, plan, dataset name)."""
    config = load(a.params, a.profile)
    plan = Plan(config, a.params)
    if getattr(a, "threads", 0):
        import torch

        torch.set_num_threads(a.threads)
    return config, plan, a.dataset or plan.values["dataset"][0]


def benchmark(a) -> int:
    from mgdm import benchmark as bench
    from mgdm.files import atomic_path, write_json

    _, plan, name = _tool(a)
    data = plan.paths("preprocess", dataset=name)["dataset.npz"]
    if not Path(data).exists():
        raise ConfigError(f"{data}: not found; run `mgdm preprocess --profile {plan.profile} --dataset {name}` first "
                          "(the benchmark uses the dataset's channels, classes and size)")
    out = Path(a.output or f"results/bench/{plan.profile}.json")
    result = bench.run(plan, name, a.repeats, with_variants=a.variants)
    write_json(out, result)
    with atomic_path(out.with_suffix(".md")) as tmp:
        tmp.write_text(bench.markdown(result))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


def calibrate_scales(a) -> int:
    import pandas as pd
    import torch

    from mgdm.analysis.tables import write_table
    from mgdm.diffusion.train import load_ddpm
    from mgdm.diffusion.unet import ddim_schedulers
    from mgdm.files import write_json
    from mgdm.guidance.calibrate import shift_per_unit_scale, table
    from mgdm.guidance.measures import MEASURES
    from mgdm.guidance.train import load_guidance_net

    config, plan, name = _tool(a)
    gen = plan.generator
    s = gen.config.profile.sampling
    if a.reference not in MEASURES or not s.scales.get(a.reference):
        raise ConfigError(f"--reference {a.reference!r}: not a measure with a scale in sampling.scales of profile "
                          f"{gen.profile!r}")
    ddpm, guidance = (gen.paths(st, dataset=name)["model.safetensors"] for st in ("train_ddpm", "train_guidance_net"))
    for path in (ddpm, guidance):
        if not Path(path).exists():
            raise ConfigError(f"{path}: not found; train it first (snakemake ... --config profile={gen.profile})")
    unet, ddpm_cfg = load_ddpm(ddpm, config.profile.device)
    net = load_guidance_net(guidance, config.profile.device)
    k = ddpm_cfg["null_label"]
    g = torch.Generator().manual_seed(s.seed)
    labels = torch.arange(a.images) % k
    noise = torch.randn(a.images, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size,
                        generator=g)
    shift = shift_per_unit_scale(unet, net, ddim_schedulers(ddpm_cfg["scheduler"])[0], labels, noise, s.ddim_steps,
                                 k, s.mc_samples)
    rows = table(shift, s.scales, a.reference)
    out = Path(gen.root) / "tables" / "measure_scales"
    write_json(out.with_suffix(".json"), {"dataset": name, "images": a.images, "reference": a.reference,
                                          "rows": rows})
    write_table(pd.DataFrame(rows), out, f"How far each measure moves a sample per unit of guidance scale (profile "
                f"`{gen.profile}`, {name}; `mgdm calibrate-scales`): the RMS noise shift sqrt(1 - alpha_bar_t) "
                f"|grad M| per pixel at scale 1 (x 1000), averaged over the {s.ddim_steps} states of unguided DDIM "
                f"trajectories of {a.images} images (classes in turn, sampling seed {s.seed}; BALD over "
                f"{s.mc_samples} MC-dropout passes), and the scale at which each measure pushes as hard as "
                f"{a.reference} does at its first scale.")
    print(f"wrote {out}.md")
    return 0


def sweep_generator(a) -> int:
    from mgdm import generator_sweep as sweep
    from mgdm.files import read_json

    config, plan, name = _tool(a)
    p = config.profile
    unknown = [v for v in a.variant if v not in p.generator_sweep.variants]
    if unknown:
        raise ConfigError(f"{a.params} (profile {p.name!r}): unknown generator_sweep variant(s) {unknown}; "
                          f"defined: {', '.join(p.generator_sweep.variants)}")
    dataset = _dataset(plan, name)
    reference = plan.paths("train_reference_net", dataset=name)["model.safetensors"]
    if not Path(reference).exists():
        raise ConfigError(f"{reference}: reference net not found; run `mgdm train-reference-net --profile {p.name} "
                          f"--dataset {name}` first (the probe scores in its features)")
    out_dir = Path(plan.root) / name / "generator_sweep"
    names = a.variant or list(p.generator_sweep.variants)
    if not a.table_only:
        timings = sweep.step_timings(dataset, p, names, out_dir / "step_timings.json")
        for v in names:
            r = sweep.run_variant(dataset, p, v, reference, out_dir, timings[v], p.ddpm.seed, not a.no_progress)
            print(f"{v}: " + ", ".join(f"{k.removeprefix('probe_')} {r['final'][k]:.3f}" for k in sweep.METRICS))
    records = [read_json(out_dir / f"{v}.json") for v in p.generator_sweep.variants if (out_dir / f"{v}.json").exists()]
    full = sweep.profile_record(Path(plan.root) / name / "ddpm", p)
    records += [full] if full else []
    floor = sweep.real_floor(dataset, p, reference)
    targets = None
    fid_json, analysis_json = plan.metrics_path("fidelity", dataset=name, set="none"), plan.metrics_path("analyze", dataset=name)
    if p.generator_sweep.targets and Path(fid_json).exists() and Path(analysis_json).exists():
        targets = sweep.target_rows(p.generator_sweep.targets, read_json(fid_json), read_json(analysis_json))
    sweep.write_outputs(records, floor, p, name, Path(plan.root) / "tables" / "generator",
                        Path(plan.root) / "figures" / "generator.png", targets)
    print(f"wrote {plan.root}/tables/generator.md and {plan.root}/figures/generator.png ({len(records)} variants)")
    return 0


def survey_zoo(a) -> int:
    from mgdm import zoo_survey
    from mgdm.analysis.tables import write_table
    from mgdm.machine import cpu_name

    config, plan, name = _tool(a)
    p = config.profile
    dataset = _dataset(plan, name)
    out_dir = Path(plan.root) / name / "zoo"
    rows = []
    networks = zoo_survey.networks(p, a.network)
    for network in networks:
        path = out_dir / f"{network}.json"
        if a.table_only and not path.exists():
            continue
        row = zoo_survey.survey_network(dataset, p, network, out_dir, not a.no_progress)
        rows.append(row)
        print(f"{network}: {row['s_per_epoch']:.1f} s/epoch, test acc {row['acc']:.3f}, auc {row['auc']:.3f}")
    if not rows:
        raise ConfigError(f"{out_dir}: no surveyed network yet; run without --table-only")
    missing = [n for n in networks if n not in {r["network"] for r in rows}]
    threads = "/".join(sorted({str(r.get("threads", "unrecorded")) for r in rows}))  # as each network ran
    write_table(zoo_survey.table(rows, dataset), Path(plan.root) / "tables" / "zoo",
                f"The zoo on real {name} (profile `{p.name}`): each network trained from scratch for "
                f"{p.zoo.epochs} epochs (downstream optimiser, batch {p.downstream.batch_size}, lr {p.downstream.lr}, "
                f"seed {p.zoo.seed}), epoch selected on validation AUC, scored on the test split; seconds per "
                f"epoch on {cpu_name()} with {threads} torch threads "
                f"({p.device}). Flagged: test AUC within {zoo_survey.CHANCE_AUC_MARGIN} of chance or ACC not "
                "above the majority class." + (f" Not yet surveyed: {', '.join(missing)}." if missing else ""))
    print(f"wrote {plan.root}/tables/zoo.md ({len(rows)} networks)")
    return 0


def power(a) -> int:
    from mgdm.analysis import paired
    from mgdm.analysis.tables import read_runs, write_table

    config, plan, name = _tool(a)
    p = config.profile
    records = Path(plan.paths("report")["runs.csv"])
    runs = read_runs(records)
    runs = runs[runs["dataset"] == name]
    wall = float(runs["wall_s"].mean())
    table, s = paired.power_table(runs, wall, a.budget_min, a.parallel, a.sets)
    best = table[table["fits budget"]].sort_values("half-width").head(1)
    reach = (f"the narrowest that fits {a.budget_min:g} min: {int(best['networks'].iloc[0])} networks x "
             f"{int(best['seeds'].iloc[0])} seeds, half-width {best['half-width'].iloc[0]:.2f}"
             if len(best) else f"no design in the table fits {a.budget_min:g} min")
    write_table(table, Path(plan.root) / "tables" / "power",
                f"Study design from `{p.name}`'s runs on {name} ({records}: {s['pilot_networks']} networks, "
                f"{s['pilot_pairs']} (network, seed) pairs). Variance components of the paired accuracy change "
                f"against real-only (points², one-way random-effects ANOVA, pooled over the sets): seed-to-seed "
                f"{s['var_seed']:.2f} (sd {s['sd_seed']:.2f}), network x set {s['var_network']:.2f} (sd "
                f"{s['sd_network']:.2f}). Per design: the network-level 95% half-width (t, df = networks − 1), the "
                f"two-sided power at alpha {paired.ALPHA} to detect a change of 1, 1.5 and 3 points, and the minutes "
                f"for {a.sets} compared sets plus real-only at {wall:.0f} s per run, {a.parallel} jobs side by side; "
                f"{reach}.")
    print(f"seed sd {s['sd_seed']:.2f}, network x set sd {s['sd_network']:.2f} points; {reach}; "
          f"wrote {plan.root}/tables/power.md")
    return 0


def jobs(a) -> int:
    from mgdm.jobs import run

    config = load(a.params, a.profile)
    deadline = None if a.deadline_min is None else 60 * a.deadline_min
    failed = run(Plan(config, a.params), a.workers, deadline, _chosen(config, a, "networks"),
                 _chosen(config, a, "seeds"), a.device)
    return 1 if failed else 0


def show_plan(a) -> int:
    from mgdm.estimate import estimate

    config = load(a.params, a.profile)
    print(estimate(Plan(config, a.params), config.data_dir()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mgdm", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, stage in STAGES.items():
        about, example = STAGE_HELP[name]
        command = name.replace("_", "-")
        p = sub.add_parser(command, help=about, description=f"Stage {name}: {about}.",
                           epilog=f"example: mgdm {command} --profile cpu {example}".rstrip())
        p.set_defaults(stage=name)
        for w in stage.matrix:
            p.add_argument(f"--{w}", type=WILDCARD_ARGS[w], required=True, help=WILDCARD_HELP[w])
        if name == "report":
            p.add_argument("--images-only", action="store_true", help="only the tables of the images (fidelity, "
                           "distribution, guidance net), before any downstream network is trained")
            p.add_argument("--seeds", type=int, nargs="+", default=None, help="report only these of "
                           "downstream.seeds, e.g. the ones finished so far of a long study (default: all); "
                           "the tables name the seeds they cover")
            p.add_argument("--networks", nargs="+", default=None, help="report only these of "
                           "downstream.networks, e.g. the ones a GPU lease finished (default: all)")
            p.add_argument("--from-records", action="store_true", help="rebuild the tables and figures from the "
                           "committed records (records/runs.csv, records/images.json) alone, e.g. in a fresh clone")
        p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
        p.add_argument("--device", default=None, help="run on this device instead of the profile's `device`, "
                       "e.g. cuda on a lent GPU (the metrics JSON names the machine)")
        p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
        p.add_argument("--no-mlflow", action="store_true", help="skip MLflow logging")
    d = sub.add_parser("dvc-yaml", help="write dvc.yaml for a profile from the stage table",
                       epilog="example: mgdm dvc-yaml --profile smoke && dvc repro")
    d.add_argument("-o", "--output", default="dvc.yaml", help="where to write it ('-': standard output)")
    d.set_defaults(func=dvc_yaml)
    sm = sub.add_parser("smk", help="write workflow/rules/stages.smk (one Snakemake rule per stage) from the "
                        "stage table", epilog="example: mgdm smk")
    sm.add_argument("-o", "--output", default="workflow/rules/stages.smk", help="where to write it ('-': standard "
                    "output)")
    sm.set_defaults(func=write_smk)
    sc = sub.add_parser("schema", help="write the JSON schema of params.yaml (for editors and reviewers)",
                        epilog="example: mgdm schema -o workflow/schemas/params.schema.json")
    sc.add_argument("-o", "--output", default="workflow/schemas/params.schema.json", help="where to write it")
    sc.set_defaults(func=write_schema)
    b = sub.add_parser("benchmark", help="measure training and sampling throughput of a profile, as JSON",
                       epilog="example: mgdm benchmark --profile cpu --repeats 5")
    b.add_argument("-o", "--output", default=None, help="the JSON to write (default results/bench/<profile>.json; "
                   "a markdown table is written beside it)")
    b.add_argument("--dataset", default=None, help="dataset (default: the profile's first)")
    b.add_argument("--repeats", type=int, default=3, help="timed repeats per figure (the median is reported)")
    b.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    b.add_argument("--variants", action="store_true", help="also time channels_last, torch.compile, inference_mode "
                   "and thread placement beside the eager figures (compilation takes minutes)")
    b.set_defaults(func=benchmark)
    sw = sub.add_parser("sweep-generator", help="compare DDPM recipe variants at equal wall clock with the "
                        "fidelity probe; e.g. mgdm sweep-generator --profile cpu --variant baseline")
    sw.add_argument("--dataset", default=None, help="dataset (default: the profile's first)")
    sw.add_argument("--variant", action="append", default=[], help="run only this variant (repeatable)")
    sw.add_argument("--table-only", action="store_true", help="only rewrite the table and figure from finished variants")
    sw.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    sw.add_argument("--no-progress", action="store_true", help="no progress bars")
    sw.set_defaults(func=sweep_generator)
    cs = sub.add_parser("calibrate-scales", help="how far each guidance measure moves a sample per unit scale, "
                        "along unguided DDIM trajectories, and the scale that matches a reference measure",
                        epilog="example: mgdm calibrate-scales --profile cpu --reference entropy")
    cs.add_argument("--dataset", default=None, help="dataset (default: the profile's first)")
    cs.add_argument("--reference", default="entropy", help="the measure whose first scale the others are matched to")
    cs.add_argument("--images", type=int, default=50, help="trajectories to average over (classes in turn)")
    cs.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    cs.set_defaults(func=calibrate_scales)
    z = sub.add_parser("survey-zoo", help="train each zoo network briefly on real data: seconds per epoch and test "
                       "ACC/AUC, near-chance networks flagged; e.g. mgdm survey-zoo --profile cpu --network resnet18")
    z.add_argument("--dataset", default=None, help="dataset (default: the profile's first)")
    z.add_argument("--network", action="append", default=[], help="survey only this network (repeatable)")
    z.add_argument("--table-only", action="store_true", help="only rewrite the table from surveyed networks")
    z.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    z.add_argument("--no-progress", action="store_true", help="no progress bars")
    z.set_defaults(func=survey_zoo)
    pw = sub.add_parser("power", help="design a study from a profile's run records: variance components (seed, "
                        "network x set) of paired accuracy changes, then per design (networks x seeds) the "
                        "network-level half-width, the power at 1, 1.5 and 3 points and the minutes; "
                        "e.g. mgdm power --profile pilot --budget-min 150")
    pw.add_argument("--dataset", default=None, help="dataset (default: the profile's first)")
    pw.add_argument("--sets", type=int, default=3, help="synthetic sets each pair compares with real-only")
    pw.add_argument("--budget-min", type=float, default=150, help="wall-clock budget of the study, minutes")
    pw.add_argument("--parallel", type=int, default=2, help="downstream jobs side by side (e.g. --cores)")
    pw.set_defaults(func=power)
    j = sub.add_parser("jobs", help="run a profile's downstream jobs (train-baseline, train-classifier) in worker "
                       "processes without Snakemake, e.g. many small jobs on one GPU; finished jobs are skipped",
                       epilog="example: mgdm jobs --profile paper-downstream --workers 8 --deadline-min 7")
    j.add_argument("--workers", type=int, default=2, help="jobs side by side (each on one torch thread)")
    j.add_argument("--deadline-min", type=float, default=None, help="start no job after this many minutes")
    j.add_argument("--networks", nargs="+", default=None, help="only these networks' jobs (default: all)")
    j.add_argument("--seeds", type=int, nargs="+", default=None, help="only these seeds' jobs (default: all)")
    j.add_argument("--device", default=None, help="run the jobs on this device instead of the profile's, e.g. "
                   "a CPU-designed study on a lent GPU (each run's JSON names the machine)")
    j.set_defaults(func=jobs)
    pl = sub.add_parser("plan", help="print the jobs of a profile and their estimated wall clock",
                        epilog="example: mgdm plan --profile pneumonia")
    pl.set_defaults(func=show_plan)
    for p in sub.choices.values():
        p.add_argument("--params", default="params.yaml", help="the configuration file (default params.yaml)")
        p.add_argument("--profile", default=None, help="profile in params.yaml (default: its `profile` key)")
    return parser


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        if hasattr(a, "func"):
            return a.func(a)
        return run_stage(a.stage, a)
    except ConfigError as err:
        print(f"mgdm: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
