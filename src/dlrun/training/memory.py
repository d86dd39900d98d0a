"""How much data dlrun may hold: a data set that would not fit is refused with its size, before it is read.

Every split lives in memory as float32 tensors on the device (see data.py). The budget is
`dataset.max_memory_gb` where set, else 80% of what is free where the tensors will live (the GPU's
free memory, else the machine's available RAM); where that cannot be read, nothing is refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dlrun.errors import DataError
from dlrun.training.storage import size

FREE_SHARE = 0.8  # of the free memory, for the data; the rest for the model, activations and Python
FLOAT_BYTES = 4


def available_ram() -> int | None:
    """MemAvailable from /proc/meminfo (Linux) in bytes, else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass(frozen=True)
class MemoryBudget:
    limit: int | None  # bytes the data's float32 tensors may take; None: unknown, nothing is refused
    where: str  # what the limit is, for the message

    def check(self, shape: Sequence[int], what: str, hint: str = "") -> None:
        """Refuse `what`, (N, ...) values as float32, where it exceeds the budget."""
        needed = math.prod(shape) * FLOAT_BYTES
        if self.limit is None or needed <= self.limit:
            return
        dims = " x ".join(map(str, shape[1:]))
        raise DataError(
            f"{what} needs {size(needed)} in memory ({shape[0]} examples of {dims} as float32), more than {self.where}; "
            + (hint or "use a part of it, or raise dataset.max_memory_gb where the memory is there")
        )


def memory_budget(device: torch.device, max_memory_gb: float = 0.0) -> MemoryBudget:
    if max_memory_gb > 0:
        return MemoryBudget(int(max_memory_gb * 1e9), f"dataset.max_memory_gb={max_memory_gb:g}")
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return MemoryBudget(int(free * FREE_SHARE), f"{FREE_SHARE:.0%} of the {size(free)} free on the GPU")
    free = available_ram()
    if free is None:
        return MemoryBudget(None, "")
    return MemoryBudget(int(free * FREE_SHARE), f"{FREE_SHARE:.0%} of the {size(free)} of memory available")
