"""How images enter and leave the diffusion model's space: [-1, 1] or per-channel standardisation.

Both are one affine map per channel, x = (u / 255 - mean) / std, so one small class serves both:
"minmax" is mean = std = 0.5 (the usual [-1, 1]); "standardize" takes the training split's
per-channel mean and std, so a model that predicts x_0 = 0 where it knows nothing (high noise)
already has the data's mean colour, instead of mid-grey.
"""

from __future__ import annotations

import numpy as np
import torch


class Normalization:
    """A per-channel affine map between uint8 NHWC images and the model's float NCHW space."""

    def __init__(self, mean: list[float], std: list[float]):
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]

    @classmethod
    def fit(cls, kind: str, images: np.ndarray) -> "Normalization":
        """Return the map of `kind` ("minmax" or "standardize") for uint8 NHWC training images."""
        channels = images.shape[-1]
        if kind == "minmax":
            return cls([0.5] * channels, [0.5] * channels)
        if kind == "standardize":
            u = images.reshape(-1, channels).astype(np.float64) / 255.0
            return cls(u.mean(0).tolist(), np.maximum(u.std(0), 1e-3).tolist())
        raise ValueError(f"unknown normalization {kind!r}; choose minmax or standardize")

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, len(self.mean), 1, 1)
        return (torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(shape),
                torch.tensor(self.std, dtype=like.dtype, device=like.device).view(shape))

    def encode(self, images: np.ndarray) -> torch.Tensor:
        """uint8 NHWC -> float32 NCHW in model space."""
        u = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0)
        mean, std = self._stats(u)
        return (u - mean) / std

    def decode(self, x: torch.Tensor) -> np.ndarray:
        """float NCHW in model space -> uint8 NHWC."""
        mean, std = self._stats(x)
        u = (x * std + mean).clamp(0, 1)
        return u.mul(255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    @property
    def clip_range(self) -> float:
        """The largest |x| a valid image reaches in model space: DDIM clips predicted x_0 to it."""
        return max(max(m, 1 - m) / s for m, s in zip(self.mean, self.std))

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std}


def encode_split(dataset, kind: str, split: str = "train", fit_on: str = "train"):
    """Return (the normalization of `kind` fitted on `fit_on`, `split`'s images encoded by it, int64 labels).

    The DDPM, the guidance net and the sweep's timing all see data through this one door, so they
    cannot disagree on the model space.
    """
    norm = Normalization.fit(kind, dataset.numpy(fit_on)[0])
    images, labels = dataset.numpy(split)
    return norm, norm.encode(images), torch.from_numpy(labels).long()
