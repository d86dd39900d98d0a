"""What every benchmark says about the machine it ran on: the CPU with the flags that decide its
speed, and the matmul throughput that speeds are stated as a fraction of.

The benchmarks run as scripts (`python benchmarks/bench_x.py`), so this folder is on their path.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")


def cpu_flags() -> list[str]:
    """Those of FLAGS this CPU has (dlrun's reading of /proc/cpuinfo; none where there is no such file)."""
    from dlrun.training.device import cpu_flags as all_flags

    flags = all_flags()
    return [f for f in FLAGS if f in flags]


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo's, else the platform's)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")


def cpu() -> str:
    """The CPU's model name, its core count and its speed-deciding flags, in one line."""
    return f"{cpu_name()}, {os.cpu_count()} cores, flags: {' '.join(cpu_flags()) or 'none of avx2/avx512/amx'}"


def matmul_gflops(dtype=None, n: int = 2048, reps: int = 5) -> float:
    """Median GFLOP/s of an n x n matmul in `dtype` (fp32 by default): the practical ceiling of this
    CPU with the current torch threads."""
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up: thread pool and MKL buffers
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9
