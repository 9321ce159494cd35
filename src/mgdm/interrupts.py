"""Ctrl-C (SIGINT) and SIGTERM (scancel, a stopping process pool) as one exception, `Interrupted`.

Inside `interruptible()` a signal raises `Interrupted` where the code is, as Ctrl-C raises KeyboardInterrupt.
A loop that keeps resume states (training, sampling) marks itself with `stop_at_boundary()`: there the first
signal only asks it to stop, and the loop keeps its state at the end of the step, epoch or batch under way before
it raises, so a stopped job loses no work (a second signal raises at once). No torch here: the CLI imports this
before any stage.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_pending: int | None = None  # the signal a loop at a boundary has yet to act on
_boundaries = 0  # loops under way that stop at their next boundary


class Interrupted(Exception):
    def __init__(self, signum: int, where: str = ""):
        self.signum, self.where = signum, where
        super().__init__(f"interrupted ({signal.Signals(signum).name})" + (f" at {where}" if where else ""))


def _on_signal(signum, frame):
    global _pending
    if _boundaries and _pending is None:
        _pending = signum
        # os.write, not print: a handler that prints while the code it interrupted prints is a reentrant call
        os.write(2, f"\n{signal.Signals(signum).name}: stopping at the end of this step, epoch or batch, "
                    "its resume state kept (again to stop at once)\n".encode())
        return
    raise Interrupted(signum)


@contextmanager
def interruptible():
    """SIGINT and SIGTERM raise `Interrupted` in the block (main thread; a signal the process was started
    ignoring, as nohup and background shells start it, stays ignored)."""
    global _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        if old[s] is not signal.SIG_IGN:
            signal.signal(s, _on_signal)
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        _pending = None


@contextmanager
def stop_at_boundary():
    """The block is a loop that checks `stop_requested()` at each boundary, keeps its state, then calls `stop`."""
    global _boundaries
    _boundaries += 1
    try:
        yield
    finally:
        _boundaries -= 1


def request_stop(signum: int) -> None:
    """Ask the loops to stop as a signal would, from another thread (a pool worker told by its parent); outside
    a loop it waits for the next boundary."""
    global _pending
    _pending = _pending or signum


def stop_requested() -> bool:
    return _pending is not None


def stop(where: str):
    """Raise the signal a loop was asked to stop by, once it has kept its state at `where` (e.g. 'step 40 of
    160')."""
    raise Interrupted(_pending, where)
