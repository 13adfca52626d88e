"""One code path for single-process and ``torchrun`` runs: a plain run is a world of size 1.

:func:`init_distributed` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and starts a process
group under torchrun, whatever its size (NCCL on CUDA, gloo on the CPU). Every other helper is a no-op in a plain run
(no process group), so a trainer calls them unconditionally. Tensors may live on the CPU or a GPU: collectives move
them to the backend's device (the rank's GPU for NCCL, the CPU for gloo) and back.

Per-sample results are exchanged by dataset index (:func:`gather_by_index`), so they are right whatever the shuffle
order or number of processes. :func:`shard_indices` splits an arbitrary index subset (the samples a trainer
selected) between the processes, like ``DistributedSampler`` does for a whole dataset, and
:class:`ShardedSampler` splits it on every pass, reshuffled when given a generator.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from fine.errors import UserError

T = TypeVar("T")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; asking for CUDA without a GPU is a :class:`UserError`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was requested but no CUDA GPU is visible; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown --device {name!r}; use auto, cpu, cuda or cuda:N") from None


@dataclass
class World:
    """This process's place in the run.

    Attributes
    ----------
    rank : global rank in [0, world_size); local_rank : rank on this machine (the GPU index on CUDA)
    world_size : number of processes (1 for a plain run); device : the device this process computes on
    is_main : rank 0, the process that logs, prints and writes checkpoints
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_main: bool


def is_distributed() -> bool:
    """Whether this process is in a process group (started by :func:`init_distributed` under torchrun)."""
    return dist.is_available() and dist.is_initialized()


def _comm_device() -> torch.device:
    """The device the backend's collectives take tensors on: the current GPU for NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def under_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (which sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``)."""
    return all(key in os.environ for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))


def init_distributed(device: str) -> World:
    """Join the ``torchrun`` process group, or describe a plain run as a world of size 1.

    Under torchrun a process group is started whatever the number of processes (NCCL for CUDA, gloo for the CPU),
    so ``torchrun --nproc_per_node 1`` runs the collectives, DDP and SyncBatchNorm for real; a plain ``python -m``
    run starts none and every helper here is a no-op.

    Parameters
    ----------
    device : the trainer's ``--device`` value (``auto``, ``cpu``, ``cuda``), resolved by :func:`resolve_device`;
        under torchrun a CUDA process uses ``cuda:LOCAL_RANK``.

    Returns
    -------
    World for this process. Under torchrun the default process group is initialised (from ``MASTER_ADDR`` and
    ``MASTER_PORT``) and, on CUDA, the current device is set to the local GPU.
    """
    resolved = resolve_device(device)
    if not under_torchrun():
        return World(rank=0, world_size=1, local_rank=0, device=resolved, is_main=True)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    if resolved.type == "cuda":
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
    if not dist.is_initialized():
        if resolved.type == "cuda":
            dist.init_process_group("nccl", rank=rank, world_size=world_size, device_id=resolved)
        else:
            dist.init_process_group("gloo", rank=rank, world_size=world_size)
    return World(rank=rank, world_size=world_size, local_rank=local_rank, device=resolved, is_main=rank == 0)


def get_rank() -> int:
    """This process's global rank (0 in a plain run)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes (1 in a plain run)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0 and in a plain run."""
    return get_rank() == 0


def print0(*args, **kwargs) -> None:
    """``print`` on rank 0 only."""
    if is_main_process():
        print(*args, **kwargs)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` (any shape, numeric dtype, CPU or GPU) over all processes, in place; returns it.

    A tensor not on the backend's device is copied there and the sum copied back. No-op in a plain run.
    """
    if not is_distributed():
        return tensor
    buffer = tensor.to(_comm_device()).contiguous()
    dist.all_reduce(buffer)
    if buffer is not tensor:
        tensor.copy_(buffer)
    return tensor


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` (any picklable object) on every process; ``obj`` itself in a plain run."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_comm_device())
    return box[0]


def broadcast_buffers(models: list[nn.Module], src: int = 0) -> None:
    """Give every process rank ``src``'s buffers (batch-norm running statistics) of each model, in place.

    DDP broadcasts them before each training forward, so after the last step of an epoch each rank holds the statistics
    its own last batch left; broadcasting them afterwards makes every rank evaluate and extract features with one
    model, the one rank 0 checkpoints, so a resumed run continues exactly. No-op in a plain run.
    """
    if not is_distributed():
        return
    for model in models:
        for buffer in model.buffers():
            wire = buffer.to(_comm_device())
            dist.broadcast(wire, src=src)
            if wire is not buffer:
                buffer.copy_(wire)


def cleanup() -> None:
    """Leave the process group, if one was started."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def gather_by_index(values: torch.Tensor, index: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Assemble per-sample rows computed on different processes into one tensor, on every process.

    Shards may have different lengths (they are padded to the longest for the all-gather). Every sample should
    be in exactly one shard; for a sample in several, one of its rows is kept.

    Parameters
    ----------
    values : (n_local, ...) rows of this process's samples (any dtype, bool included)
    index : (n_local,) int dataset indices of those rows, in [0, num_samples)
    num_samples : N

    Returns
    -------
    (N, ...) tensor of ``values``' dtype on ``values.device``; row ``i`` holds sample ``i``'s values, rows of
    samples no process holds are zero.
    """
    if index.dim() != 1 or index.shape[0] != values.shape[0]:
        raise ValueError(f"index must be (n_local,) with n_local = {values.shape[0]}, got {tuple(index.shape)}")
    out = values.new_zeros((num_samples, *values.shape[1:]))
    if not is_distributed():
        out[index.to(device=values.device, dtype=torch.int64)] = values
        return out
    comm = _comm_device()
    wire = torch.uint8 if values.dtype == torch.bool else values.dtype  # gloo/NCCL do not move bool tensors
    length = torch.tensor([values.shape[0]], dtype=torch.int64, device=comm)
    lengths = [torch.empty_like(length) for _ in range(dist.get_world_size())]
    dist.all_gather(lengths, length)
    sizes = [int(size) for size in lengths]
    longest = max(sizes)
    rows = torch.zeros((longest, *values.shape[1:]), dtype=wire, device=comm)
    rows[:values.shape[0]] = values.to(device=comm, dtype=wire)
    where = torch.zeros(longest, dtype=torch.int64, device=comm)
    where[:values.shape[0]] = index.to(device=comm, dtype=torch.int64)
    all_rows = [torch.empty_like(rows) for _ in sizes]
    all_where = [torch.empty_like(where) for _ in sizes]
    dist.all_gather(all_rows, rows)
    dist.all_gather(all_where, where)
    gathered = torch.cat([r[:size] for r, size in zip(all_rows, sizes)]).to(device=values.device, dtype=values.dtype)
    out[torch.cat([w[:size] for w, size in zip(all_where, sizes)]).to(values.device)] = gathered
    return out


def shard_indices(indices: torch.Tensor, *, world_size: int, rank: int, shuffle: bool, pad: bool,
                  generator_seed: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """This rank's part of an index list: one permutation shared by all ranks, dealt out round-robin.

    Parameters
    ----------
    indices : (n,) int dataset indices (e.g. the selected samples)
    world_size, rank : the world's size and this process's rank
    shuffle : permute first, as ``indices[torch.randperm(n, generator=g)]`` (``SubsetRandomSampler``'s order)
    pad : repeat the (permuted) list from its start up to a multiple of ``world_size``, so every rank gets the same
        number of samples (training: DDP needs equal batch counts); without it, each sample goes to exactly one
        rank and shard lengths differ by at most one (evaluation, feature extraction)
    generator_seed : with ``shuffle``, the permutation's seed (a fresh ``torch.Generator().manual_seed(seed)``)
    generator : with ``shuffle``, draw the permutation from this generator instead (it must be in the same state
        on every rank, e.g. seeded from the run's seed and the epoch); it advances as ``SubsetRandomSampler``'s would

    Returns
    -------
    (ceil(n / world_size),) int64 with ``pad``, else (len(range(rank, n, world_size)),): position ``j`` of the
    shard is position ``rank + j * world_size`` of the (padded) permuted list.
    """
    indices = torch.as_tensor(indices, dtype=torch.int64)
    if indices.dim() != 1:
        raise ValueError(f"indices must be a 1-D list of dataset indices, got shape {tuple(indices.shape)}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, world_size = {world_size}), got {rank}")
    n = indices.shape[0]
    if shuffle:
        if (generator_seed is None) == (generator is None):
            raise ValueError("shuffle=True needs exactly one of generator_seed and generator")
        if generator is None:
            generator = torch.Generator().manual_seed(generator_seed)
        indices = indices[torch.randperm(n, generator=generator)]
    if pad and n:
        total = math.ceil(n / world_size) * world_size
        indices = indices.repeat(math.ceil(total / n))[:total]
    return indices[rank::world_size]


class ShardedSampler(Sampler[int]):
    """This rank's part of ``indices``, dealt out between the processes; with a ``generator``, a fresh shuffle on
    every pass.

    Each ``iter`` (and :meth:`draw`) takes the list in the order given, or with ``generator`` one permutation drawn
    from it (in the same state on every rank, so the ranks agree on it), and yields this rank's padded shard
    (:func:`shard_indices` with ``pad=True``): every rank yields ``ceil(n / world_size)`` indices, as DDP's equal
    batch counts need. In a plain run with a generator it yields exactly what
    ``SubsetRandomSampler(indices, generator)`` yields.
    """

    def __init__(self, indices: torch.Tensor, generator: torch.Generator | None = None, *, world_size: int = 1,
                 rank: int = 0) -> None:
        self.indices, self.generator = torch.as_tensor(indices, dtype=torch.int64).cpu(), generator
        self.world_size, self.rank = world_size, rank

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.draw().tolist())

    def draw(self) -> torch.Tensor:
        """(ceil(n / world_size),) int64: this rank's indices for one pass, in order."""
        return shard_indices(self.indices, world_size=self.world_size, rank=self.rank,
                             shuffle=self.generator is not None, pad=True, generator=self.generator)


def local_module(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (``model`` itself otherwise): for forward passes that
    take no gradient step, which need no gradient synchronisation."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and give every rank its result; a :class:`~fine.errors.UserError` it raises is
    raised on every rank (so no rank waits forever for a rank 0 that stopped)."""
    outcome: object = None
    if is_main_process():
        try:
            outcome = fn()
        except UserError as err:
            outcome = err
    outcome = broadcast_object(outcome)
    if isinstance(outcome, UserError):
        raise outcome
    return outcome


def wrap_ddp(model: nn.Module, world: World, *, sync_bn: bool) -> nn.Module:
    """The module to train: ``model`` itself in a plain run, under torchrun DistributedDataParallel around it (after
    converting its batch norms to SyncBatchNorm with ``sync_bn``, which needs CUDA)."""
    if not is_distributed():
        if sync_bn:
            raise UserError("--sync_bn synchronises batch norms across torchrun processes; launch with torchrun "
                            "(--nproc_per_node 1 or more) or drop it")
        return model
    if sync_bn:
        if world.device.type != "cuda":
            raise UserError("--sync_bn needs CUDA devices (SyncBatchNorm does not run on the CPU); drop it")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [world.local_rank] if world.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
