"""Pieces shared by the step-based trainers: deterministic batches, EMA, progress."""

from __future__ import annotations

import torch


def batch_generator(seed: int, step: int) -> torch.Generator:
    """A generator fixed by (seed, step): a resumed run draws the same batches as an unbroken one."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def draw_indices(labels: torch.Tensor, batch_size: int, class_balanced: bool, g: torch.Generator) -> torch.Tensor:
    """Indices of one batch; class-balanced draws weight each image by 1 / its class count."""
    if not class_balanced:
        return torch.randint(len(labels), (batch_size,), generator=g)
    counts = torch.bincount(labels).float()
    return torch.multinomial(1.0 / counts[labels], batch_size, replacement=True, generator=g)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float, step: int) -> None:
    decay = min(decay, (1 + step) / (10 + step))  # warm-up: early weights are forgotten fast
    # one fused call over all parameters (one kernel launch per group on a GPU, not one per tensor)
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


class LossHistory:
    """The mean loss of every `every` steps: for the progress bar and MLflow's training curves."""

    def __init__(self, every: int = 10):
        self.every, self.points, self._window = every, [], []

    def add(self, step: int, loss: float, last: bool, bar=None) -> None:
        self._window.append(loss)
        if (step + 1) % self.every == 0 or last:
            self.points.append((step + 1, sum(self._window) / len(self._window)))
            self._window = []
            if bar is not None:
                bar.set_postfix(loss=f"{self.points[-1][1]:.4f}")

    @property
    def final(self) -> float:
        return self.points[-1][1] if self.points else float("nan")
