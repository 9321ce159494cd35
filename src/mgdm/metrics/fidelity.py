"""FID / IS / KID / precision-recall of a synthetic set against the real training set,
beside the same numbers for held-out real images (the floor: what a perfect generator would score).

torch-fidelity computes everything. Two feature extractors: its standard Inception-V3 (weights from a
local file; nothing is downloaded) and a domain extractor, the reference net trained on the real
data, which works offline and measures distance in features that know the disease grades.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch_fidelity
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from mgdm.classifiers.zoo import load_classifier
from mgdm.config import FidelityConfig
from mgdm.data.splits import Dataset
from mgdm.data.synthetic import load_synthetic
from mgdm.metrics.features import matched_subsets

DOMAIN = "mgdm-reference-net"


class ReferenceNetFeatures(FeatureExtractorBase):
    """torch-fidelity extractor over the reference net: pre-logit features and logits."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        self.model = load_classifier(feature_extractor_weights_path)

    @staticmethod
    def get_provided_features_list():
        return "features", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "features", "kid": "features", "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 28, 28, dtype=torch.uint8)

    def forward(self, x):
        x = x.float()[:, : self.model.in_chans] / 127.5 - 1.0  # grayscale sets arrive as 3 equal channels
        feats = self.model.features(x)
        logits = self.model.classify(feats)
        return tuple({"features": feats, "logits": logits}[n] for n in self.features_list)


if DOMAIN not in FEATURE_EXTRACTORS_REGISTRY:
    torch_fidelity.register_feature_extractor(DOMAIN, ReferenceNetFeatures)


class ImageSet(torch.utils.data.Dataset):
    """uint8 NHWC images as torch-fidelity wants them: uint8 3xHxW tensors."""

    def __init__(self, images: np.ndarray):
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = self.images[i]
        return x.expand(3, -1, -1).contiguous() if x.shape[0] == 1 else x


def fidelity(fake: np.ndarray, real: np.ndarray, extractor: str, weights: str, cfg: FidelityConfig,
             real_cache: str | None = None, device: str = "cpu") -> dict:
    """Return IS, FID, KID and precision/recall of `fake` against `real` in one extractor's features.

    With `real_cache` (a folder), the real images' features are computed once and reused from there.
    """
    kid_subset = min(cfg.kid_subset_size, len(fake), len(real))
    name = DOMAIN if extractor == "domain" else "inception-v3-compat"
    cache = dict(cache=True, cache_root=real_cache, input2_cache_name=f"real-{extractor}") if real_cache else {"cache": False}
    out = torch_fidelity.calculate_metrics(
        input1=ImageSet(fake), input2=ImageSet(real), cuda=device.startswith("cuda"), isc=True, fid=True, kid=True,
        prc=True, feature_extractor=name, feature_extractor_weights_path=weights, kid_subset_size=kid_subset,
        batch_size=cfg.batch_size, rng_seed=2020 + cfg.seed, verbose=False, save_cpu_ram=True, **cache)
    keys = {"inception_score_mean": "is", "frechet_inception_distance": "fid", "kernel_inception_distance_mean": "kid",
            "kernel_inception_distance_std": "kid_std", "precision": "precision", "recall": "recall", "f_score": "f_score"}
    return {f"{extractor}_{short}": float(out[k]) for k, short in keys.items() if k in out}


def score_set(dataset: Dataset, synthetic: str | Path, reference_net: str | Path, cfg: FidelityConfig,
        device: str = "cpu", floor_draws: int = 3) -> dict:
    """Return fidelity metrics of one synthetic set, and of held-out real images (the floor), per extractor.

    Both are scored against the real training split at the same n and class mix; the floor is the mean
    (and std) over `floor_draws` draws of held-out images.
    """
    fake, fake_labels = load_synthetic(synthetic, dataset)
    real, _ = dataset.numpy("train")
    metrics, t0 = {}, time.time()
    for extractor in cfg.feature_extractors:
        weights = str(reference_net) if extractor == "domain" else cfg.inception_weights
        if extractor == "inception" and not Path(weights).exists():
            raise FileNotFoundError(f"{weights}: Inception weights not found (fidelity.inception_weights)")
        floors = []
        with tempfile.TemporaryDirectory() as cache:
            for draw in range(floor_draws):
                fake_idx, floor_images, _ = matched_subsets(fake_labels, dataset, cfg.seed + draw)
                if draw == 0:
                    metrics.update(fidelity(fake[fake_idx], real, extractor, weights, cfg, cache, device))
                floors.append(fidelity(floor_images, real, extractor, weights, cfg, cache, device))
        for key in floors[0]:
            values = np.array([f[key] for f in floors])
            metrics[f"floor_{key}"], metrics[f"floor_{key}_std"] = float(values.mean()), float(values.std())
    metrics["fidelity_s"] = time.time() - t0
    metrics["n_fake"], metrics["n_real"] = len(fake_idx), len(real)
    return {"metrics": metrics}
