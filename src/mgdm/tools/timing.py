"""Timing and FLOP counting shared by the benchmarks (`mgdm benchmark`, on a CPU and on a device)."""

from __future__ import annotations

import statistics
import time

from torch.utils.flop_counter import FlopCounterMode


def timed(fn, repeats: int, warmup: int = 1) -> dict:
    """Return {median_s, min_s, max_s, repeats, times_s} of `fn()` after `warmup` untimed calls."""
    return timed_in_turns({"fn": fn}, repeats, warmup)["fn"]


def timed_in_turns(fns: dict, repeats: int, warmup: int = 1) -> dict:
    """Time several kernels round by round, each round starting one further along: a drift in the machine's
    speed (a shared host, a throttled core) then falls on every kernel alike, so their ratios compare like
    with like (timed one after the other, mgdm's DDPM step against the plain one read 0.89x-1.01x in three runs).
    Returns {name: {median_s, min_s, max_s, repeats, times_s}}."""
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return {name: {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts), "repeats": repeats,
                   "times_s": ts} for name, ts in times.items()}


def ratio(num: dict, den: dict) -> dict:
    """num's seconds over den's, round by round, for two kernels timed in turns: the median and range of the
    per-round ratios. A round's two calls met the same state of the machine, so the range is the ratio's noise."""
    return spread([a / b for a, b in zip(num["times_s"], den["times_s"], strict=True)])


def spread(values) -> dict:
    """{median, min, max} of per-round values (ratios, rates)."""
    values = list(values)
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


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
