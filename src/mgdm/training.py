"""Pieces shared by the step-based trainers: deterministic batches, EMA, progress."""

from __future__ import annotations

import torch


def batch_generator(seed: int, step: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator fixed by (seed, step) on the batch's device: a resumed run draws the same batches as an
    unbroken one, and a GPU draws its batch without a round trip through the host (its stream is the
    GPU's, not the CPU's)."""
    return torch.Generator(device).manual_seed(seed * 1_000_003 + step)


def draw_weights(labels: torch.Tensor, class_balanced: bool) -> torch.Tensor | None:
    """Per-image draw weights for class-balanced batches (1 / its class count), computed once; None: uniform."""
    return (1.0 / torch.bincount(labels).float())[labels] if class_balanced else None


def draw_indices(n: int, batch_size: int, weights: torch.Tensor | None, g: torch.Generator) -> torch.Tensor:
    """Indices of one batch of `n` images, on the generator's device."""
    if weights is None:
        return torch.randint(n, (batch_size,), generator=g, device=g.device)
    return torch.multinomial(weights, batch_size, replacement=True, generator=g)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float, step: int) -> None:
    decay = min(decay, (1 + step) / (10 + step))  # warm-up: early weights are forgotten fast
    # one fused call over all parameters (one kernel launch per group on a GPU, not one per tensor)
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


class LossHistory:
    """The mean loss of every `every` steps: for the progress bar and MLflow's training curves. Losses are
    kept as device tensors (in float64, the host's arithmetic) and read once a window, not once a step."""

    def __init__(self, every: int = 10, state: dict | None = None):
        """`state`: what `state()` returned at a resume state, so a resumed run keeps the unbroken run's curve."""
        state = state or {}
        self.every = every
        self.points = [(int(s), float(v)) for s, v in state.get("points", [])]
        self._window = [float(v) for v in state.get("window", [])]  # float64 either way: the same sums

    def add(self, step: int, loss: torch.Tensor, last: bool, bar=None) -> None:
        self._window.append(loss.detach().double())
        if (step + 1) % self.every == 0 or last:
            self.points.append((step + 1, float(sum(self._window) / len(self._window))))
            self._window = []
            if bar is not None:
                bar.set_postfix(loss=f"{self.points[-1][1]:.4f}")

    def state(self) -> dict:
        """The closed windows and the open one's losses as host numbers (read when a resume state is written)."""
        return {"points": self.points, "window": [float(v) for v in self._window]}

    @property
    def final(self) -> float:
        return self.points[-1][1] if self.points else float("nan")
