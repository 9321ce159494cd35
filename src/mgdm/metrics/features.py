"""Measures of image sets in the reference net's feature space, and their colour statistics.

Shared by the training probe, the fidelity stage and the distribution analysis, so that a
number means the same thing wherever it appears.
"""

from __future__ import annotations

import numpy as np
import torch

from mgdm.data.splits import Dataset, to_model_range


@torch.no_grad()
def embed(model, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Return (features, probabilities) of uint8 NHWC images under the reference net."""
    feats, probs = [], []
    device = next(model.parameters()).device
    for i in range(0, len(images), batch_size):
        f = model.features(to_model_range(images[i:i + batch_size]).to(device))
        feats.append(f.cpu())
        probs.append(torch.softmax(model.classify(f), -1).cpu())
    return torch.cat(feats).numpy(), torch.cat(probs).numpy()


def entropy(probs: np.ndarray) -> np.ndarray:
    return -(probs * np.log(np.clip(probs, 1e-12, 1))).sum(1)


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """Return (density, coverage) of `fake` against `real` with k-nearest-neighbour balls (Naeem et al. 2020)."""
    real_t, fake_t = torch.from_numpy(real), torch.from_numpy(fake)
    radii = torch.cdist(real_t, real_t).kthvalue(k + 1, dim=1).values  # k+1: the point itself is nearest
    d = torch.cdist(fake_t, real_t)  # (fake, real)
    inside = d < radii[None]
    density = inside.sum().item() / (k * len(fake))
    coverage = (d.min(0).values < radii).float().mean().item()
    return density, coverage


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Return the Frechet distance between Gaussians fitted to two feature sets (torch-fidelity's FID maths)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    stats = [fid_features_to_statistics(torch.from_numpy(np.asarray(f, np.float64))) for f in (a, b)]
    return float(fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"])


def precision_recall(fake: np.ndarray, real: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Return improved precision and recall (Kynkaanniemi et al. 2019) as torch-fidelity computes them."""
    from torch_fidelity.metric_prc import calculate_precision_recall_full

    return calculate_precision_recall_full(torch.from_numpy(fake), torch.from_numpy(real), k, 10000)


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return per-channel (mean, std) of uint8 NHWC images, in 0-255 units."""
    u = images.reshape(-1, images.shape[-1]).astype(np.float64)
    return u.mean(0), u.std(0)


def class_mix_mean(images: np.ndarray, labels: np.ndarray, mix: np.ndarray) -> np.ndarray:
    """Return the per-channel mean of `images` re-weighted to the class mix `mix` (labels of another set).

    A class-balanced synthetic set is compared with the real mean under the same class balance:
    the grades differ in colour, so the plain training mean would be the wrong target.
    """
    counts = np.bincount(mix, minlength=labels.max() + 1).astype(np.float64)
    per_class = np.stack([images[labels == c].reshape(-1, images.shape[-1]).mean(0) if counts[c] else
                          np.zeros(images.shape[-1]) for c in range(len(counts))])
    return (counts[:, None] * per_class).sum(0) / counts.sum()


def balanced_heldout(images: np.ndarray, labels: np.ndarray, per_class: np.ndarray, seed: int = 0):
    """Return (images, labels): up to per_class[c] images of each class c, drawn without replacement.

    The real-vs-real floor: held-out images in the same class mix as a synthetic set (fewer where a
    class has fewer held-out images; never repeated, which would shrink FID and inflate precision).
    """
    rng = np.random.default_rng(seed)
    idx = [rng.permutation(np.flatnonzero(labels == c))[:n] for c, n in enumerate(per_class)]
    idx = np.concatenate(idx)
    return images[idx], labels[idx]


def heldout(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Return the real images no generator or reference net trained on (val + test) and their labels."""
    parts = [dataset.numpy(s) for s in ("val", "test")]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def matched_subsets(fake_labels: np.ndarray, dataset: Dataset, seed: int):
    """Return (indices into the synthetic set, held-out real images and labels) with equal per-class counts.

    FID is biased by n, so the floor and the set are scored at the same n and class mix: each class gets
    as many images as both have (a set's first images of a class, which share their noise across sets).
    """
    images, labels = heldout(dataset)
    k = dataset.num_classes
    per_class = np.minimum(np.bincount(fake_labels, minlength=k), np.bincount(labels, minlength=k))
    real_images, real_labels = balanced_heldout(images, labels, per_class, seed)
    fake_idx = np.concatenate([np.flatnonzero(fake_labels == c)[:n] for c, n in enumerate(per_class)])
    return fake_idx, real_images, real_labels
