"""Where each synthetic set lies in the reference net's feature space.

Per set: the reference net's predictive entropy (histogram and a KS test against real test
images), distance to the real class centres, agreement with the conditioning label, density and
coverage (Naeem et al. 2020) against real training features, per-channel colour statistics, and a
shared 2-D embedding; beside them the same numbers for held-out real images (the floor).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from scipy.stats import ks_2samp  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402

from mgdm.classifiers.zoo import load_classifier  # noqa: E402
from mgdm.data.synthetic import load_synthetic  # noqa: E402
from mgdm.config import AnalysisConfig  # noqa: E402
from mgdm.data.splits import Dataset  # noqa: E402
from mgdm.files import save_figure  # noqa: E402
from mgdm.metrics.features import (channel_stats, class_mix_mean, density_coverage, embed, entropy,  # noqa: E402
                                   matched_subsets)


def colour(mean: np.ndarray, std: np.ndarray) -> dict:
    """Return per-channel mean and std (0-255) as table text and as lists."""
    return {"channel_mean": " / ".join(f"{m:.0f}" for m in mean), "channel_std": " / ".join(f"{x:.0f}" for x in std),
            "channel_mean_values": mean.tolist(), "channel_std_values": std.tolist()}


def set_row(model, images, labels, real_f, centres, real_dist, target_mean, k, test_ent=None) -> tuple[dict, tuple]:
    """Return one table row of a set of images (synthetic or real) and its (features, entropy)."""
    f, p = embed(model, images)
    ent = entropy(p)
    density, coverage = density_coverage(real_f, f, k)
    mean, std = channel_stats(images)
    row = {"n": len(labels), "mean_entropy": float(ent.mean()),
           "centre_distance": float(np.linalg.norm(f - centres[labels], axis=1).mean() / real_dist),
           "label_agreement": float((p.argmax(1) == labels).mean()), "density": density, "coverage": coverage,
           **colour(mean, std), "colour_error": float(np.abs(mean - target_mean).max())}
    if test_ent is not None:
        ks = ks_2samp(ent, test_ent)
        row.update(ks_entropy_stat=float(ks.statistic), ks_entropy_p=float(ks.pvalue))
    return row, (f, ent)


def analyze_sets(dataset: Dataset, reference_net: str | Path, synthetic: dict[str, str | Path], cfg: AnalysisConfig,
        figures: dict[str, str | Path], device: str = "cpu", floor_draws: int = 3) -> dict:
    """Write the entropy, embedding and sample figures; return per-set distribution metrics.

    Every set is scored at the same n and class mix as its floor, held-out real images (val + test)
    drawn `floor_draws` times; colour_error is the largest per-channel mean difference (0-255) from the
    real training mean under the set's class mix.
    """
    model, seed = load_classifier(reference_net, device), cfg.seed
    train_images, train_labels = dataset.numpy("train")
    test_images, _ = dataset.numpy("test")
    real_f, _ = embed(model, train_images)
    _, test_p = embed(model, test_images)
    centres = np.stack([real_f[train_labels == c].mean(0) for c in range(dataset.num_classes)])
    real_dist = np.linalg.norm(real_f - centres[train_labels], axis=1).mean()
    test_ent = entropy(test_p)
    k = cfg.knn_k
    rows = {"real-train": {"n": len(train_labels), **colour(*channel_stats(train_images))}}
    ent_frames, feats, grids = [pd.DataFrame({"set": "real-test", "entropy": test_ent})], [], {}
    floor_rows = []
    for name, path in synthetic.items():
        images, labels = load_synthetic(path, dataset)
        fake_idx, _, _ = matched_subsets(labels, dataset, 0)
        target = class_mix_mean(train_images, train_labels, labels[fake_idx])
        rows[name], (f, ent) = set_row(model, images[fake_idx], labels[fake_idx], real_f, centres, real_dist, target,
                                       k, test_ent)
        if not floor_rows:  # every set has the same class plan, so one floor serves all
            for draw in range(floor_draws):
                _, real_images, real_labels = matched_subsets(labels, dataset, seed + draw)
                floor_rows.append(set_row(model, real_images, real_labels, real_f, centres, real_dist, target, k)[0])
        ent_frames.append(pd.DataFrame({"set": name, "entropy": ent}))
        feats.append((name, f))
        grids[name] = (images, labels)
    if floor_rows:
        numeric = pd.DataFrame(floor_rows).select_dtypes("number")
        floor = numeric.mean().to_dict()
        floor.update({f"{c}_std": v for c, v in numeric.std(ddof=0).items() if c != "n"})
        floor.update(colour(*(np.mean([r[f"channel_{s}_values"] for r in floor_rows], 0) for s in ("mean", "std"))))
        rows["real-heldout"] = floor
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
    # each panel is per_class images wide and one row per class tall: size the canvas to that shape
    panel_h = 2.6 * dataset.num_classes / per_class + 0.4
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, panel_h * nrows + 0.5), squeeze=False)
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
