"""Train a zoo network on (real + synthetic) images, select the epoch on the real validation split."""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mgdm.classifiers.zoo import SmallImageNet, create_network
from mgdm.config import ClassifierTraining
from mgdm.files import load_training_state, read_json, save_training_state
from mgdm.classifiers.grading import auc


@torch.no_grad()
def predict_proba(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256, device: str = "cpu") -> np.ndarray:
    """Return softmax probabilities (N, K) for images in [-1, 1]."""
    model.eval()
    out = [F.softmax(model(images[i:i + batch_size].to(device)), -1).cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy()


def train_classifier(network: str, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                     num_classes: int, cfg: ClassifierTraining, seed: int = 0, device: str = "cpu",
                     progress: bool = True, weights: str | None = None,
                     resume_path: str | Path | None = None) -> tuple[SmallImageNet, dict]:
    """Return (the model at its best validation AUC, {history, best_epoch, train_s}).

    With `resume_path`, the state after every epoch is kept there (safetensors + JSON) and a killed run
    continues from its last finished epoch with the same result as an unbroken one (each epoch's data
    order and flips come from a generator seeded by (seed, epoch)); the file is removed at the end.
    """
    images, labels = train
    torch.manual_seed(seed)
    model = create_network(network, num_classes, images.shape[1], images.shape[-1], weights).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(labels) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=0.15)
    best, best_score, best_epoch = copy.deepcopy(model), -1.0, -1
    history = {"train_loss": [], "val_auc": [], "val_acc": []}
    # what the state depends on: a state written for other settings or data is not resumed
    meta = {"network": network, "seed": seed, "config": cfg.model_dump(), "n_train": len(labels),
            "label_sum": int(labels.sum()), "image_sum": float(images.double().sum())}
    start = 0
    if resume_path is not None:
        start = load_training_state(resume_path, {"model": model, "best": best}, opt, meta)
        if start:
            info = read_json(Path(resume_path).with_suffix(".json"))
            sched.load_state_dict(info["scheduler"])
            history, best_score, best_epoch = info["history"], info["best_score"], info["best_epoch"]
    t0 = time.time()
    bar = tqdm(range(start, cfg.epochs), initial=start, total=cfg.epochs, desc=f"train {network}",
               disable=not progress)
    for epoch in bar:
        model.train()
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        torch.manual_seed(seed * 1_000_003 + epoch)  # dropout / drop-path of the networks that have them
        order = torch.randperm(len(labels), generator=g)
        total = 0.0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            x, y = images[idx], labels[idx]
            if cfg.hflip:
                flip = torch.rand(len(x), generator=g) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            loss = F.cross_entropy(model(x.to(device)), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        probs = predict_proba(model, val[0], device=device)
        val_auc = auc(val[1].numpy(), probs)
        val_acc = float((probs.argmax(1) == val[1].numpy()).mean())
        history["train_loss"].append((epoch + 1, total / len(labels)))
        history["val_auc"].append((epoch + 1, val_auc))
        history["val_acc"].append((epoch + 1, val_acc))
        score = val_auc if not math.isnan(val_auc) else val_acc
        if score > best_score:
            best.load_state_dict(model.state_dict())
            best_score, best_epoch = score, epoch + 1
        bar.set_postfix(loss=f"{total / len(labels):.3f}", val_auc=f"{val_auc:.3f}")
        if resume_path is not None:
            save_training_state(resume_path, epoch + 1, {"model": model, "best": best}, opt, meta,
                                {"scheduler": sched.state_dict(), "history": history, "best_score": best_score,
                                 "best_epoch": best_epoch})
    if resume_path is not None:
        for f in (Path(resume_path), Path(resume_path).with_suffix(".json")):
            f.unlink(missing_ok=True)
    return best.eval(), {"history": history, "best_epoch": best_epoch, "train_s": time.time() - t0,
                         "resumed_from_epoch": start}
