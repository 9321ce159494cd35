"""Stage `analyze`: where each synthetic set lies in the reference net's feature space.

Per set: the reference net's predictive entropy (histogram and a KS test against real test
images), distance to the real class centres, agreement with the conditioning label, density and
coverage (Naeem et al. 2020) against real training features, and a shared 2-D embedding.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402
from scipy.stats import ks_2samp  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402

from mgdm.classifiers.stage import load_classifier, load_synthetic  # noqa: E402
from mgdm.config import AnalysisConfig  # noqa: E402
from mgdm.data.splits import Dataset, to_model_range  # noqa: E402
from mgdm.files import atomic_path  # noqa: E402


@torch.no_grad()
def embed(model, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Return (features, probabilities) of uint8 NHWC images under the reference net."""
    feats, probs = [], []
    for i in range(0, len(images), batch_size):
        f = model.features(to_model_range(images[i:i + batch_size]))
        feats.append(f)
        probs.append(torch.softmax(model.net.get_classifier()(f), -1))
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


def save_figure(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)


def run(dataset: Dataset, reference_net: str | Path, synthetic: dict[str, str | Path], cfg: AnalysisConfig,
        figures: dict[str, str | Path], seed: int = 0) -> dict:
    """Write the entropy, embedding and sample figures; return per-set distribution metrics."""
    model = load_classifier(reference_net)
    train_images, train_labels = dataset.numpy("train")
    test_images, _ = dataset.numpy("test")
    real_f, _ = embed(model, train_images)
    _, test_p = embed(model, test_images)
    centres = np.stack([real_f[train_labels == c].mean(0) for c in range(dataset.num_classes)])
    real_dist = np.linalg.norm(real_f - centres[train_labels], axis=1).mean()
    test_ent = entropy(test_p)
    rows, ent_frames, feats, grids = {}, [pd.DataFrame({"set": "real-test", "entropy": test_ent})], [], {}
    for name, path in synthetic.items():
        images, labels = load_synthetic(path, dataset)
        f, p = embed(model, images)
        ent = entropy(p)
        ks = ks_2samp(ent, test_ent)
        density, coverage = density_coverage(real_f, f, cfg.knn_k)
        rows[name] = {
            "mean_entropy": float(ent.mean()),
            "ks_entropy_stat": float(ks.statistic), "ks_entropy_p": float(ks.pvalue),
            "centre_distance": float(np.linalg.norm(f - centres[labels], axis=1).mean() / real_dist),
            "label_agreement": float((p.argmax(1) == labels).mean()),
            "density": density, "coverage": coverage,
        }
        ent_frames.append(pd.DataFrame({"set": name, "entropy": ent}))
        feats.append((name, f))
        grids[name] = (images, labels)
    rows["real-test"] = {"mean_entropy": float(test_ent.mean())}

    fig, ax = plt.subplots(figsize=(7, 4))
    sns.kdeplot(pd.concat(ent_frames), x="entropy", hue="set", common_norm=False, clip=(0, None), ax=ax)
    ax.set(title=f"{dataset.name}: reference-net predictive entropy", xlabel="entropy (nats)")
    save_figure(fig, figures["entropy"])

    all_f = np.concatenate([real_f] + [f for _, f in feats])
    names = np.concatenate([["real-train"] * len(real_f)] + [[n] * len(f) for n, f in feats])
    if cfg.embedding == "tsne":
        xy = TSNE(2, random_state=seed, init="pca", perplexity=min(30, len(all_f) // 4)).fit_transform(all_f)
    else:
        xy = PCA(2, random_state=seed).fit_transform(all_f)
    fig, ax = plt.subplots(figsize=(7, 6))
    sns.scatterplot(x=xy[:, 0], y=xy[:, 1], hue=names, s=8, alpha=0.6, linewidth=0, ax=ax)
    ax.set(title=f"{dataset.name}: reference-net features ({cfg.embedding.upper()})", xticks=[], yticks=[])
    save_figure(fig, figures["embedding"])

    grids = {"real-train": (train_images, train_labels), **grids}  # the reference panel comes first
    per_class = min(6, min(np.bincount(labels, minlength=dataset.num_classes).max() for _, labels in grids.values()))
    ncols = min(4, len(grids))
    nrows = -(-len(grids) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.8 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, (images, labels)) in zip(axes.flat, grids.items()):
        blank = np.zeros_like(images[0])
        rows_img = [np.concatenate(list(images[labels == c][:per_class])
                                   + [blank] * max(0, per_class - (labels == c).sum()), 1)
                    for c in range(dataset.num_classes)]
        grid = np.concatenate(rows_img, 0)
        ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255)
        ax.set_title(name)
    fig.suptitle(f"{dataset.name}: synthetic samples (rows: classes {', '.join(map(str, range(dataset.num_classes)))})")
    save_figure(fig, figures["samples"])
    return {"sets": rows}
