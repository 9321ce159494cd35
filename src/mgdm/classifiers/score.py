"""Train a zoo network on real (+ synthetic) images, select it on validation, score it on the test split."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mgdm.classifiers.train import Run, predict_proba, train_runs
from mgdm.classifiers.zoo import NETWORKS
from mgdm.config import ClassifierTraining
from mgdm.data.splits import Dataset, to_model_range
from mgdm.data.synthetic import load_synthetic
from mgdm.files import save_model, write_npz
from mgdm.classifiers.grading import grading_metrics


@dataclass
class Job:
    """One downstream run to train and score: its seed, the synthetic set beside the real images (None:
    real only), and its files (test predictions; resume state; the selected model, for the reference net)."""

    seed: int
    synthetic: str | Path | None = None
    predictions_path: str | Path | None = None
    resume_path: str | Path | None = None
    model_path: str | Path | None = None


def training_set(dataset: Dataset, synthetic: str | Path | None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The real training split plus a synthetic set: images in [-1, 1], labels, and how many are synthetic."""
    images, labels = dataset.numpy("train")
    n_synth = 0
    if synthetic is not None:
        s_images, s_labels = load_synthetic(synthetic, dataset)
        images, labels, n_synth = np.concatenate([images, s_images]), np.concatenate([labels, s_labels]), len(s_labels)
    return to_model_range(images), torch.from_numpy(labels), n_synth


def train_and_score_group(dataset: Dataset, network: str, cfg: ClassifierTraining, jobs: list[Job],
                          device: str = "cpu", progress: bool = True, weights: str | None = None) -> Iterator[dict]:
    """Train every job of `network` together (`train_runs`) and score each on the test split as it finishes;
    yield per job its metrics, history and params, as `train_and_score` returns them, and `wall_s`: its own
    training and scoring seconds.

    Jobs on the same synthetic set share one training tensor, so the data go to the device once per set.
    """
    sets = {s: training_set(dataset, s) for s in dict.fromkeys(job.synthetic for job in jobs)}
    runs = [Run(job.seed, *sets[job.synthetic][:2], job.resume_path) for job in jobs]
    trained = train_runs(network, runs, dataset.tensors("val"), dataset.num_classes, cfg, device, progress, weights)
    test_images, test_labels = dataset.tensors("test")
    adaptation = NETWORKS[network].adaptation(dataset.image_size)
    for job, (model, info) in zip(jobs, trained):
        t0 = time.time()
        probs = predict_proba(model, test_images, device=device)
        metrics = grading_metrics(test_labels.numpy(), probs, dataset.ordinal)
        if job.predictions_path is not None:
            write_npz(job.predictions_path, probs=probs.astype(np.float32), labels=test_labels.numpy())
        n_synth = sets[job.synthetic][2]
        metrics.update(best_epoch=info["best_epoch"], train_s=info["train_s"],
                       n_real=len(sets[job.synthetic][1]) - n_synth, n_synthetic=n_synth,
                       resumed_from_epoch=info["resumed_from_epoch"])
        if job.model_path is not None:
            save_model(job.model_path, model, {"kind": "classifier", "network": network,
                                               "num_classes": dataset.num_classes, "in_chans": dataset.channels,
                                               "image_size": dataset.image_size})
        yield {"metrics": metrics, "history": info["history"], "params": {"adaptation": adaptation},
               "wall_s": info["train_s"] + time.time() - t0}


def train_and_score(dataset: Dataset, network: str, cfg: ClassifierTraining, seed: int, synthetic: str | Path | None = None,
        model_path: str | Path | None = None, device: str = "cpu", progress: bool = True,
        weights: str | None = None, predictions_path: str | Path | None = None,
        resume_path: str | Path | None = None) -> dict:
    """Train on real (+ a synthetic set), select on val, score on test; return metrics and history.

    With `model_path`, the selected model is written there (the reference net); with `predictions_path`,
    the test probabilities and labels (for paired tests between runs, e.g. McNemar); with `resume_path`,
    a killed run resumes from its last state.
    """
    job = Job(seed, synthetic, predictions_path, resume_path, model_path)
    result = next(train_and_score_group(dataset, network, cfg, [job], device, progress, weights))
    del result["wall_s"]  # a job alone: its stage measures its own wall clock
    return result
