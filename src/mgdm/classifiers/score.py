"""Train a zoo network on real (+ synthetic) images, select it on validation, score it on the test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mgdm.classifiers.train import predict_proba, train_classifier
from mgdm.classifiers.zoo import NETWORKS
from mgdm.config import ClassifierTraining
from mgdm.data.splits import Dataset, to_model_range
from mgdm.data.synthetic import load_synthetic
from mgdm.files import save_model, write_npz
from mgdm.classifiers.grading import grading_metrics


def train_and_score(dataset: Dataset, network: str, cfg: ClassifierTraining, seed: int, synthetic: str | Path | None = None,
        model_path: str | Path | None = None, device: str = "cpu", progress: bool = True,
        weights: str | None = None, predictions_path: str | Path | None = None,
        resume_path: str | Path | None = None) -> dict:
    """Train on real (+ a synthetic set), select on val, score on test; return metrics and history.

    With `model_path`, the selected model is written there (the reference net); with `predictions_path`,
    the test probabilities and labels (for paired tests between runs, e.g. McNemar); with `resume_path`,
    a killed run resumes from its last finished epoch.
    """
    images, labels = dataset.numpy("train")
    n_synth = 0
    if synthetic is not None:
        s_images, s_labels = load_synthetic(synthetic, dataset)
        images, labels, n_synth = np.concatenate([images, s_images]), np.concatenate([labels, s_labels]), len(s_labels)
    train = (to_model_range(images), torch.from_numpy(labels))
    model, info = train_classifier(network, train, dataset.tensors("val"), dataset.num_classes, cfg, seed, device,
                                   progress, weights, resume_path)
    test_images, test_labels = dataset.tensors("test")
    probs = predict_proba(model, test_images, device=device)
    metrics = grading_metrics(test_labels.numpy(), probs, dataset.ordinal)
    if predictions_path is not None:
        write_npz(predictions_path, probs=probs.astype(np.float32), labels=test_labels.numpy())
    metrics.update(best_epoch=info["best_epoch"], train_s=info["train_s"], n_real=len(labels) - n_synth,
                   n_synthetic=n_synth, resumed_from_epoch=info["resumed_from_epoch"])
    if model_path is not None:
        save_model(model_path, model, {"kind": "classifier", "network": network, "num_classes": dataset.num_classes,
                                       "in_chans": dataset.channels, "image_size": dataset.image_size})
    adaptation = NETWORKS[network].adaptation(dataset.image_size)
    return {"metrics": metrics, "history": info["history"], "params": {"adaptation": adaptation}}
