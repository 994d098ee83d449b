"""torch.distributed in one place: set-up from torchrun's environment, rank queries, gathers.

`torchrun --nproc_per_node N -m vdiag pretrain …` sets RANK / WORLD_SIZE / LOCAL_RANK; `setup()`
reads them and joins the process group (NCCL on GPU, gloo on CPU). Everything else asks `rank()` and
`world_size()`, which are 0 and 1 without torchrun, so single-process code needs no special case.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    """Whether torchrun started this process as one of several (RANK and WORLD_SIZE > 1 set)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def setup(device: str) -> str:
    """Join the process group torchrun announced; returns the device this rank should use."""
    if not launched_by_torchrun() or is_initialized():
        return device
    backend = "nccl" if device == "cuda" else "gloo"
    if device == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return device


def teardown() -> None:
    """Leave the process group, if this process joined one."""
    if is_initialized():
        dist.destroy_process_group()


def is_initialized() -> bool:
    """Whether a torch.distributed process group is up."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank, 0 without a process group."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """The number of processes, 1 without a process group."""
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """Whether this is rank 0, the process that logs and writes files."""
    return rank() == 0


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's tensor along dim 0, with gradients flowing back to each owner.

    Uses `torch.distributed.nn.functional.all_gather`, whose backward sums the gradients of all
    ranks' losses into the owner's slice; with DDP's gradient averaging, the mean of per-rank mean
    losses then has exactly the gradient of the single-process loss over the whole batch.
    """
    if world_size() == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather

    # The backward of torch's all_gather sends the incoming gradients through gloo's all_to_all as
    # they are; a strided gradient (einsum's backward gives them) is then sent as raw memory and
    # lands scrambled. _ContiguousGradient makes every gradient contiguous before it gets there.
    return torch.cat([_ContiguousGradient.apply(part) for part in all_gather(tensor.contiguous())], dim=0)


class _ContiguousGradient(torch.autograd.Function):
    """Identity forward; backward returns the gradient made contiguous."""

    @staticmethod
    def forward(ctx, tensor):
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, gradient):
        return gradient.contiguous()


@torch.no_grad()
def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's tensor along dim 0 (no gradient; for queues and statistics)."""
    if world_size() == 1:
        return tensor
    tensor = tensor.contiguous()
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor)
    return torch.cat(parts, dim=0)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (in place on a copy); identity in one process."""
    if world_size() == 1:
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor)
    return tensor


def barrier() -> None:
    """Wait until every rank gets here; nothing in one process."""
    if is_initialized():
        dist.barrier()


def all_reduce_sum_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks with gradient: the backward sums every rank's incoming gradient into each
    rank's contribution (the global quantity feeds every rank's loss). Identity in one process."""
    if world_size() == 1:
        return tensor
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(tensor.contiguous())


def average_across_ranks(tensors: list[torch.Tensor], differentiable: bool = False) -> list[torch.Tensor]:
    """Mean over ranks of each tensor (e.g. gradients from `torch.autograd.grad`, which DDP does not
    average). `differentiable=True` keeps the graph (for unrolled second-order differentiation).

    Args:
        tensors: this rank's tensors (same shapes on every rank).
        differentiable: all-reduce with gradient instead of one flat in-place all-reduce.

    Returns:
        The per-rank means, in the order and shapes given; the inputs themselves in one process.
    """
    world = world_size()
    if world == 1:
        return tensors
    if differentiable:
        return [all_reduce_sum_with_grad(t) / world for t in tensors]
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= world
    return [part.view_as(t) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors)]
