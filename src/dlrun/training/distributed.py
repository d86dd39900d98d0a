"""Data-parallel training under torchrun: one run, one folder, several processes.

`torchrun --nproc_per_node=N -m dlrun ...` starts N copies of dlrun with RANK, WORLD_SIZE and
LOCAL_RANK set. Before Hydra composes anything, `join` initializes torch.distributed (gloo for
CPU tensors, nccl for CUDA ones), and rank 0 chooses the run folder and sends it to the others, so
there is exactly one folder. Each rank then trains on its own shard of the in-memory training set
(the same seeded permutation, split by rank, equal sizes), DistributedDataParallel averages the
gradients, and the epoch's training metrics are summed across ranks; every rank evaluates the
whole split, so the row is the one a single process would compute. Only rank 0 writes files and
prints. `trainer.batch_size` is the global batch: each rank steps on batch_size / world size.

Nothing here is imported unless WORLD_SIZE > 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime

import torch
import torch.distributed as dist

from dlrun.errors import ConfigError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


SINGLE = World()  # one process: no torchrun


def world() -> World:
    """This process's place among torchrun's processes (rank 0 of 1 outside torchrun)."""
    if not dist.is_available() or not dist.is_initialized():
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)),
                 int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size())))  # fmt: skip


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def join(argv: list[str]) -> list[str]:
    """Join torchrun's process group and return argv with the run folder every rank shares.

    Rank 0 makes the folder (the usual outputs/DATE/TIME, or the one hydra.run.dir names); the
    other ranks write nothing of Hydra's (.hydra/ is rank 0's).
    """
    from dlrun.config import unique_dir

    if any(arg in ("-m", "--multirun") or arg.startswith("--multirun") for arg in argv):
        raise ConfigError("torchrun runs one data-parallel run; a sweep (-m) goes through a launcher (launcher=slurm, local)")
    if not dist.is_initialized():
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    given = next((arg.split("=", 1)[1] for arg in argv if arg.startswith("hydra.run.dir=")), None)
    resume = next((arg.split("=", 1)[1] for arg in argv if arg.startswith("resume=")), "")
    folder = [None]
    if dist.get_rank() == 0:
        folder[0] = given or (resume if resume and resume != "auto" else unique_dir(f"outputs/{datetime.now():%Y-%m-%d/%H-%M-%S}"))
    dist.broadcast_object_list(folder, src=0)
    argv = [arg for arg in argv if not arg.startswith("hydra.run.dir=")] + [f"hydra.run.dir={folder[0]}"]
    if dist.get_rank() != 0:
        argv.append("hydra.output_subdir=null")
    return argv


def leave() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device_for(device: torch.device, place: World) -> torch.device:
    """Each rank on its own GPU (by LOCAL_RANK); CPU ranks share the CPU."""
    if device.type == "cuda" and place.size > 1:
        torch.cuda.set_device(place.local_rank)
        return torch.device("cuda", place.local_rank)
    return device


def threads_for(threads: int, place: World) -> int:
    """CPU threads per rank: the asked-for count, else the cores shared among this node's ranks."""
    if threads or place.size == 1:
        return threads
    return max(1, (os.cpu_count() or 1) // place.local_size)


def per_rank_batch(batch_size: int, place: World) -> int:
    if batch_size % place.size:
        raise ConfigError(f"trainer.batch_size={batch_size} is the global batch and must divide evenly among {place.size} processes")
    return batch_size // place.size


def shard(order: torch.Tensor, place: World) -> torch.Tensor:
    """This rank's equal share of a permutation: every world-size-th index from its rank on."""
    per = len(order) // place.size
    return order[: per * place.size][place.rank :: place.size]


def sum_across(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sums of `values` over every rank."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def any_across(flag: bool, device: torch.device) -> bool:
    """Whether any rank has `flag` set (a collective: every rank must call it at the same point)."""
    tensor = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


class SyncedStop:
    """A StopRequest whose check() agrees across ranks: a signal that reached any rank stops them
    all at the same step (each rank calls check() at the same points, so none waits forever)."""

    def __init__(self, stop, device: torch.device):
        self.stop = stop
        self.device = device

    def __call__(self) -> bool:
        return self.stop()

    def check(self) -> None:
        from dlrun.training.signals import Interrupted

        if any_across(self.stop(), self.device):
            import signal

            raise Interrupted(self.stop.signum or signal.SIGTERM)
