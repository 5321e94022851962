"""Multi-process data parallelism with PyTorch's own engine (torch.distributed + DDP).

Launch: ``torchrun --nproc_per_node=G -m hiclust train ...``. torchrun sets RANK, LOCAL_RANK,
WORLD_SIZE, MASTER_ADDR and MASTER_PORT; ``init_from_env`` reads them. With one process (no
torchrun, or WORLD_SIZE=1) every helper here answers as for a single process and nothing is
initialized, so the single-process code path is unchanged.

Why gather with gradients: contrastive losses (NT-Xent, CoHiLoss) compare every sample with
every other one, so each rank gathers the (B_local, ·) outputs of all ranks into the
(B_global, ·) global batch and computes the loss on it. ``all_gather_with_grad`` keeps the
gradient path: its backward sums the gathered gradient over the ranks and returns this rank's
slice. Every rank computes the same global loss L, so rank r's parameters receive
G · ∂L/∂(its samples); DDP's gradient averaging (÷G) then sums the per-rank contributions into
exactly ∂L/∂θ of a single process that saw the whole batch (tested in tests/test_distributed.py).
"""

from __future__ import annotations

import os
import zlib

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "init_from_env",
    "is_distributed",
    "rank",
    "world_size",
    "is_main",
    "barrier",
    "broadcast_buffers",
    "all_gather_with_grad",
    "all_reduce_sum",
    "epoch_seed",
]


def init_from_env() -> bool:
    """Initializes the default process group from torchrun's environment when WORLD_SIZE > 1.

    Backend: "nccl" when CUDA is available (and the device is set to cuda:LOCAL_RANK first),
    else "gloo". Does nothing (and returns False) for a single process or when already
    initialized by the caller (returns True then).

    Raises:
        ValueError: WORLD_SIZE or LOCAL_RANK is not an integer.
    """
    if dist.is_available() and dist.is_initialized():
        return True
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as exc:
        raise ValueError(f"WORLD_SIZE and LOCAL_RANK must be integers (set by torchrun): {exc}") from None
    if world <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed support")
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl")
    else:
        dist.init_process_group(backend="gloo")
    return True


def is_distributed() -> bool:
    """True when a process group with more than one process is initialized."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 for a single process)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes (1 for a single process)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 (the only rank that prints and writes files)."""
    return rank() == 0


def barrier() -> None:
    """Waits for every rank; a no-op for a single process."""
    if is_distributed():
        dist.barrier()


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: concatenation of every rank's tensor along dim 0. Backward: the sum over ranks of
    the gradient of the gathered tensor, sliced to this rank's rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        world = dist.get_world_size()
        sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world)]
        dist.all_gather(sizes, torch.tensor([x.shape[0]], dtype=torch.long, device=x.device))
        sizes_list = [int(s) for s in sizes]
        if len(set(sizes_list)) != 1:
            # all_gather needs equal shapes; unequal shards mean the caller split the batch wrongly.
            raise ValueError(f"all_gather_with_grad needs the same number of rows on every rank, got {sizes_list}")
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        # Every rank used the gathered tensor; this rank's rows influence all ranks' losses.
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Gathers (B_local, ...) tensors of all ranks into (world · B_local, ...) in rank order.

    The result is differentiable: gradients flow back to this rank's ``x`` (summed over ranks, see
    the module docstring for why that matches single-process gradients under DDP averaging).
    Every rank must pass a tensor of the same shape. A single process gets ``x`` itself back.
    """
    if not is_distributed():
        return x
    return _AllGatherWithGrad.apply(x)


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copies ``src``'s buffers (e.g. BatchNorm running statistics, which each rank updates from its
    own shard) to every rank, so evaluation and saved models agree; no-op for a single process."""
    if is_distributed():
        for buf in module.buffers():
            dist.broadcast(buf, src)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sums ``t`` over the ranks in place (e.g. per-rank leaf masses into the global batch's);
    a no-op for a single process. Returns ``t``."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def epoch_seed(seed: int, rank: int, phase: str, epoch: int) -> int:
    """The seed of ``rank``'s augmentation stream for ``epoch`` (0-based) of training phase ``phase``.

    Under torchrun every rank re-seeds its augmentation generator with this at the start of every
    epoch, so the stream of an epoch is a function of (seed, rank, phase, epoch) alone: a run
    resumed from a checkpoint (which holds only rank 0's generator state) draws exactly the
    augmentations of an uninterrupted run. NumPy's SeedSequence mixes the four numbers, so nearby
    (rank, epoch) pairs get unrelated streams. The result fits torch's 63-bit seeds.
    """
    words = (seed, rank, zlib.crc32(phase.encode()), epoch)
    state = np.random.SeedSequence([int(w) & 0xFFFF_FFFF_FFFF_FFFF for w in words]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])
