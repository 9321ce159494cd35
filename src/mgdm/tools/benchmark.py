"""`mgdm benchmark`: the study's expensive kernels against this machine's measured peak and the plain way.

In one process, so that ratios are comparable on a noisy machine:
- the peak: fp32 3x3 convolution (forward + backward, shaped like the UNet's middle layers) and matmul,
  and bf16 where the CPU supports it, in GFLOP/s: the fastest repeat, read at the start and the end;
- each kernel (a DDPM training step, DDIM sampling per guidance kind, a downstream training step per
  network): its FLOPs counted by `torch.utils.flop_counter`, median and spread of its wall clock over
  repeats, throughput, and the fraction of the fp32 conv peak it reaches;
- beside each kernel the plain way of doing the same job, timed the same way: a textbook loop on the
  same diffusers UNet, a DDIM step that differentiates the UNet too for guidance, CFG as two forwards,
  a torchvision ResNet-18 in a textbook loop; each kernel's `vs_plain` is plain seconds / mgdm seconds,
  the median (and range, `vs_plain_range`) of the per-round ratios: the two are timed in turns.
Always, the downstream jobs' overhead on the profile's job mix (mgdm.tools.job_overhead).
With `variants`, the speed-ups a user might reach for, each timed in turns with the eager fp32 figure and
checked against its output: channels_last, torch.compile (inductor), inference_mode, thread
placement (two 1-thread jobs side by side, as Snakemake runs downstream jobs on 2 cores, against one
2-thread job), and several runs of one network stacked by torch.func against the same runs one by one.
Models are freshly initialised (speed does not depend on training); shapes come from the dataset.
"""

from __future__ import annotations

import copy
import multiprocessing
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mgdm.classifiers.zoo import create_network
from mgdm.diffusion.train import diffusion_loss
from mgdm.diffusion.unet import ddim_schedulers, make_unet, scheduler_config, train_scheduler, unet_config
from mgdm.guidance.measures import MEASURES
from mgdm.guidance.noisy_classifier import NoisyClassifier
from mgdm.machine import cpu_name
from mgdm.workflow.plan import Plan
from mgdm.config import ConfigError
from mgdm.tools import job_overhead, open_tool
from mgdm.tools.timing import flops, ratio, spread, timed, timed_in_turns
from mgdm.sampling.ddim import guided_ddim, mgdm_two_stage
from mgdm.sampling.models import guidance_model


def put_ratio(d: dict, key: str, r: dict) -> None:
    """Store a per-round ratio's median as d[key] and its range as d[key + '_range']."""
    d[key], d[f"{key}_range"] = r["median"], [r["min"], r["max"]]


def with_range(d: dict, key: str) -> str:
    """d[key] and its range as the tables print them: '1.04 (0.93-1.17)'."""
    low, high = d[f"{key}_range"]
    return f"{d[key]:.2f} ({low:.2f}-{high:.2f})"


def labelled(name: str, f: dict) -> list[tuple[str, dict]]:
    """A kernel's figure and the figures inside it (its plain way, bf16), each with its table label."""
    return [(name, f), *[(f"{name} ({k})", v) for k, v in f.items() if isinstance(v, dict)]]


def bf16_supported() -> bool:
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def figures(fns: dict, repeats: int, items: int = 1) -> dict:
    """Time kernels in turns (their ratios then share the machine's drift) and FLOP-count each: per kernel,
    seconds, items/s and GFLOP/s (the fraction of the peak is set once the peak is known: `run`)."""
    times, out = timed_in_turns(fns, repeats), {}
    for name, fn in fns.items():
        t, f = times[name], flops(fn)
        gflops = f / t["median_s"] / 1e9
        out[name] = {**t, "gflop": f / 1e9, "items_per_s": items / t["median_s"], "gflop_per_s": gflops}
    return out


def measure_peak(repeats: int, channels: int = 64, size: int = 28, batch: int = 64) -> dict:
    """This machine's conv and matmul peak in GFLOP/s: fp32 always, bf16 where the CPU has it. From the fastest
    repeat: a shared machine's noise only slows a call down (one run's median read 57 GFLOP/s against 163).
    `run` reads it at the start and at the end, and keeps the faster."""
    out = {}
    dtypes = [torch.float32] + ([torch.bfloat16] if bf16_supported() else [])
    for dtype in dtypes:
        name = "fp32" if dtype == torch.float32 else "bf16"
        conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(dtype)
        x = torch.randn(batch, channels, size, size, dtype=dtype, requires_grad=True)

        def conv_step():
            conv(x).sum().backward()

        a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
        for kernel, fn in (("conv3x3", conv_step), ("matmul", lambda: a @ b)):
            t = timed(fn, repeats, warmup=2)
            out[f"{kernel}_{name}_gflop_per_s"] = flops(fn) / t["min_s"] / 1e9
    return out


def run(plan: Plan, dataset: str, repeats: int = 3, sample_steps: int = 10, with_variants: bool = False) -> dict:
    """Every figure of the benchmark for the profile's models on `dataset`'s shape (channels, classes)."""
    from mgdm.data.splits import Dataset

    p = plan.config.profile
    data = Dataset(plan.paths("preprocess", dataset=dataset)["dataset.npz"])
    size, chans, k = data.image_size, data.channels, data.num_classes
    peak = measure_peak(repeats)  # read again at the end (below)
    unet = make_unet(unet_config(p.ddpm, size, chans, k))
    scheduler = train_scheduler(scheduler_config(p.ddpm))
    out = {"machine": {"cpu": cpu_name(), "python": platform.python_version(), "torch": torch.__version__,
                       "threads": torch.get_num_threads(), "bf16_supported": bf16_supported()},
           "profile": plan.profile, "dataset": dataset, "image_size": size, "channels": chans, "classes": k,
           "unet_parameters": sum(q.numel() for q in unet.parameters()), "peak": peak, "kernels": {}}
    kernels = out["kernels"]

    # DDPM training step: mgdm's (v/eps target, Min-SNR weight, clipping, AdamW) vs a textbook eps-MSE loop
    b = p.ddpm.batch_size
    g = torch.Generator().manual_seed(0)
    x0, y = torch.randn(b, chans, size, size, generator=g), torch.randint(0, k, (b,), generator=g)
    noise, t = torch.randn(x0.shape, generator=g), torch.randint(0, 1000, (b,), generator=g)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-5)

    def ddpm_step(autocast: bool = False):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = diffusion_loss(unet, scheduler, x0, y, noise, t, p.ddpm)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()

    def plain_ddpm_step():
        loss = F.mse_loss(unet(scheduler.add_noise(x0, noise, t), t, class_labels=y).sample, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()

    ways = {"mgdm": ddpm_step, "plain": plain_ddpm_step}
    if bf16_supported():
        ways["bf16"] = lambda: ddpm_step(True)
    f = figures(ways, repeats, b)
    ddpm = kernels["ddpm_train_step"] = {**f.pop("mgdm"), **f}
    if "bf16" in ddpm:  # fp32 is the default; bf16 only where it is measured faster (and shown not to change results)
        put_ratio(ddpm["bf16"], "vs_fp32", ratio(ddpm, ddpm["bf16"]))

    # Sampling: `sample_steps` DDIM steps of a batch, per guidance kind; images/s at the profile's steps
    unet.eval().requires_grad_(False)
    net = NoisyClassifier(chans, k, p.guidance_net.width, dropout=p.guidance_net.dropout).eval().requires_grad_(False)
    sampler, inverter = ddim_schedulers(scheduler_config(p.ddpm))
    n = p.sampling.batch_size
    xs, ys = torch.randn(n, chans, size, size, generator=g), torch.randint(0, k, (n,), generator=g)
    entropy = MEASURES["entropy"]
    samplers = {
        "none": lambda: guided_ddim(unet, xs, ys, sampler, sample_steps, null_label=k),
        "measure": lambda: guided_ddim(unet, xs, ys, sampler, sample_steps, null_label=k, guidance_net=net,
                                       measure=entropy, scale=1.0),
        "cfg": lambda: guided_ddim(unet, xs, ys, sampler, sample_steps, null_label=k, cfg_scale=1.0),
        "mgdm": lambda: mgdm_two_stage(guidance_model(unet, net, "cfg", 1.0, sampler, k),
                                       guidance_model(unet, net, "entropy", 1.0, sampler, k),
                                       guidance_model(unet, net, "none", 0.0, sampler, k), xs, ys, sampler, inverter,
                                       sample_steps),
    }
    plain = {"measure": lambda: plain_guided_ddim(unet, net, xs, ys, sampler, sample_steps),
             "cfg": lambda: plain_cfg_ddim(unet, xs, ys, sampler, sample_steps, k)}
    scale_to_profile = sample_steps / p.sampling.ddim_steps  # images/s at the profile's step count
    f = figures({**samplers, **{f"{name} (plain)": fn for name, fn in plain.items()}}, repeats, n)
    for name in samplers:
        kernels[f"sample_{name}"] = {**f[name], "images_per_s_at_profile_steps": f[name]["items_per_s"]
                                     * scale_to_profile, **({"plain": f[f"{name} (plain)"]} if name in plain else {})}
    base = kernels["sample_none"]
    for name in samplers:
        kernels[f"sample_{name}"]["cost_vs_none"] = ratio(kernels[f"sample_{name}"], base)["median"]
    # the guidance net's forward and backward are extra FLOPs: no implementation runs below this ratio
    kernels["sample_measure"]["flop_ratio_vs_none"] = kernels["sample_measure"]["gflop"] / kernels["sample_none"]["gflop"]

    # Downstream training step per network, and a torchvision ResNet-18 in a textbook loop
    bs = p.downstream.batch_size
    xb, yb = torch.randn(bs, chans, size, size, generator=g), torch.randint(0, k, (bs,), generator=g)
    steps = {name: classifier_step(create_network(name, k, chans, size), xb, yb) for name in p.downstream.networks}
    if "resnet18" in steps:
        import torchvision

        tv = torchvision.models.resnet18(num_classes=k)
        tv.conv1, tv.maxpool = torch.nn.Conv2d(chans, 64, 3, 1, 1, bias=False), torch.nn.Identity()
        steps["resnet18 (plain)"] = classifier_step(tv, xb, yb)
    f = figures(steps, repeats, bs)
    for name in p.downstream.networks:
        kernels[f"train_{name}"] = {**f[name], **({"plain": f["resnet18 (plain)"]} if name == "resnet18" else {})}

    for f in kernels.values():
        if "plain" in f:
            put_ratio(f, "vs_plain", ratio(f["plain"], f))
    out["overhead"] = job_overhead.measure(plan, data, kernels, repeats)
    if with_variants:
        first = p.downstream.networks[0]
        out["variants"] = variants(unet, net, samplers, sampler, sample_steps, (xs, ys, k),
                                   (first, xb, yb, chans, size), repeats)
    # the peak read again, the faster reading kept: a slow spell on a shared host can cover all of one reading
    # (a start-only peak read 108 GFLOP/s on a machine that gave 137-163 in other runs)
    last = measure_peak(repeats)
    out["peak_readings"] = {"start": peak, "end": last}
    out["peak"] = {k: max(v, last[k]) for k, v in peak.items()}
    conv_peak = out["peak"]["conv3x3_fp32_gflop_per_s"]
    for name, f in kernels.items():
        for _, g in labelled(name, f):
            g["fraction_of_peak"] = g["gflop_per_s"] / conv_peak
    return out


def versus(eager, ways: dict, repeats: int, compare: bool = True) -> dict:
    """Each way's first call (compilation included) apart, then the eager kernel and every way timed in turns:
    {eager_s, way: {median_s, ..., first_call_s, speedup, max_abs_diff against the eager output if `compare`}}."""
    reference, out = eager(), {}
    for name, fn in ways.items():
        t0 = time.perf_counter()
        first = fn()
        out[name] = {"first_call_s": time.perf_counter() - t0}
        if compare:
            out[name]["max_abs_diff"] = (first.float() - reference.float()).abs().max().item()
    times = timed_in_turns({"eager": eager, **ways}, repeats, warmup=0)
    for name in ways:
        out[name].update(times[name])
        put_ratio(out[name], "speedup", ratio(times["eager"], times[name]))
    return {"eager_s": times["eager"]["median_s"], **out}


def variants(unet, net, samplers, scheduler, steps, sample_data, train_data, repeats) -> dict:
    """Speed-ups timed in turns with the eager figure: {kernel: {eager_s, variant: {median_s, speedup, ...}}}."""
    xs, ys, k = sample_data
    res: dict = {}
    for name in ("none", "measure"):
        eager = samplers[name]
        measure, scale = (MEASURES["entropy"], 1.0) if name == "measure" else (None, 0.0)

        def sample(u, x, g):  # the eager sampler's call, on another copy of the models
            return guided_ddim(u, x, ys, scheduler, steps, null_label=k, guidance_net=g, measure=measure, scale=scale)

        cl_unet = copy.deepcopy(unet).to(memory_format=torch.channels_last)
        cl_net = copy.deepcopy(net).to(memory_format=torch.channels_last)
        compiled_unet, compiled_net = torch.compile(copy.deepcopy(unet)), torch.compile(copy.deepcopy(net))

        def inference():
            with torch.inference_mode():
                return eager()
        ways = {"channels_last": lambda: sample(cl_unet, xs.to(memory_format=torch.channels_last), cl_net),
                "compile": lambda: sample(compiled_unet, xs, compiled_net)}
        if name == "none":  # guidance needs autograd: inference_mode cannot wrap it
            ways["inference_mode"] = inference
        res[f"sample_{name}"] = versus(eager, ways, repeats)

    network, xb, yb, chans, size = train_data
    model = create_network(network, k, chans, size)
    res[f"train_{network}"] = versus(classifier_step(copy.deepcopy(model), xb, yb), {
        "channels_last": classifier_step(copy.deepcopy(model).to(memory_format=torch.channels_last),
                                         xb.to(memory_format=torch.channels_last), yb),
        "compile": classifier_step(torch.compile(copy.deepcopy(model)), xb, yb)}, repeats, compare=False)
    # several runs of one network: one after the other (the grid trainer's way) or stacked by torch.func
    copies = 2  # stacked activations grow with the copies: four ResNet-18s at 28 px took over 16 GB here
    one_by_one, stacked, grad_diff = stacked_steps(network, k, chans, size, xb, yb, copies)
    runs = versus(one_by_one, {"stacked": stacked}, repeats, compare=False)
    runs["stacked"]["max_abs_diff"] = grad_diff
    res[f"train_{network} x{copies} runs"] = runs
    res["thread_placement"] = thread_placement({
        f"train_{network}": ("train", (network, k, chans, size, len(xb))),
        "sample_measure": ("sample", (unet, net, xs, ys, scheduler, steps, k))}, repeats)
    return res


_kernel = None  # a thread-placement worker's kernel, built in its own process by _start_worker


def _start_worker(kind: str, threads: int, args: tuple) -> None:
    """Build one kernel in a fresh worker process at `threads` torch threads, and warm it up."""
    global _kernel
    torch.set_num_threads(threads)
    if kind == "train":
        network, k, chans, size, batch = args
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(batch, chans, size, size, generator=g), torch.randint(0, k, (batch,), generator=g)
        _kernel = classifier_step(create_network(network, k, chans, size), x, y)
    else:
        unet, net, x, y, sampler, steps, k = args

        def _kernel():
            return guided_ddim(unet, x, y, sampler, steps, null_label=k, guidance_net=net,
                               measure=MEASURES["entropy"], scale=1.0)
    _kernel()


def _call() -> tuple[float, torch.Tensor | None]:
    t0 = time.perf_counter()
    out = _kernel()
    return time.perf_counter() - t0, out


def thread_placement(jobs: dict, repeats: int) -> dict:
    """Per kernel, calls per second of the whole machine's 2 cores: one 2-thread job, or two 1-thread jobs at
    once (as Snakemake packs jobs of `threads: 1`), in turns round by round (three workers, built once, idle
    while the others run); for a sampler, whether 1 and 2 threads give the same images."""
    ctx = multiprocessing.get_context("spawn")
    out = {}
    for name, (kind, args) in jobs.items():
        pools = [ctx.Pool(1, _start_worker, (kind, threads, args)) for threads in (2, 1, 1)]
        try:
            for pool in pools:  # every worker built and warm before anything is timed
                pool.apply(int)
            rounds, outputs = [], {}
            for r in range(repeats):
                rate = {}
                for way in ("one", "two") if r % 2 == 0 else ("two", "one"):
                    if way == "one":
                        t, outputs["one"] = pools[0].apply(_call)
                        rate["one"] = 1 / t
                    else:
                        (t1, outputs["two"]), (t2, _) = [c.get() for c in [p.apply_async(_call) for p in pools[1:]]]
                        rate["two"] = 1 / t1 + 1 / t2
                rounds.append(rate)
        finally:
            for pool in pools:
                pool.terminate()
        out[name] = {"one_2thread_job_per_s": statistics.median(r["one"] for r in rounds),
                     "two_1thread_jobs_per_s": statistics.median(r["two"] for r in rounds)}
        put_ratio(out[name], "speedup", spread(r["two"] / r["one"] for r in rounds))
        if outputs["one"] is not None:
            out[name]["max_abs_diff_1_vs_2_threads"] = (outputs["two"] - outputs["one"]).abs().max().item()
    return out


def stacked_steps(network: str, k: int, chans: int, size: int, x: torch.Tensor, y: torch.Tensor, copies: int):
    """`copies` runs of one network (each its own initialisation and AdamW) stepped one after the other, and the
    same runs as one step over their stacked parameters (torch.func: `vmap` of `grad` through `functional_call`,
    BatchNorm's running statistics batched with the buffers); and the largest difference between a stacked
    run's gradient and the same run's alone."""
    from torch.func import functional_call, grad, stack_module_state, vmap

    models = []
    for seed in range(copies):
        torch.manual_seed(seed)
        models.append(create_network(network, k, chans, size).train())
    solo = copy.deepcopy(models[0])
    steps = [classifier_step(m, x, y) for m in models]
    params, buffers = stack_module_state(models)
    shell = copy.deepcopy(models[0]).to("meta")
    xs, ys = x.expand(copies, *x.shape), y.expand(copies, *y.shape)
    grads = vmap(grad(lambda p, b, xi, yi: F.cross_entropy(functional_call(shell, (p, b), (xi,)), yi)),
                 randomness="different")
    opt = torch.optim.AdamW(list(params.values()), lr=1e-5)

    def one_by_one():
        for step in steps:
            step()

    def stacked():
        for name, g in grads(params, buffers, xs, ys).items():
            params[name].grad = g
        opt.step()

    F.cross_entropy(solo(x), y).backward()
    first = grads(params, buffers, xs, ys)
    diff = max((first[name][0] - p.grad).abs().max().item() for name, p in solo.named_parameters())
    return one_by_one, stacked, diff


def classifier_step(model, x, y):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


@torch.no_grad()
def plain_guided_ddim(unet, net, x, y, scheduler, steps):
    """The plain way to guide: measure the predicted x_0 and differentiate the whole step, UNet included
    (timing only: the output is read as eps whatever the model predicts)."""
    scheduler.set_timesteps(steps)
    zero = torch.zeros(len(x), dtype=torch.long)
    for t in scheduler.timesteps:
        a = scheduler.alphas_cumprod[t]
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            eps = unet(xg, t.expand(len(x)), class_labels=y).sample
            x0 = (xg - (1 - a).sqrt() * eps) / a.sqrt()
            grad = torch.autograd.grad(MEASURES["entropy"](net(x0, zero), y).sum(), xg)[0]
        x = scheduler.step(eps.detach() - (1 - a).sqrt() * grad, t, x).prev_sample
    return x


@torch.no_grad()
def plain_cfg_ddim(unet, x, y, scheduler, steps, null_label):
    """The plain way to do CFG: a conditional and an unconditional forward, one after the other."""
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        tt = t.expand(len(x))
        eps_c = unet(x, tt, class_labels=y).sample
        eps_u = unet(x, tt, class_labels=torch.full_like(y, null_label)).sample
        x = scheduler.step(eps_c + (eps_c - eps_u), t, x).prev_sample
    return x


def markdown(result: dict) -> str:
    """The benchmark as a table: each kernel's seconds, throughput, GFLOP/s, fraction of peak, ratio to plain."""
    peak = result["peak"]
    lines = [f"Benchmark of profile `{result['profile']}` on {result['dataset']} ({result['channels']} channels, "
             f"{result['classes']} classes, {result['image_size']} px) on {result['machine']['cpu']}, "
             f"{result['machine']['threads']} threads, torch {result['machine']['torch']}. Measured peak (the fastest "
             "repeat, at the start or the end): "
             + ", ".join(f"{k.removesuffix('_gflop_per_s')} {v:.0f} GFLOP/s" for k, v in peak.items())
             + ". Seconds: median (min-max) over repeats; fraction of the fp32 conv3x3 peak; 'vs plain': the plain "
             "way's seconds / mgdm's (above 1: mgdm is faster), the median (min-max) of its ratios over rounds in "
             "which the two ran in turns.", "",
             "| kernel | seconds | items/s | GFLOP | GFLOP/s | of peak | vs plain |", "|---|---|---|---|---|---|---|"]
    for name, f in result["kernels"].items():
        for label, g in labelled(name, f):
            vs = with_range(f, "vs_plain") if label == name and "vs_plain" in f else ""
            lines.append(f"| {label} | {g['median_s']:.3f} ({g['min_s']:.3f}-{g['max_s']:.3f}) | {g['items_per_s']:.1f} "
                         f"| {g['gflop']:.1f} | {g['gflop_per_s']:.1f} | {g['fraction_of_peak']:.2f} | {vs} |")
    m = result["kernels"]["sample_measure"]
    lines += ["", f"Measure-guided sampling does {m['flop_ratio_vs_none']:.2f}x the FLOPs of unguided sampling (the "
              f"guidance net's forward and backward at every step) and takes {m['cost_vs_none']:.2f}x its time."]
    if "bf16" in result["kernels"]["ddpm_train_step"]:
        bf = result["kernels"]["ddpm_train_step"]["bf16"]
        lines += ["", f"Under bf16 autocast the DDPM training step is {bf['vs_fp32']:.2f}x as fast as in fp32 "
                  f"({bf['vs_fp32_range'][0]:.2f}-{bf['vs_fp32_range'][1]:.2f} over rounds)."]
    if "overhead" in result:
        lines += ["", *job_overhead.markdown(result["overhead"])]
    if "variants" in result:
        lines += ["", "Variants, timed in turns with the eager fp32 figure (speed-up above 1: faster, the median "
                  "(min-max) over rounds; "
                  "first call: compilation included; max |diff|: against the eager output; for stacked runs, the "
                  "eager figure is the same runs one after the other and the diff a stacked run's gradient against "
                  "its own alone).", "",
                  "| kernel | variant | seconds | speed-up | first call s | max abs diff |", "|---|---|---|---|---|---|"]
        for kernel, vs in result["variants"].items():
            if kernel == "thread_placement":
                continue
            for name, v in vs.items():
                if isinstance(v, dict):
                    diff = f"{v['max_abs_diff']:.1e}" if "max_abs_diff" in v else ""
                    lines.append(f"| {kernel} | {name} | {v['median_s']:.3f} (eager {vs['eager_s']:.3f}) | "
                                 f"{with_range(v, 'speedup')} | {v['first_call_s']:.1f} | {diff} |")
        lines += ["", "Thread placement: calls per second of the whole machine, one 2-thread job against two 1-thread "
                  "jobs side by side, in turns (speed-up: the median (min-max) over rounds; max |diff|: a 1-thread "
                  "job's output against the 2-thread job's).", "",
                  "| kernel | one 2-thread job /s | two 1-thread jobs /s | speed-up | max abs diff |", "|---|---|---|---|---|"]
        for kernel, tp in result["variants"]["thread_placement"].items():
            diff = f"{tp['max_abs_diff_1_vs_2_threads']:.1e}" if "max_abs_diff_1_vs_2_threads" in tp else ""
            lines.append(f"| {kernel} | {tp['one_2thread_job_per_s']:.3f} | {tp['two_1thread_jobs_per_s']:.3f} | "
                         f"{with_range(tp, 'speedup')} | {diff} |")
    return "\n".join(lines) + "\n"


def main(a) -> int:
    from mgdm.files import atomic_path, write_json

    _, plan, name = open_tool(a)
    data = plan.paths("preprocess", dataset=name)["dataset.npz"]
    if not Path(data).exists():
        raise ConfigError(f"{data}: not found; run `mgdm preprocess --profile {plan.profile} --dataset {name}` first "
                          "(the benchmark uses the dataset's channels, classes and size)")
    if a.device:  # the downstream grid on an accelerator (mgdm.tools.device_benchmark)
        from mgdm.tools import device_benchmark

        out = Path(a.output or f"results/bench/{plan.profile}-{torch.device(a.device).type}.json")
        result = device_benchmark.run(plan, name, a.device, a.repeats)
        text = device_benchmark.markdown(result)
    else:
        out = Path(a.output or f"results/bench/{plan.profile}.json")
        result = run(plan, name, a.repeats, with_variants=a.variants)
        text = markdown(result)
    write_json(out, result)
    with atomic_path(out.with_suffix(".md")) as tmp:
        tmp.write_text(text)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0
