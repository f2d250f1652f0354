r"""Sharded gap evaluation over the processes of PyTorch's own launcher, ``torchrun``.

``torchrun --nproc-per-node N -m pyro_vaegap.cli gaps ...`` (or ``--nnodes M`` with a rendezvous
endpoint, for several machines sharing the output folder) runs the same command in ``N`` processes;
each reads its rank from the environment torchrun sets (``RANK``, ``WORLD_SIZE``). The evaluation is
cut into the pieces its checkpoint folder already keeps (a stage × a chunk of datapoints,
:class:`pyro_vaegap.report.compute.Pieces`): rank ``r`` computes the chunks ``c`` with ``c % N == r`` into the
shared folder, all ranks meet at a barrier, and rank 0 assembles the report from the folder and
writes it. A piece's random numbers depend only on the seed, its stage and its chunk, so the
assembled report is the one a single process computes with the same settings, number for number
(same device and threads). Spread the local optimization with ``--local-data-chunk``; without it
that stage is one piece, computed by rank 0.

Training (``torchrun ... -m pyro_vaegap.cli train ...``) is data parallel:
:func:`pyro_vaegap.training.train` splits every batch into seeded micro-batches shared by the ranks and sums
their gradients with :class:`~torch.nn.parallel.DistributedDataParallel`; rank 0 writes the run folder.

On GPUs each rank uses the GPU of its ``LOCAL_RANK`` (:func:`rank_device`) and the ranks talk over NCCL;
on CPUs over gloo.

A rank that fails prints its error naming itself (``vaegap [rank 1/2]: error: ...``) and exits;
torchrun then stops the others, so no report is written from an incomplete set of pieces. The
finished pieces stay in the folder: the same command resumes, recomputing only what is missing.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch
import torch.distributed as dist

from ..utils import ConfigError, resolve_device


def world_from_env() -> tuple[int, int]:
    """``(rank, world size)`` from torchrun's environment; ``(0, 1)`` when not launched by it."""
    try:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        raise ConfigError(f"RANK={os.environ.get('RANK')!r} and WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} must be "
                          "integers (they are set by torchrun)") from None
    if not (world >= 1 and 0 <= rank < world):
        raise ConfigError(f"RANK={rank} is not allowed with WORLD_SIZE={world}: expected 0 <= RANK < WORLD_SIZE")
    return rank, world


def rank_device(name=None) -> torch.device:
    """The device of this process: ``name`` (:func:`~pyro_vaegap.utils.resolve_device`), where a bare
    ``cuda`` means the GPU of torchrun's ``LOCAL_RANK`` (one GPU per process on a machine)."""
    if name is not None and str(name) == "cuda" and "LOCAL_RANK" in os.environ:
        local = int(os.environ["LOCAL_RANK"])
        if torch.cuda.is_available() and local >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK={local} but this machine has {torch.cuda.device_count()} CUDA devices: "
                              "start at most that many processes per node (--nproc-per-node)")
        name = f"cuda:{local}"
    return resolve_device(name)


@contextmanager
def process_group(world: int, device: torch.device | None = None):
    """Join torchrun's process group for the block (NCCL when ``device`` is a GPU, else gloo); nothing when
    ``world == 1``."""
    if world == 1 or dist.is_initialized():
        yield
        return
    if device is not None and device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL's collectives run on this process's GPU
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (nothing outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def rank_name() -> str:
    """``" [rank r/N]"`` inside a torchrun job, else ``""``: error lines say which process failed."""
    try:
        rank, world = world_from_env()
    except ConfigError:
        return ""  # the command reports the bad environment itself, as a user error
    return f" [rank {rank}/{world}]" if world > 1 else ""



def usable_cores() -> int:
    """The number of CPU cores this process may run on (its affinity mask, as ``taskset`` or a scheduler sets
    it; all of the machine's where the platform has no affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers(threads: int = 1, device=None) -> int:
    """Processes of an evaluation when none are asked for: as many ``threads``-thread processes as fit the
    usable cores (:func:`usable_cores`), at least one; one on a GPU."""
    if device is not None and torch.device(device).type != "cpu":
        return 1
    return max(1, usable_cores() // max(1, threads))
