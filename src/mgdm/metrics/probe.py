"""A cheap fidelity probe of a DDPM during training: quality vs step, as MLflow curves.

Every call samples the same class-balanced noise with plain DDIM (few steps) and scores the
images against the real training split in the reference net's features: FID, precision, recall,
coverage, agreement of the reference net with the conditioning label, and the largest
per-channel mean-colour error (0-255) against the real mean under the same class mix.
"""

from __future__ import annotations

import numpy as np
import torch

from mgdm.classifiers.zoo import load_classifier
from mgdm.data.splits import Dataset
from mgdm.diffusion.unet import ddim_schedulers
from mgdm.metrics.features import (channel_stats, class_mix_mean, density_coverage, embed, frechet_distance,
                                   precision_recall)
from mgdm.sampling.ddim import guided_ddim


class FidelityProbe:
    def __init__(self, dataset: Dataset, reference_net, n_images: int, ddim_steps: int, seed: int = 0,
                 device: str = "cpu", knn_k: int = 5):
        self.model = load_classifier(reference_net)
        self.steps, self.device, self.k = ddim_steps, device, knn_k
        images, labels = dataset.numpy("train")
        self.real_features, _ = embed(self.model, images)
        k = dataset.num_classes
        self.labels = np.arange(n_images) % k
        self.target_mean = class_mix_mean(images, labels, self.labels)
        g = torch.Generator().manual_seed(seed)
        self.noise = torch.randn(n_images, dataset.channels, dataset.image_size, dataset.image_size, generator=g)

    @torch.no_grad()
    def __call__(self, unet, model_config: dict, norm) -> dict:
        """Return probe_* metrics of `unet` (an EMA copy; left as it was found)."""
        was_training = unet.training
        unet.eval()
        sampler, _ = ddim_schedulers(model_config["scheduler"])
        x = guided_ddim(unet, self.noise.to(self.device), torch.from_numpy(self.labels).to(self.device), sampler,
                        self.steps, null_label=model_config["null_label"])
        unet.train(was_training)
        return score(norm.decode(x), self.labels, self.model, self.real_features, self.target_mean, self.k)


def score(images: np.ndarray, labels: np.ndarray, model, real_features: np.ndarray, target_mean: np.ndarray,
          k: int = 5) -> dict:
    """Return probe_* metrics of uint8 images against real features and the real mean colour."""
    f, p = embed(model, images)
    precision, recall = precision_recall(f, real_features)
    _, coverage = density_coverage(real_features, f, k)
    mean, _ = channel_stats(images)
    return {"probe_fid": frechet_distance(f, real_features), "probe_precision": precision, "probe_recall": recall,
            "probe_coverage": coverage, "probe_label_agreement": float((p.argmax(1) == labels).mean()),
            "probe_colour_error": float(np.abs(mean - target_mean).max())}
