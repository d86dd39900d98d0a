"""Device and seed, resolved once per run; everything else takes `device` as an argument."""

from __future__ import annotations

import functools
import random
from pathlib import Path

import torch
from torch import nn

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


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (glibc's malloc.h)
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # the most glibc accepts on 64-bit systems


@functools.cache  # once per process
def keep_freed_memory() -> bool:
    """Let glibc's malloc keep the memory torch frees for the next step instead of returning it to
    the kernel; True if it now does (Linux with glibc), False where the C library is another.

    A training step frees and allocates the same activation and gradient buffers every step. By
    default glibc serves each block over its mmap threshold with fresh pages from the kernel and
    hands them back when freed, or trims the heap's free top, so every step touches its large
    buffers anew: a page fault per 4 KiB page (a small CNN's first 6.4 MB activation on MNIST is
    1,600 pages). Here blocks up to 32 MiB come from the heap, which gives
    memory back only past 2 GiB free at its top: the reuse PyTorch's CPU tuning guide gets by
    preloading jemalloc or tcmalloc. The values computed are the same; the process's resident
    memory stays near its peak instead of falling between steps. Measured in benchmarks/README.md
    ("Each arm in its own process").
    """
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1


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


# Model families whose training step measured faster with channels_last (NHWC) activations and
# weights on a CPU (oneDNN), per model, in benchmarks/bench_models.py (benchmarks/README.md,
# "Per-model speed"). Not yet measured on CUDA or MPS, so auto keeps those contiguous.
CHANNELS_LAST_ON_CPU = frozenset({"cnn", "resnet"})


# The models whose training step measured faster in bf16 than in fp32 on a CPU with AMX, and the
# ratio of their step times (benchmarks/bench_models.py; benchmarks/README.md, "Per-model speed"):
# the run's final panel says so when such a run used fp32 (recipe.bf16_hint). LeNet-5, the MLPs,
# the GRU and the transformer measured no faster, or slower, in bf16.
BF16_FASTER_ON_CPU = {"cnn simple": 1.5, "cnn vgg": 2.1, "cnn alexnet": 1.1, "resnet": 1.5, "rnn lstm": 1.4}  # the lowest of the runs


def choose_memory_format(setting: str, model_name: str | None, device: torch.device) -> torch.memory_format:
    """trainer.memory_format as a torch memory format. auto: channels_last for the families in
    CHANNELS_LAST_ON_CPU on a CPU, contiguous otherwise (and for a user's own model, `model_name`
    None, which has not been measured). It changes where each value lies in memory, not what it is:
    convolutions sum in another order, so fp32 metrics drift in their last digits."""
    if setting == "channels_last":
        return torch.channels_last
    if setting == "contiguous":
        return torch.contiguous_format
    if setting != "auto":
        raise ValueError(f"unknown trainer.memory_format {setting!r}; choose one of: auto, channels_last, contiguous")
    on_cpu = device.type == "cpu" and model_name in CHANNELS_LAST_ON_CPU
    return torch.channels_last if on_cpu else torch.contiguous_format


def memory_format_of(model: nn.Module) -> str:
    """channels_last if any 4-D weight lies channels_last (and not also contiguous), else contiguous:
    what summary.json records, read from the model itself."""
    for p in model.parameters():
        if p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last):
            return "channels_last"
    return "contiguous"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags as Linux lists them (x86's `flags`, aarch64's `Features`); empty where
    they cannot be read (not Linux)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """What gives this CPU native bfloat16 matrix arithmetic: "AMX" (amx_bf16), "AVX512-BF16", or
    "Arm BF16"; None where it has none or the flags cannot be read (not Linux): no hint then."""
    flags = cpu_flags(cpuinfo)
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    return "Arm BF16" if "bf16" in flags else None
