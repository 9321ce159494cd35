"""`mgdm benchmark`: throughput of the expensive kernels of a profile, as JSON.

Measures, in one process so that ratios are comparable on a noisy machine: the DDPM training step
(fp32, and bf16 autocast where the CPU supports it), DDIM sampling per guidance kind, and the
downstream networks' training. Models are freshly initialised: speed does not depend on training.
"""

from __future__ import annotations

import platform
import time

import torch
import torch.nn.functional as F

from mgdm.classifiers.zoo import create_network
from mgdm.diffusion.unet import ddim_schedulers, make_unet, scheduler_config, unet_config
from mgdm.guidance.measures import MEASURES
from mgdm.guidance.noisy_classifier import NoisyClassifier
from mgdm.pipeline import Plan
from mgdm.sampling.ddim import guided_ddim, mgdm_two_stage


def timed(fn, repeats: int, warmup: int = 1) -> float:
    """Return the median seconds of `fn()` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), for tables that report speed."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bf16_supported() -> bool:
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def run(plan: Plan, dataset: str, repeats: int = 3, sample_steps: int = 10) -> dict:
    p = plan.config.profile
    spec = plan.config.dataset(dataset)
    size, chans, k = spec.image_size, 3 if spec.source != "procedural" else spec.channels, 5
    unet = make_unet(unet_config(p.ddpm, size, chans, k))
    sched_cfg = scheduler_config(p.ddpm)
    out = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                       "threads": torch.get_num_threads(), "processor": cpu_name(),
                       "bf16_supported": bf16_supported()},
           "profile": plan.profile, "dataset": dataset, "image_size": size,
           "unet_parameters": sum(q.numel() for q in unet.parameters())}

    b = p.ddpm.batch_size
    x, t, y = torch.randn(b, chans, size, size), torch.randint(0, 1000, (b,)), torch.randint(0, k + 1, (b,))
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-5)

    def train_step(dtype):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            loss = F.mse_loss(unet(x, t, class_labels=y).sample.float(), x)
        opt.zero_grad()
        loss.backward()
        opt.step()

    out["ddpm_train_step_s"] = {"fp32": timed(lambda: train_step("fp32"), repeats)}
    if bf16_supported():
        out["ddpm_train_step_s"]["bf16"] = timed(lambda: train_step("bf16"), repeats)
        out["ddpm_train_step_s"]["bf16_speedup"] = out["ddpm_train_step_s"]["fp32"] / out["ddpm_train_step_s"]["bf16"]

    unet.eval().requires_grad_(False)
    net = NoisyClassifier(chans, k, p.guidance_net.width).eval().requires_grad_(False)
    sampler, inverter = ddim_schedulers(sched_cfg)
    n = p.sampling.batch_size
    noise, labels = torch.randn(n, chans, size, size), torch.randint(0, k, (n,))
    kinds = {
        "none": lambda: guided_ddim(unet, noise, labels, sampler, sample_steps, null_label=k),
        "measure": lambda: guided_ddim(unet, noise, labels, sampler, sample_steps, null_label=k, guidance_net=net,
                                       measure=MEASURES["entropy"], scale=1.0),
        "cfg": lambda: guided_ddim(unet, noise, labels, sampler, sample_steps, null_label=k, cfg_scale=1.0),
        "mgdm": lambda: mgdm_two_stage(unet, noise, labels, sampler, inverter, sample_steps, null_label=k,
                                       guidance_net=net, measure=MEASURES["entropy"], scale=1.0, stage1_cfg=1.0),
    }
    out["sampling_images_per_s"] = {
        name: n / timed(fn, repeats) * sample_steps / p.sampling.ddim_steps for name, fn in kinds.items()}
    out["sampling_images_per_s"]["note"] = f"at the profile's {p.sampling.ddim_steps} DDIM steps (measured at {sample_steps})"

    out["classifier_train_images_per_s"] = {}
    for name in p.downstream.networks:
        model = create_network(name, k, chans, size)
        copt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        xb, yb = torch.randn(p.downstream.batch_size, chans, size, size), torch.randint(0, k, (p.downstream.batch_size,))

        def step():
            loss = F.cross_entropy(model(xb), yb)
            copt.zero_grad()
            loss.backward()
            copt.step()

        out["classifier_train_images_per_s"][name] = p.downstream.batch_size / timed(step, repeats)
    return out
