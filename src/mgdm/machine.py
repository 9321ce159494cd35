"""What a number was measured on: the CPU's or the accelerator's name, for tables and run JSONs."""

from __future__ import annotations

import platform


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
