"""`mgdm calibrate-scales`: how far each measure's gradient moves a sample per unit of guidance scale.

The measures live on different scales: log p(y) has gradients of order one, while the mutual
information of MC-dropout passes (BALD) is a small difference of entropies, so one scale grid does
not fit them all. This follows an unguided DDIM trajectory of the profile's own DDPM and, at every state
x_t it visits, measures the noise shift a measure would apply at scale 1, sqrt(1 - alpha_bar_t) |grad M|
(per pixel, root mean square), averaged over steps and images. The scale at which a measure shifts as
much as the reference measure does at its own scale is the equal-push scale.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from mgdm.guidance.measures import EPISTEMIC, MEASURES
from mgdm.sampling.ddim import guided_ddim, measure_gradient
from mgdm.config import ConfigError
from mgdm.tools import open_tool


def shift_per_unit_scale(unet, guidance_net, scheduler, labels: torch.Tensor, noise: torch.Tensor, steps: int,
                         null_label: int, mc_samples: int, progress: bool = True) -> dict[str, float]:
    """Mean RMS noise shift per unit scale of every measure, along the unguided trajectory from `noise`."""
    after = []  # the state after each step
    guided_ddim(unet, noise, labels, scheduler, steps, null_label=null_label, callback=lambda s: after.append(s["x"]))
    # a step's guidance acts on the state before it: x_T, then what each step produced
    inputs = list(zip(scheduler.timesteps, [noise, *after[:-1]]))
    out = {}
    bar = tqdm(total=len(MEASURES) * len(inputs), desc="calibrate-scales", disable=not progress)
    for name, measure in MEASURES.items():
        shifts = []
        bar.set_postfix(measure=name)
        for t, x in inputs:
            bar.update()
            alpha_bar = scheduler.alphas_cumprod[t].to(x)
            if alpha_bar == 0:  # zero terminal SNR: the sampler does not guide there
                continue
            torch.manual_seed(0)  # the same dropout masks for every measure
            g = measure_gradient(guidance_net, measure, x, t, labels, mc_samples if name in EPISTEMIC else 0)
            shifts.append((1 - alpha_bar).sqrt() * g.pow(2).mean(dim=(1, 2, 3)).sqrt())
        out[name] = torch.cat(shifts).mean().item()
    bar.close()
    return out


def table(shift: dict[str, float], scales: dict[str, list[float]], reference: str) -> list[dict]:
    """Rows: each measure's shift per unit scale and the scale that matches `reference` at its first scale."""
    ref_scale = scales[reference][0]
    target = shift[reference] * ref_scale
    return [{"measure": m, "shift_per_unit_scale_x1000": 1000 * s, "profile_scales": ", ".join(f"{x:g}" for x in scales.get(m, [])),
             f"equal_push_scale (= {reference} at {ref_scale:g})": target / s if s > 0 else float("inf")}
            for m, s in shift.items()]


def main(a) -> int:
    import pandas as pd
    import torch

    from mgdm.analysis.tables import write_table
    from mgdm.diffusion.train import load_ddpm
    from mgdm.diffusion.unet import ddim_schedulers
    from mgdm.files import write_json
    from mgdm.guidance.measures import MEASURES
    from mgdm.guidance.train import load_guidance_net

    config, plan, name = open_tool(a)
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
                                 k, s.mc_samples, a.progress)
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
