"""`mgdm benchmark --device cuda`: the downstream grid's training step on an accelerator, against the card's
measured peak and the loop it replaced, and what the profile's whole grid costs at that step (the GPU target
of the `paper-downstream` grid: 180 runs in at most 10 minutes, the large networks at 30% of the bf16 peak).

Per network of the profile, in one process so that the ratios compare:
- the grid trainer's step (mgdm.classifiers.train): the batch already on the device, bf16 autocast,
  channels_last, the fused AdamW, no host sync inside the step (on a CPU: fp32, the unfused optimiser);
- the old loop's step: the batch gathered and flipped on the host and copied from pageable memory, fp32,
  the unfused optimiser, `loss.item()` every step.
Each is timed (median of repeats, the device synchronised after each call, new and old in turns) and its
FLOPs counted by `torch.utils.flop_counter`; its rate is set against the card's measured bf16 matmul and
conv3x3 peaks. The grid's cost is every run's optimiser steps (epochs x batches of its training set: real,
or real + a set) at the measured step, summed: validation, scoring and process starts are left out, so it
is the floor the runs' own wall clock (their JSONs) is read against.
"""

from __future__ import annotations

import copy
import math
import platform

import torch
import torch.nn.functional as F

from mgdm.classifiers.zoo import create_network
from mgdm.config import set_multiple
from mgdm.machine import device_name
from mgdm.tools.timing import flops, ratio, timed, timed_in_turns

GRID_TARGET_S = 600.0  # the paper-downstream grid on one H100/H200
PEAK_SHARE_TARGET = 0.30  # the large networks' step, of the measured bf16 peak


def synced(fn, device: torch.device):
    """`fn`, then wait for the device: a timed call measures the work, not its launch."""
    def call():
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return call


def peak(device: torch.device, repeats: int) -> dict:
    """The device's measured matmul (bf16, fp32) and bf16 conv3x3 rates in TFLOP/s, from the fastest repeat."""
    cuda = device.type == "cuda"
    n, channels, batch = (8192, 256, 256) if cuda else (512, 32, 16)
    out = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        t = timed(synced(lambda: a @ b, device), repeats, warmup=2)
        out[f"matmul_{name}_tflop_per_s"] = 2 * n ** 3 / t["min_s"] / 1e12
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(device, torch.bfloat16)
    x = torch.randn(batch, channels, 28, 28, device=device, dtype=torch.bfloat16)
    if cuda:
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()

    def conv_step():
        conv(x).sum().backward()

    t = timed(synced(conv_step, device), repeats, warmup=2)
    out["conv3x3_bf16_tflop_per_s"] = flops(conv_step) / t["min_s"] / 1e12
    out["bf16_tflop_per_s"] = max(out["matmul_bf16_tflop_per_s"], out["conv3x3_bf16_tflop_per_s"])
    return out


def grid_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    """One optimiser step as the grid trainer takes it (mgdm.classifiers.train._train_epoch)."""
    cuda = x.device.type == "cuda"
    if cuda:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True if cuda else None)

    def step():
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def old_step(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int, device: torch.device):
    """One step of the loop the grid trainer replaced: a host-side batch copied over, fp32, a sync per step."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    g = torch.Generator().manual_seed(0)

    def step():
        idx = torch.randint(0, len(labels), (batch,), generator=g)
        x, y = images[idx].flip(-1).to(device), labels[idx].to(device)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
    return step


def grid_steps(plan, n_train: int, classes: int) -> int:
    """Optimiser steps of one network's runs: every seed on real-only and on real + each set."""
    p = plan.config.profile
    sizes = [0] + [p.sampling.per_class * classes if set_multiple(s) is None else round(set_multiple(s) * n_train)
                   for s in plan.config.downstream_sets()]
    per_seed = sum(p.downstream.epochs * math.ceil((n_train + n) / p.downstream.batch_size) for n in sizes)
    return per_seed * len(p.downstream.seeds)


def run(plan, dataset: str, device: str, repeats: int = 3) -> dict:
    """Every figure for the profile's downstream networks on `dataset`'s shape, on `device`."""
    from mgdm.data.splits import Dataset

    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the grid trainer sets it
    p = plan.config.profile
    data = Dataset(plan.paths("preprocess", dataset=dataset)["dataset.npz"])
    size, chans, k = data.image_size, data.channels, data.num_classes
    n_train, bs = len(data.arrays["train_labels"]), p.downstream.batch_size
    peaks = peak(dev, repeats)
    g, n = torch.Generator().manual_seed(0), max(n_train, bs)  # the real split's shape, on the host
    host_x, host_y = torch.randn(n, chans, size, size, generator=g), torch.randint(0, k, (n,), generator=g)
    x, y = host_x[:bs].to(dev), host_y[:bs].to(dev)
    steps = grid_steps(plan, n_train, k)
    networks, grid_s, old_s = {}, 0.0, 0.0
    for name in p.downstream.networks:
        torch.manual_seed(0)
        model = create_network(name, k, chans, size).to(dev)
        plain, counted = copy.deepcopy(model), copy.deepcopy(model)
        new = grid_step(model, x, y)
        t = timed_in_turns({"new": synced(new, dev), "old": synced(old_step(plain, host_x, host_y, bs, dev), dev)},
                           repeats, warmup=2)
        t_new, t_old = t["new"], t["old"]
        # counted on a copy, after the timing: the timed model and optimiser see only timed steps
        f = flops(grid_step(counted, x, y))
        rate = f / t_new["median_s"] / 1e12
        networks[name] = {"gflop_per_step": f / 1e9, "step_s": t_new["median_s"], "old_step_s": t_old["median_s"],
                          "vs_old": ratio(t_old, t_new)["median"], "tflop_per_s": rate,
                          "fraction_of_bf16_peak": rate / peaks["bf16_tflop_per_s"], "grid_steps": steps,
                          "grid_s": steps * t_new["median_s"], "old_grid_s": steps * t_old["median_s"]}
        grid_s += networks[name]["grid_s"]
        old_s += networks[name]["old_grid_s"]
        del model, plain, counted, new
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return {"machine": {"device": device_name(device), "python": platform.python_version(),
                        "torch": torch.__version__},
            "profile": plan.profile, "dataset": dataset, "image_size": size, "classes": k, "n_train": n_train,
            "batch_size": bs, "epochs": p.downstream.epochs, "runs_per_network": len(p.downstream.seeds)
            * (1 + len(plan.config.downstream_sets())), "peak": peaks, "networks": networks,
            "grid": {"networks": len(networks), "steps_s": grid_s, "old_steps_s": old_s, "target_s": GRID_TARGET_S}}


def markdown(result: dict) -> str:
    """The figures as a table, with the targets beside them."""
    pk, grid = result["peak"], result["grid"]
    lines = [f"Downstream grid of `{result['profile']}` on {result['machine']['device']} (torch "
             f"{result['machine']['torch']}; {result['dataset']}, {result['image_size']} px, batch "
             f"{result['batch_size']}, {result['epochs']} epochs, {result['runs_per_network']} runs a network). "
             f"Measured peak (fastest repeat): bf16 matmul {pk['matmul_bf16_tflop_per_s']:.1f} TFLOP/s, bf16 conv3x3 "
             f"{pk['conv3x3_bf16_tflop_per_s']:.1f}, fp32 matmul {pk['matmul_fp32_tflop_per_s']:.1f}.", "",
             "| network | GFLOP a step | step s | old step s | vs old | TFLOP/s | of bf16 peak | grid s | old grid s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in result["networks"].items():
        lines.append(f"| {name} | {r['gflop_per_step']:.1f} | {r['step_s']:.4f} | {r['old_step_s']:.4f} | "
                     f"{r['vs_old']:.2f}x | {r['tflop_per_s']:.1f} | {r['fraction_of_bf16_peak']:.0%} | "
                     f"{r['grid_s']:.0f} | {r['old_grid_s']:.0f} |")
    lines += ["", f"The grid's optimiser steps at these rates: {grid['steps_s']:.0f} s back to back against "
              f"{grid['old_steps_s']:.0f} s for the old loop (target: the whole grid, validation and scoring "
              f"included, in {grid['target_s']:.0f} s; the large networks at {PEAK_SHARE_TARGET:.0%} of the bf16 "
              "peak). `grid s` counts steps only: the runs' own wall clock is in their JSONs."]
    return "\n".join(lines) + "\n"
