"""The downstream jobs' overhead on a profile's job mix, for `mgdm benchmark`.

A job's process start (a fresh interpreter importing what a job imports), one resume-state write per network
(model, best model, AdamW state), each job's training seconds from its measured step (the benchmark's
`train_<network>` kernel), and from these the overhead of the old way (a process per job, a state every
epoch) beside the grid trainer's (a process per network group, a state every `checkpoint_s` of wall clock),
as a fraction of job time.
"""

from __future__ import annotations

import copy
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from mgdm.classifiers.zoo import create_network
from mgdm.files import save_training_state
from mgdm.tools.timing import timed
from mgdm.workflow.plan import Plan


JOB_IMPORTS = ("import torch, timm, sklearn.metrics, mlflow, mgdm.workflow.runner, mgdm.stages.train_baseline, "
               "mgdm.workflow.tracking")


def process_start_s(repeats: int) -> dict:
    """Seconds for a fresh interpreter to import what a downstream job imports before it works."""
    def start():
        subprocess.run([sys.executable, "-c", JOB_IMPORTS], check=True)
    return timed(start, repeats, warmup=1)


def state_write_s(network: str, data, repeats: int) -> dict:
    """Seconds and MB of one resume state of `network` (model, best model, AdamW moments) as jobs write it."""
    model = create_network(network, data.num_classes, data.channels, data.image_size)
    best = copy.deepcopy(model)
    x = torch.randn(2, data.channels, data.image_size, data.image_size)
    opt = torch.optim.AdamW(model.parameters())
    F.cross_entropy(model(x), torch.zeros(2, dtype=torch.long)).backward()
    opt.step()  # AdamW's moments exist, as in a state written after an epoch
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.safetensors"
        t = timed(lambda: save_training_state(path, 1, {"model": model, "best": best}, opt, {}), repeats)
        t["mb"] = path.stat().st_size / 1e6
    return t


def measure(plan: Plan, data, kernels: dict, repeats: int) -> dict:
    """The profile's downstream jobs: per network its training seconds (measured step x steps), the state
    write, and the overhead of a process per job with a state every epoch (old) against a process per
    network group with a state every `checkpoint_s` (grid trainer), as fractions of job time."""
    d = plan.config.profile.downstream
    sets = plan.values["set"]
    n_real = len(data.numpy("train")[1])
    n_synth = plan.config.profile.sampling.per_class * data.num_classes  # the balanced sets' size
    runs = len(d.seeds) * (1 + len(sets))  # a network's jobs: seeds x (real + sets)
    start = process_start_s(repeats)
    out = {"process_start_s": start["median_s"], "jobs_per_group": runs, "networks": {}}
    old_total = new_total = work_total = 0.0
    for name in d.networks:
        step = kernels[f"train_{name}"]["median_s"]
        steps = [d.epochs * math.ceil((n_real + n) / d.batch_size) for n in [0] + [n_synth] * len(sets)]
        train_s = step * sum(steps) / len(steps)  # the mean job's training seconds
        write = state_write_s(name, data, repeats)
        old = start["median_s"] + d.epochs * write["median_s"]
        # states at an epoch's end, never after the last: every epoch at checkpoint_s 0
        writes = d.epochs - 1 if d.checkpoint_s == 0 else min(d.epochs - 1, math.floor(train_s / d.checkpoint_s))
        new = start["median_s"] / runs + writes * write["median_s"]
        out["networks"][name] = {"train_s": train_s, "state_write_s": write["median_s"], "state_mb": write["mb"],
                                 "old_overhead_s": old, "new_overhead_s": new,
                                 "old_fraction": old / train_s, "new_fraction": new / train_s}
        old_total, new_total, work_total = old_total + old * runs, new_total + new * runs, work_total + train_s * runs
    out["mix"] = {"train_s": work_total, "old_overhead_s": old_total, "new_overhead_s": new_total,
                  "old_fraction": old_total / work_total, "new_fraction": new_total / work_total}
    return out


def markdown(o: dict) -> list[str]:
    """The overhead as lines of the benchmark's table: a sentence, then one row per network and the mix."""
    lines = [f"Downstream jobs' overhead on this profile's mix ({o['jobs_per_group']} jobs per network): a "
             f"process start takes {o['process_start_s']:.1f} s. Old: a process per job and a resume state "
             "every epoch; grid trainer: a process per network group and a state every `checkpoint_s` of wall "
             "clock. Fractions of the job's training seconds (its measured step x its steps).", "",
             "| network | job training s | state write s | state MB | old overhead | grid trainer |",
             "|---|---|---|---|---|---|"]
    for name, n in o["networks"].items():
        lines.append(f"| {name} | {n['train_s']:.1f} | {n['state_write_s']:.3f} | {n['state_mb']:.1f} | "
                     f"{n['old_overhead_s']:.1f} s ({n['old_fraction']:.1%}) | "
                     f"{n['new_overhead_s']:.2f} s ({n['new_fraction']:.1%}) |")
    m = o["mix"]
    lines.append(f"| the mix | {m['train_s']:.0f} | | | {m['old_overhead_s']:.0f} s ({m['old_fraction']:.1%}) | "
                 f"{m['new_overhead_s']:.0f} s ({m['new_fraction']:.1%}) |")
    return lines
