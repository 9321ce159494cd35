"""The noise-conditioned classifier p_phi(y | x_t, t): a small CNN with a timestep embedding.

diffusers has no classifier, and the guidance net must see every noise level, so this is the one
network written by hand: residual blocks whose features are shifted by a timestep embedding
(as in the UNet), then global pooling.
"""

from __future__ import annotations

import torch
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, temb: int, down: bool, dropout: float = 0.0):
        super().__init__()
        self.dropout = dropout
        self.norm1, self.conv1 = nn.GroupNorm(min(8, cin), cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(min(8, cout), cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.time = nn.Linear(temb, cout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.down = nn.AvgPool2d(2, ceil_mode=True) if down else nn.Identity()

    def forward(self, x, emb, drop: bool):
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        h = h + self.time(emb)[:, :, None, None]
        h = nn.functional.dropout(nn.functional.silu(self.norm2(h)), self.dropout, drop)  # where diffusers' ResnetBlock2D has it
        h = self.conv2(h)
        return self.down(h + self.skip(x))


class NoisyClassifier(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int = 32, depth: int = 3, dropout: float = 0.0):
        super().__init__()
        self.dropout = dropout
        temb = width * 4
        self.proj = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.embed = TimestepEmbedding(width, temb)
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        widths = [width * 2 ** min(i, 2) for i in range(depth + 1)]
        self.blocks = nn.ModuleList(Block(widths[i], widths[i + 1], temb, down=i < depth - 1, dropout=dropout)
                                    for i in range(depth))
        self.head = nn.Sequential(nn.GroupNorm(min(8, widths[-1]), widths[-1]), nn.SiLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], num_classes))

    def forward(self, x: torch.Tensor, t: torch.Tensor, mc_dropout: bool = False) -> torch.Tensor:
        """Return logits (B, K) for noisy images x_t at integer timesteps t.

        Dropout acts in training, and at inference only with `mc_dropout` (one draw of MC dropout per call).
        """
        t = t.expand(len(x)) if t.ndim == 0 else t
        drop = self.training or mc_dropout
        emb = self.embed(self.proj(t).to(x.dtype))
        h = self.stem(x)
        for block in self.blocks:
            h = block(h, emb, drop)
        pooled = nn.functional.dropout(self.head[:-1](h), self.dropout, drop)
        return self.head[-1](pooled)
