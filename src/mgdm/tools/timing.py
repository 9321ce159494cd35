"""Timing and FLOP counting shared by the benchmarks (`mgdm benchmark`, on a CPU and on a device)."""

from __future__ import annotations

import statistics
import time

from torch.utils.flop_counter import FlopCounterMode


def timed(fn, repeats: int, warmup: int = 1) -> dict:
    """Return {median_s, min_s, max_s, repeats} of `fn()` after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": repeats}


class _Global:
    """Stands in for FlopCounterMode's module tracker: its backward hooks cannot run inside
    torch.autograd.grad, which guided sampling calls; only the total is wanted here."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def flops(fn) -> int:
    """FLOPs of one call of `fn` (forward and backward where it does both), as torch counts them."""
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _Global()
    with counter:
        fn()
    return counter.get_total_flops()
