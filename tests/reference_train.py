"""The downstream training loop as it was before the grid trainer (commit ce560a0), frozen: the known answer
a run trained alone by `mgdm.classifiers.train` must equal bit for bit. Resume is left out (tested on the new
loop against itself)."""

import copy
import math

import torch
import torch.nn.functional as F

from mgdm.classifiers.grading import auc
from mgdm.classifiers.train import predict_proba
from mgdm.classifiers.zoo import create_network


def train_classifier(network, train, val, num_classes, cfg, seed=0, device="cpu"):
    images, labels = train
    torch.manual_seed(seed)
    model = create_network(network, num_classes, images.shape[1], images.shape[-1]).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(labels) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=0.15)
    best, best_score, best_epoch = copy.deepcopy(model), -1.0, -1
    history = {"train_loss": [], "val_auc": [], "val_acc": []}
    for epoch in range(cfg.epochs):
        model.train()
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        torch.manual_seed(seed * 1_000_003 + epoch)
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
    return best.eval(), {"history": history, "best_epoch": best_epoch}
