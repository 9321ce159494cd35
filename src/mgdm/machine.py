"""What a number was measured on: the CPU's or the accelerator's name, for tables and run JSONs."""

from __future__ import annotations

import platform

from mgdm.config import ConfigError


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), for tables that report speed."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    """The card a job ran on (e.g. 'NVIDIA H100 80GB HBM3'), else the CPU's name (device 'cpu', or a stage
    such as the report that never touches the device of a profile made for a GPU)."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_name()


def cpu_threads(device: str) -> int | None:
    """The torch threads a CPU job computes with (None on a GPU). A CPU result depends on them, not only its
    speed: they change the order of the sums (a `study` inception_v3 run trained at 2 threads ended up to 9.75
    accuracy points from the same run at one thread), so run JSONs record them and run caches key on them."""
    import torch

    return torch.get_num_threads() if device == "cpu" else None


def check_device(device: str, where: str = "--device") -> str:
    """Return `device` if torch can compute on it here; else a one-line ConfigError that names `where` it was
    asked for (not torch's traceback after the job has started)."""
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise ConfigError(f"{where} {device!r}: not a torch device (e.g. cpu, cuda, cuda:1, mps)") from None
    available = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}  # the rest: torch's say
    if kind in available and not available[kind]():
        raise ConfigError(f"{where} {device!r}: no {kind} device on this machine (torch {torch.__version__}); "
                          "run with --device cpu")
    return device
