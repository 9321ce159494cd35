"""Train zoo networks on (real + synthetic) images, select each on the real validation split.

`train_runs` trains all runs of one network (seeds x training sets) in one process: the data sit on the
device once, the runs train one after the other and each is handed back as it finishes, so memory holds
one run's model, optimiser and best model at a time (56 inception_v3 runs held together need 24 GB), and
its caller can keep a finished run before the next starts. Each run keeps the random stream it has alone
(its seed and the epoch decide initialisation, data order, flips and dropout), so a run's result does not
depend on what it was grouped with. Nothing in an epoch waits on the host: the loss is summed, the
validation AUC computed and the best epoch kept on the device; the host reads them at a checkpoint and
at the end. `train_classifier` is the one-run case.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mgdm.classifiers.grading import device_auc
from mgdm.classifiers.zoo import SmallImageNet, create_network
from mgdm.config import ClassifierTraining
from mgdm.files import load_training_state, read_training_info, save_training_state
from mgdm.interrupts import stop, stop_at_boundary, stop_requested


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Softmax probabilities (N, K) of images in [-1, 1], on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([F.softmax(model(images[i:i + batch_size].to(device)).float(), -1)
                      for i in range(0, len(images), batch_size)])


def predict_proba(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256,
                  device: str = "cpu") -> np.ndarray:
    """Return softmax probabilities (N, K) for images in [-1, 1] as a host array."""
    return predict(model.to(device), images, batch_size).cpu().numpy()


@dataclass
class Run:
    """One training run: its seed, its training images (in [-1, 1]) and labels, and where its resume
    state lives (None: not resumable)."""

    seed: int
    images: torch.Tensor
    labels: torch.Tensor
    resume_path: str | Path | None = None


@dataclass
class _Live:
    """A run in training: model, the best model so far, optimiser, schedule and what the epochs gave."""

    run: Run
    model: torch.nn.Module
    best: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    meta: dict
    epoch: int = 0
    resumed_from: int = 0
    seconds: float = 0.0
    best_score: torch.Tensor | float = -1.0
    best_epoch: torch.Tensor | int = -1
    history: dict = field(default_factory=lambda: {"train_loss": [], "val_auc": [], "val_acc": []})


def _start(network: str, run: Run, num_classes: int, cfg: ClassifierTraining, device: torch.device,
           weights: str | None) -> _Live:
    images, labels = run.images, run.labels
    torch.manual_seed(run.seed)
    model = create_network(network, num_classes, images.shape[1], images.shape[-1], weights).to(device)
    best = copy.deepcopy(model)
    if device.type == "cuda":
        model, best = (m.to(memory_format=torch.channels_last) for m in (model, best))
    # fused: one kernel for every parameter's update on a GPU; on the CPU the default loop, which the
    # results of earlier runs came from
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            fused=True if device.type == "cuda" else None)
    steps_per_epoch = math.ceil(len(labels) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=0.15)
    # what the state depends on: a state written for other settings or data is not resumed
    meta = {"network": network, "seed": run.seed,
            "config": cfg.model_dump(exclude={"checkpoint_s", "networks", "seeds", "sets"}),
            "n_train": len(labels), "label_sum": int(labels.sum()), "image_sum": float(images.double().sum())}
    live = _Live(run, model, best, opt, sched, meta)
    if run.resume_path is not None:
        live.epoch = live.resumed_from = load_training_state(run.resume_path, {"model": model, "best": best},
                                                             opt, meta)
        if live.epoch:
            info = read_training_info(run.resume_path)
            sched.load_state_dict(info["scheduler"])
            live.history, live.best_score, live.best_epoch = info["history"], info["best_score"], info["best_epoch"]
            live.seconds = info.get("train_s", 0.0)
    return live


def _train_epoch(live: _Live, images: torch.Tensor, labels: torch.Tensor, cfg: ClassifierTraining) -> torch.Tensor:
    """One epoch of `live`; its summed loss as a device tensor (float64: the host's sum, without a sync)."""
    seed, epoch, device = live.run.seed, live.epoch, images.device
    live.model.train()
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    torch.manual_seed(seed * 1_000_003 + epoch)  # dropout / drop-path of the networks that have them
    if device.type == "cuda":
        torch.cuda.manual_seed(seed * 1_000_003 + epoch)
    # the epoch's order and flips, drawn on the host in the order a run alone draws them, sent once
    order = torch.randperm(len(labels), generator=g)
    batches = list(order.split(cfg.batch_size))
    flips = [torch.rand(len(idx), generator=g) < 0.5 for idx in batches] if cfg.hflip else None
    batches = [idx.to(device, non_blocking=True) for idx in batches]
    flips = [f.to(device, non_blocking=True) for f in flips] if flips else None
    total = torch.zeros((), dtype=torch.float64, device=device)
    for b, idx in enumerate(batches):
        x, y = images[idx], labels[idx]
        if flips is not None:
            x = torch.where(flips[b][:, None, None, None], x.flip(-1), x)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = F.cross_entropy(live.model(x), y)
        live.opt.zero_grad(set_to_none=True)
        loss.backward()
        live.opt.step()
        live.sched.step()
        total += loss.detach().double() * len(idx)
    return total


@torch.no_grad()
def _validate(live: _Live, val: tuple[torch.Tensor, torch.Tensor], loss_sum: torch.Tensor, n_train: int) -> None:
    """Score the epoch on validation AUC (accuracy where AUC is undefined) and keep the best model, on the device."""
    with torch.autocast(val[0].device.type, dtype=torch.bfloat16, enabled=val[0].device.type == "cuda"):
        probs = predict(live.model, val[0])
    val_auc = device_auc(val[1], probs)
    val_acc = (probs.argmax(1) == val[1]).double().mean()
    score = torch.where(torch.isnan(val_auc), val_acc, val_auc)
    better = score > live.best_score
    for b, m in zip(live.best.state_dict().values(), live.model.state_dict().values()):
        b.copy_(torch.where(better, m, b))
    live.best_score = torch.where(better, score, torch.as_tensor(live.best_score, dtype=torch.float64,
                                                                 device=score.device))
    live.best_epoch = torch.where(better, live.epoch + 1, torch.as_tensor(live.best_epoch, device=score.device))
    live.epoch += 1
    for key, value in (("train_loss", loss_sum / n_train), ("val_auc", val_auc), ("val_acc", val_acc)):
        live.history[key].append((live.epoch, value))


def _host(live: _Live) -> tuple[dict, float, int]:
    """History, best score and best epoch as host numbers (the one place an epoch's results wait on the device)."""
    history = {k: [(e, float(v)) for e, v in points] for k, points in live.history.items()}
    return history, float(live.best_score), int(live.best_epoch)


def _save(live: _Live) -> None:
    history, best_score, best_epoch = _host(live)
    save_training_state(live.run.resume_path, live.epoch, {"model": live.model, "best": live.best}, live.opt,
                        live.meta, {"scheduler": live.sched.state_dict(), "history": history,
                                    "best_score": best_score, "best_epoch": best_epoch, "train_s": live.seconds})


def train_runs(network: str, runs: list[Run], val: tuple[torch.Tensor, torch.Tensor], num_classes: int,
               cfg: ClassifierTraining, device: str = "cpu", progress: bool = True,
               weights: str | None = None) -> Iterator[tuple[SmallImageNet, dict]]:
    """Train every run of `network`, one after the other; yield per run, as it finishes, (the model at its
    best validation AUC, {history, best_epoch, train_s, resumed_from_epoch}).

    Runs with a `resume_path` keep their state there every `cfg.checkpoint_s` seconds of wall clock (at an
    epoch's end; 0: every epoch); a killed run continues from its last state with the result of an unbroken
    one. A run's state is removed when it finishes: what it gave is its caller's to keep.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    val = (val[0].to(dev), val[1].to(dev))
    # each distinct training tensor goes to the device once (the real images every run shares)
    resident: dict[int, torch.Tensor] = {}

    def on_device(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in resident:  # (setdefault would copy before looking)
            resident[id(t)] = t.to(dev)
        return resident[id(t)]

    bar = tqdm(total=len(runs) * cfg.epochs, desc=f"train {network} x{len(runs)}", disable=not progress)
    last_save = time.time()
    try:
        for run in runs:
            images, labels = on_device(run.images), on_device(run.labels)
            live = _start(network, run, num_classes, cfg, dev, weights)
            bar.update(live.epoch)
            with stop_at_boundary():  # Ctrl-C or SIGTERM: the state at this epoch's end is kept, then stop
                for epoch in range(live.epoch, cfg.epochs):
                    t0 = time.time()
                    loss_sum = _train_epoch(live, images, labels, cfg)
                    _validate(live, val, loss_sum, len(labels))
                    live.seconds += time.time() - t0  # the host ran ahead of the device; the sum is right at the end
                    bar.update()
                    more = epoch + 1 < cfg.epochs
                    stopping = more and stop_requested()
                    due = time.time() - last_save >= cfg.checkpoint_s
                    if run.resume_path is not None and more and (due or stopping):
                        _save(live)
                        last_save = time.time()
                        bar.set_postfix(val_auc=f"{float(live.history['val_auc'][-1][1]):.3f}")
                    if stopping:
                        stop(f"epoch {epoch + 1} of {cfg.epochs} (seed {run.seed})" if run.resume_path else "")
            history, _, best_epoch = _host(live)
            if run.resume_path is not None:
                for f in (Path(run.resume_path), Path(run.resume_path).with_suffix(".json")):
                    f.unlink(missing_ok=True)
            yield live.best.eval(), {"history": history, "best_epoch": best_epoch, "train_s": live.seconds,
                                     "resumed_from_epoch": live.resumed_from}
            del live  # the next run's model and optimiser take its place
    finally:  # also when the caller stops early (train_classifier takes the first run)
        bar.close()


def train_classifier(network: str, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                     num_classes: int, cfg: ClassifierTraining, seed: int = 0, device: str = "cpu",
                     progress: bool = True, weights: str | None = None,
                     resume_path: str | Path | None = None) -> tuple[SmallImageNet, dict]:
    """One run of `train_runs`: (the model at its best validation AUC, {history, best_epoch, train_s, ...})."""
    return next(train_runs(network, [Run(seed, *train, resume_path)], val, num_classes, cfg, device, progress,
                           weights))
