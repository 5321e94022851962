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
    "shutdown",
    "is_distributed",
    "rank",
    "world_size",
    "is_main",
    "barrier",
    "broadcast_buffers",
    "all_gather_with_grad",
    "all_reduce_sum",
    "epoch_seed",
    "block_range",
    "agree",
    "gather_rows",
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


def shutdown(wait_for_all: bool = True) -> None:
    """Leaves and destroys the default process group; a no-op when none is initialized.

    With ``wait_for_all`` every rank first waits at a barrier, so no rank tears the group down
    (rank 0 also hosts torchrun's TCP store) while another still talks to it. Call it when a
    script that called ``init_from_env`` is done: a process that exits with a live gloo group
    can abort in the C++ runtime ("terminate called without an active exception") as the group's
    threads are destroyed at interpreter exit. Pass False where a rank may have failed alone
    (the barrier would then wait for a rank that never comes).

    Unreachable objects are collected first: a DistributedDataParallel wrapper kept alive only by
    reference cycles would otherwise be freed after the group, at interpreter exit, and its
    reducer's teardown can abort the same way (a reproduction with two torchrun agents and DDP on a
    loaded 2-core machine: 3 of 20 launches aborted without the collection, none of 40 with it).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    import gc

    gc.collect()
    if wait_for_all and dist.get_world_size() > 1:
        dist.barrier()
    dist.destroy_process_group()


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


# ----------------------------------------------------------------------------------------------
# inference split over the ranks (``hiclust predict`` under torchrun)
# ----------------------------------------------------------------------------------------------
def block_range(n: int, r: int | None = None, world: int | None = None) -> tuple[int, int]:
    """Rows ``[start, stop)`` of rank ``r``'s contiguous block when ``n`` rows are split over
    ``world`` ranks: ``ceil(n / world)`` rows each in rank order, the last blocks shorter
    (possibly empty when n < world). Defaults: this process's rank and the world size.

    >>> [block_range(41, r, 2) for r in range(2)]
    [(0, 21), (21, 41)]
    >>> [block_range(2, r, 3) for r in range(3)]
    [(0, 1), (1, 2), (2, 2)]
    """
    r = rank() if r is None else int(r)
    world = world_size() if world is None else int(world)
    if n < 0 or world < 1 or not 0 <= r < world:
        raise ValueError(f"block_range needs n >= 0 and 0 <= rank < world, got n={n}, rank={r}, world={world}")
    per = -(-int(n) // world)
    return min(r * per, n), min((r + 1) * per, n)


def agree(error: BaseException | None, info: object = None) -> list:
    """Collective check point that every rank reaches whether or not its own work failed, so that a
    failure on one rank ends all ranks instead of leaving the others waiting in a later
    collective. Each rank passes the exception it caught (or None) and a small picklable
    ``info``; when any rank failed, every rank raises: a failed rank its own exception, the
    others RuntimeError naming the first failed rank and its message. Returns every rank's
    ``info`` in rank order (a single process: ``[info]``, or its own exception raised).
    """
    if not is_distributed():
        if error is not None:
            raise error
        return [info]
    mine = None if error is None else f"{type(error).__name__}: {error}"
    status: list = [None] * dist.get_world_size()
    dist.all_gather_object(status, (mine, info))
    if error is not None:
        raise error
    failed = [(r, s[0]) for r, s in enumerate(status) if s[0] is not None]
    if failed:
        r, message = failed[0]
        raise RuntimeError(f"rank {r} of {len(status)} failed: {message}")
    return [s[1] for s in status]


def _collective_device() -> torch.device:
    """Where tensors of a collective live: this rank's GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_rows(x: np.ndarray, dst: int = 0) -> np.ndarray | None:
    """Every rank's ``(n_r, ...)`` numeric array concatenated along axis 0 in rank order, on rank
    ``dst``; None on the other ranks. The row counts may differ (an empty block included): each
    rank pads its rows to the largest count for ``torch.distributed.gather`` and ``dst`` cuts the
    padding off, so the values come back bit for bit. Every rank must pass the same dtype and
    trailing shape (checked on all ranks alike, ValueError). A single process gets a copy of
    ``x``.
    """
    a = np.ascontiguousarray(x)
    if not is_distributed():
        return a.copy()
    if a.ndim < 1 or a.ndim > 6:
        raise ValueError(f"gather_rows takes arrays of 1 to 6 dimensions, got shape {a.shape}")
    if a.dtype == np.bool_:
        return None if (got := gather_rows(a.view(np.uint8), dst)) is None else got.view(np.bool_)
    t = torch.from_numpy(a)  # refuses dtypes torch has no tensor for (TypeError) before any collective
    device = _collective_device()
    world = dist.get_world_size()
    # header: the row count, the number of dimensions, the trailing shape and a dtype code
    code = zlib.crc32(a.dtype.str.encode())
    header = torch.tensor([a.shape[0], a.ndim, *a.shape[1:], *[0] * (6 - a.ndim), code], dtype=torch.long,
                          device=device)
    headers = [torch.empty_like(header) for _ in range(world)]
    dist.all_gather(headers, header)
    rows = [int(h[0]) for h in headers]
    layouts = {tuple(int(v) for v in h[1:]) for h in headers}
    if len(layouts) != 1:
        raise ValueError(f"gather_rows: the ranks' arrays differ in dtype or trailing shape (this rank: {a.dtype} "
                         f"{a.shape[1:]})")
    most = max(rows)
    padded = torch.zeros((most, *a.shape[1:]), dtype=t.dtype, device=device)
    padded[: a.shape[0]] = t.to(device)
    parts = [torch.empty_like(padded) for _ in range(world)] if dist.get_rank() == dst else None
    dist.gather(padded, parts, dst=dst)
    if parts is None:
        return None
    return np.concatenate([p[:r].cpu().numpy() for p, r in zip(parts, rows)], axis=0)
