"""`mgdm sweep-generator`: DDPM recipe variants trained for equal wall clock and probed as they train.

Each variant is the profile's `ddpm` settings, then `generator_sweep.base`, then its own overrides
(params.yaml). Its step count is the wall-clock budget divided by its own measured
seconds per step, so a wider UNet gets fewer steps, as it would on the same machine. The probe
(metrics/probe.py) scores the EMA model `probes` times; the real-vs-real floor is the same probe
applied to held-out real images in the same class mix. Output: one JSON per variant (resumable:
a finished variant is skipped, a killed one resumes), a table and a figure.
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from mgdm.config import ConfigError, DDPMConfig, Profile, sweep_variant  # noqa: E402
from mgdm.tools import open_dataset, open_tool  # noqa: E402
from mgdm.data.normalization import encode_split  # noqa: E402
from mgdm.data.splits import Dataset  # noqa: E402
from mgdm.diffusion import train as ddpm_train  # noqa: E402
from mgdm.diffusion.unet import make_unet, scheduler_config, train_scheduler, unet_config  # noqa: E402
from mgdm.files import read_json, write_json  # noqa: E402
from mgdm.metrics.features import balanced_heldout  # noqa: E402
from mgdm.metrics.probe import FidelityProbe, score  # noqa: E402

METRICS = ("probe_fid", "probe_recall", "probe_coverage", "probe_precision", "probe_label_agreement",
           "probe_colour_error")
# Settings that say how long or how often, not what is trained: not part of a recipe.
SCHEDULING = {"steps", "checkpoint_every", "probe_every", "probe_images", "probe_steps"}


def seconds_per_step(dataset: Dataset, cfg: DDPMConfig, device: str = "cpu", warmup: int = 2, n: int = 6) -> float:
    """Return the measured wall clock of one training step of `cfg` (forward, backward, AdamW)."""
    norm, images, labels = encode_split(dataset, cfg.normalization)
    unet = make_unet(unet_config(cfg, dataset.image_size, dataset.channels, dataset.num_classes)).to(device)
    scheduler = train_scheduler(scheduler_config(cfg, norm.clip_range))
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(0)
    x0, y = images[:cfg.batch_size].to(device), labels[:cfg.batch_size].to(device)
    for i in range(warmup + n):
        if i == warmup:
            t0 = time.perf_counter()
        noise = torch.randn(x0.shape, generator=g).to(device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(y),), generator=g).to(device)
        loss = ddpm_train.diffusion_loss(unet, scheduler, x0, y, noise, t, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / n


def recipe(cfg: DDPMConfig) -> dict:
    return {k: v for k, v in cfg.model_dump().items() if k not in SCHEDULING}


def step_timings(dataset: Dataset, profile: Profile, names: list[str], path: str | Path) -> dict[str, float]:
    """Return seconds per step of each variant, measured back to back before any training (so that what
    else the machine does later cannot tilt the budgets), and kept in `path` for resumed sweeps."""
    path = Path(path)
    timings = read_json(path) if path.exists() else {}
    for name in names:
        cfg = sweep_variant(profile, name)
        # Recipes on the same UNet and batch cost the same per step: one measurement each, so timing
        # noise cannot hand one recipe more steps than another.
        arch = f"{cfg.channels} x{cfg.layers_per_block} attention={cfg.attention} batch={cfg.batch_size}"
        if arch not in timings:
            timings[arch] = seconds_per_step(dataset, cfg, profile.device, n=20)
            write_json(path, timings)
        timings[name] = timings[arch]
    return timings


def run_variant(dataset: Dataset, profile: Profile, name: str, reference_net: str | Path, out_dir: str | Path,
                s_step: float, seed: int = 0, progress: bool = True) -> dict:
    """Train one variant for the sweep's budget (at `s_step` seconds per step) with probes; write its record."""
    out_dir = Path(out_dir)
    record_path = out_dir / f"{name}.json"
    if record_path.exists():
        return read_json(record_path)
    sweep = profile.generator_sweep
    overrides = sweep.variants[name]
    cfg = sweep_variant(profile, name)
    steps = max(1, int(sweep.budget_s / s_step))
    every = max(1, steps // sweep.probes)
    cfg = cfg.model_copy(update={"steps": steps, "probe_every": every, "checkpoint_every": every})
    probe = FidelityProbe(dataset, reference_net, cfg.probe_images, cfg.probe_steps, profile.sampling.seed,
                          profile.device, profile.analysis.knn_k)
    result = ddpm_train.train_ddpm(dataset, cfg, out_dir / name / "model.safetensors", seed, profile.device, progress, probe)
    record = {"variant": name, "overrides": overrides, "recipe": recipe(cfg), "s_per_step": s_step, "steps": steps,
              "train_s": result["metrics"]["train_s"],
              "final": {k: result["metrics"][k] for k in METRICS},
              "curve": {k: result["history"][k] for k in METRICS}}
    write_json(record_path, record)
    return record


def real_floor(dataset: Dataset, profile: Profile, reference_net: str | Path, draws: int = 3) -> dict:
    """Return the probe's metrics for held-out real images (val + test) in the probe's class mix, mean over draws."""
    from mgdm.classifiers.zoo import load_classifier
    from mgdm.metrics.features import class_mix_mean, embed, heldout

    model = load_classifier(reference_net)
    train, train_labels = dataset.numpy("train")
    real_f, _ = embed(model, train)
    held = heldout(dataset)
    k = dataset.num_classes
    per_class = np.bincount(np.arange(profile.ddpm.probe_images) % k, minlength=k)
    rows = []
    for d in range(draws):
        images, labels = balanced_heldout(*held, per_class, seed=d)
        rows.append({**score(images, labels, model, real_f, class_mix_mean(train, train_labels, labels),
                             profile.analysis.knn_k), "n": len(labels)})
    return pd.DataFrame(rows).mean().to_dict()


def profile_record(ddpm_dir: str | Path, profile: Profile) -> dict | None:
    """Return the pipeline's own train_ddpm run as a sweep record (its probe curve), if it has finished."""
    ddpm_dir = Path(ddpm_dir)
    if not (ddpm_dir / "metrics.json").exists() or not (ddpm_dir / "resume.json").exists():
        return None
    m, curve = read_json(ddpm_dir / "metrics.json"), read_json(ddpm_dir / "resume.json").get("probes", {})
    if not all(k in curve for k in METRICS):
        return None
    return {"variant": f"train_ddpm (profile {profile.name}, full budget)", "recipe": recipe(profile.ddpm),
            "s_per_step": m["train_s"] / m["steps"], "steps": m["steps"], "final": {k: m[k] for k in METRICS},
            "curve": {k: curve[k] for k in METRICS}}


def write_outputs(records: list[dict], floor: dict, profile: Profile, dataset_name: str, table: str | Path,
                  figure: str | Path, targets: list[dict] | None = None) -> None:
    """Write the sweep's table (markdown + LaTeX) and figure (probe curves against training seconds)."""
    from mgdm.analysis.tables import write_table
    from mgdm.files import save_figure

    in_profile = recipe(profile.ddpm)
    rows, previous = [], recipe(sweep_variant(profile))
    for r in records:
        chosen = "overrides" in r and all(in_profile.get(k) == v for k, v in r["recipe"].items())
        changed = {k: v for k, v in r["recipe"].items() if previous.get(k) != v}
        changes = ", ".join(f"{k}={v}" for k, v in changed.items()) or "--"
        if "overrides" not in r:  # the pipeline's own run: not part of the chain
            changes = "the (profile) recipe, at the profile's steps"
        else:
            previous = r["recipe"]
        rows.append({"variant": r["variant"] + (" (profile)" if chosen else ""),
                     "changes from the row above": changes,
                     "s/step": r["s_per_step"], "steps": r["steps"],
                     **{k.removeprefix("probe_"): r["final"][k] for k in METRICS}})
    rows.append({"variant": "real-heldout", "changes from the row above": f"n={floor['n']:.0f} val+test images",
                 **{k.removeprefix("probe_"): floor[k] for k in METRICS}})
    p = profile.ddpm
    caption = (f"DDPM recipe variants on {dataset_name} (profile `{profile.name}`), each trained for "
               f"{profile.generator_sweep.budget_s:g} s of wall clock (steps = budget / measured s per step) from the "
               f"sweep's base settings plus its overrides, listed as changes from the row above; probe: {p.probe_images} class-balanced images, {p.probe_steps}-step DDIM, "
               "reference-net features against the real training split; colour_error is the "
               f"largest per-channel mean difference (0-255) from the real mean under the same class mix. "
               "'(profile)' marks the recipe the profile now uses; the last variant row, where present, is the "
               "pipeline's own train_ddpm with that recipe at the profile's full step budget (its s/step includes "
               "the probes). Floor: held-out real images, mean of 3 draws.")
    df = pd.DataFrame(rows)
    df["fid ÷ floor"] = df["fid"] / floor["probe_fid"]
    df = df[["variant", "changes from the row above", "s/step", "steps", "fid", "fid ÷ floor",
             *[m.removeprefix("probe_") for m in METRICS[1:]]]].astype({"steps": "Int64"})
    write_table(df, table, caption)
    if targets:
        tried = ", ".join(r["variant"] for r in records if "overrides" in r)
        write_table(pd.DataFrame(targets), f"{table}_targets",
                    f"The pipeline's `none` set on {dataset_name} (profile `{profile.name}`, "
                    f"{profile.sampling.ddim_steps}-step DDIM; fidelity and distribution tables) against the "
                    f"generator targets, beside the real held-out floor; recipes tried (generator.md): {tried}.")
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, m in zip(axes.flat, METRICS):
        for r in records:
            steps, values = zip(*r["curve"][m])
            ax.plot(np.array(steps) * r["s_per_step"], values, marker="o", ms=3, label=r["variant"])
        ax.axhline(floor[m], color="black", ls="--", lw=1, label="real held-out")
        ax.set(title=m.removeprefix("probe_"), xlabel="training wall clock (s)")
    axes.flat[0].set_yscale("log")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{dataset_name}: generator probe vs training time (profile {profile.name})")
    fig.tight_layout()
    save_figure(fig, figure)


def target_rows(targets: dict[str, float], fidelity: dict, analysis: dict) -> list[dict]:
    """The `none` set against each target: its value, the floor's, met or missed and by how much."""
    from mgdm.config import TARGETS

    none, floor = analysis["sets"]["none"], analysis["sets"]["real-heldout"]
    values = {"fid_ratio": (fidelity["domain_fid"] / fidelity["floor_domain_fid"], 1.0),
              "recall": (fidelity["domain_recall"], fidelity["floor_domain_recall"]),
              "coverage": (none["coverage"], floor["coverage"]),
              "label_agreement_ratio": (none["label_agreement"] / floor["label_agreement"], 1.0),
              "colour_error": (none["colour_error"], floor["colour_error"])}
    rows = []
    for name, target in targets.items():
        direction, what = TARGETS[name]
        value, at_floor = values[name]
        gap = value - target if direction == "at least" else target - value
        rows.append({"target": f"{what} {direction} {target:g}", "none set": value, "floor": at_floor,
                     "met": "yes" if gap >= 0 else f"no, by {-gap:.3g}"})
    return rows


def main(a) -> int:
    from mgdm.files import read_json

    config, plan, name = open_tool(a)
    p = config.profile
    unknown = [v for v in a.variant if v not in p.generator_sweep.variants]
    if unknown:
        raise ConfigError(f"{a.params} (profile {p.name!r}): unknown generator_sweep variant(s) {unknown}; "
                          f"defined: {', '.join(p.generator_sweep.variants)}")
    dataset = open_dataset(plan, name)
    reference = plan.paths("train_reference_net", dataset=name)["model.safetensors"]
    if not Path(reference).exists():
        raise ConfigError(f"{reference}: reference net not found; run `mgdm train-reference-net --profile {p.name} "
                          f"--dataset {name}` first (the probe scores in its features)")
    out_dir = Path(plan.root) / name / "generator_sweep"
    names = a.variant or list(p.generator_sweep.variants)
    if not a.table_only:
        timings = step_timings(dataset, p, names, out_dir / "step_timings.json")
        for v in names:
            r = run_variant(dataset, p, v, reference, out_dir, timings[v], p.ddpm.seed, not a.no_progress)
            print(f"{v}: " + ", ".join(f"{k.removeprefix('probe_')} {r['final'][k]:.3f}" for k in METRICS))
    records = [read_json(out_dir / f"{v}.json") for v in p.generator_sweep.variants if (out_dir / f"{v}.json").exists()]
    full = profile_record(Path(plan.root) / name / "ddpm", p)
    records += [full] if full else []
    floor = real_floor(dataset, p, reference)
    targets = None
    fid_json, analysis_json = plan.metrics_path("fidelity", dataset=name, set="none"), plan.metrics_path("analyze", dataset=name)
    if p.generator_sweep.targets and Path(fid_json).exists() and Path(analysis_json).exists():
        targets = target_rows(p.generator_sweep.targets, read_json(fid_json), read_json(analysis_json))
    write_outputs(records, floor, p, name, Path(plan.root) / "tables" / "generator",
                  Path(plan.root) / "figures" / "generator.png", targets)
    print(f"wrote {plan.root}/tables/generator.md and {plan.root}/figures/generator.png ({len(records)} variants)")
    return 0
