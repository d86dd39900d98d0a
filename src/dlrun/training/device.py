"""Device and seed, resolved once per run; everything else takes `device` as an argument."""

from __future__ import annotations

import random

import torch

from dlrun.errors import DeviceError


def resolve_device(name: str) -> torch.device:
    """auto picks cuda, then mps, then cpu; naming a device that is missing is an error, never a fall-back."""
    cuda = torch.cuda.is_available()
    mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise DeviceError(
            f"device=cuda: no CUDA GPU is usable here (torch {torch.__version__}, "
            f"CUDA build {torch.version.cuda or 'none'}); use device=cpu or device=auto"
        )
    if name == "mps" and not mps:
        raise DeviceError("device=mps: Apple's Metal GPU is not available here; use device=cpu or device=auto")
    if name not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unknown device {name!r}; choose one of: auto, cpu, cuda, mps")
    return torch.device(name)


def job_device(device: torch.device, slot: int | None, gpus: int) -> torch.device:
    """The GPU of one of several jobs running side by side (joblib): job `slot` takes GPU slot % gpus,
    so four parallel jobs on a four-GPU machine use one GPU each instead of all using GPU 0."""
    if slot is None or device.type != "cuda" or device.index is not None or gpus < 2:
        return device
    return torch.device("cuda", slot % gpus)


def set_threads(threads: int) -> int:
    """Use `threads` CPU threads (0 keeps torch's default) and return the count before, to restore.

    Fewer threads keep parallel jobs from oversubscribing the CPU; which count is fastest for one
    small model depends on the machine (see README's Speed section).
    """
    before = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    return before


def flush_denormals_everywhere() -> None:
    """Flush subnormal floats to zero in this thread and in every CPU worker thread torch starts.

    x86 CPUs handle subnormals (< 1.2e-38) through a slow microcode path, and Adam's moment
    estimates for weights that rarely see a non-zero input (MNIST's black border) decay into them
    (see train.flush_denormals). The flag is per thread; a new thread copies it from the thread
    that creates it, and torch creates its OpenMP workers at its first parallel operation. Called
    before that (dlrun calls it before loading any data), it reaches every worker; called later,
    only this thread. With two threads the MNIST MLP's epochs after the first ran at 2.5-3.2 s
    instead of 1.5-1.8 s when the workers did not flush. The results were the same.
    """
    torch.set_flush_denormal(True)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's and torch's generators; return the CPU generator that orders the training data."""
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'s' if threads != 1 else ''})"
    return device.type
