"""The one training loop every deep method uses.

Data that fits in memory stays a uint8 (or float feature) tensor on the training device; data
over the memory budget is a :class:`~hiclust.data.streaming.DiskRows` whose batches worker
processes read from disk. Each epoch draws one permutation either way, slices mini-batches (under
torchrun each rank reads only its shard of every global batch), and hands each batch to the
method's ``step``,
which augments (batched, on the device) and returns its loss terms. The loop owns the optimizer
step, the non-finite check, progress display, per-epoch averaging and the epoch-end hooks
(pruning, checkpoints).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["NonFiniteLossError", "train_loop", "resolve_device"]


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or ±inf; raised before the optimizer step, so the parameters and
    the last checkpoint stay as they were."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" → CUDA when available, else CPU; anything else is passed to torch.device."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N' ({exc})") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but CUDA is not available; use device='auto' or 'cpu'")
    if resolved.type not in ("cpu", "cuda"):  # mps, xpu...: refused here rather than deep inside training
        backend = getattr(torch.backends, resolved.type, None) or getattr(torch, resolved.type, None)
        if not (hasattr(backend, "is_available") and backend.is_available()):
            raise ValueError(f"device {device!r} was requested but this machine has no {resolved.type} device; "
                             "use device='auto' or 'cpu'")
    return resolved


StepFn = Callable[[torch.Tensor, int], dict[str, torch.Tensor]]
EpochHook = Callable[[int, dict[str, float]], None]
EpochStartHook = Callable[[int], None]


def train_loop(
    model: nn.Module,
    step: StepFn,
    data: torch.Tensor,
    *,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    batch_size: int,
    shuffle_generator: torch.Generator,
    start_epoch: int = 0,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    on_epoch_end: EpochHook | None = None,
    progress: bool = True,
    desc: str = "train",
    extra_passes: Sequence[tuple[str, torch.Tensor, StepFn]] = (),
    on_epoch_start: EpochStartHook | None = None,
    shard: tuple[int, int] = (0, 1),
) -> None:
    """Runs epochs ``start_epoch .. epochs−1``.

    Args:
        model: put in train mode; its parameters are what ``optimizer`` updates.
        step: ``step(batch, epoch) -> {"loss": scalar, term: scalar, ...}``; ``batch`` is a slice
            of ``data`` (on the device). Every returned term is checked for finiteness.
        data: (N, ...) tensor on the training device, or a ``DiskRows`` read batch by batch (its
            batches are moved to the device of the model's first parameter).
        shuffle_generator: CPU generator for the per-epoch permutation (checkpointed by callers).
        on_epoch_end: called with (epoch, mean of each term over the epoch's batches) after the
            epoch, e.g. to prune leaves, log, and write a checkpoint.
        extra_passes: ``(name, data, step)`` passes run at the start of every epoch, each over its
            own shuffled ``data`` with its own ``step`` (CC on STL-10: the unlabeled images with
            the instance loss alone, then ``data`` with both losses). Their terms are logged as
            ``name_term``.
        on_epoch_start: called with the epoch before its first batch (data-parallel runs re-seed
            their per-rank augmentation streams there).
        shard: ``(rank, world)``: every global batch of ``batch_size`` rows is cut into ``world``
            contiguous shards and ``step`` gets shard ``rank`` (data-parallel training).

    Raises:
        NonFiniteLossError: naming the epoch, batch, global step and the term that went
            non-finite.
    """
    passes = [*extra_passes, ("", data, step)]
    for name, d, _ in passes:
        if d.shape[0] // batch_size == 0:
            what = f"the {name} data" if name else "the dataset"
            raise ValueError(f"batch_size={batch_size} is larger than {what} ({d.shape[0]} samples); lower batch_size")
    use_bar = progress and sys.stderr.isatty()
    for epoch in range(start_epoch, epochs):
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        model.train()
        logs: dict[str, float] = {}
        started = time.perf_counter()
        for name, d, pass_step in passes:
            terms = _run_pass(model, pass_step, d, optimizer, batch_size, shuffle_generator, epoch,
                              f"{desc}{' ' + name if name else ''} {epoch + 1}/{epochs}" if use_bar else None, shard)
            logs.update({f"{name}_{k}" if name else k: v for k, v in terms.items()})
        if scheduler is not None:
            scheduler.step()
        logs["seconds"] = time.perf_counter() - started
        if on_epoch_end is not None:
            on_epoch_end(epoch, logs)


def _run_pass(model: nn.Module, step: StepFn, data: torch.Tensor, optimizer: torch.optim.Optimizer, batch_size: int,
              shuffle_generator: torch.Generator, epoch: int, bar: str | None,
              shard: tuple[int, int] = (0, 1)) -> dict[str, float]:
    """One shuffled pass over ``data`` (drop_last); returns the mean of each term over its batches."""
    from hiclust.data.streaming import DiskRows

    n = data.shape[0]
    n_batches = n // batch_size  # drop_last: contrastive losses and BatchNorm want full batches
    order = torch.randperm(n, generator=shuffle_generator)
    rank, world = shard
    per_rank = batch_size // world

    def rows(b: int, o: torch.Tensor) -> torch.Tensor:
        """Row indices of this rank's shard of global batch ``b``."""
        start = b * batch_size + rank * per_rank
        return o[start : start + per_rank]

    if isinstance(data, DiskRows):  # worker processes read the batches ahead
        batch_iter = data.batches([rows(b, order) for b in range(n_batches)], next(model.parameters()).device)
    else:
        order = order.to(data.device)
        batch_iter = (data[rows(b, order)] for b in range(n_batches))
    sums: dict[str, float] = {}
    batches = zip(range(n_batches), batch_iter)
    if bar is not None:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=bar, leave=False, file=sys.stderr, total=n_batches)
    for b, batch in batches:
        terms = step(batch, epoch)
        values = {k: float(v.detach()) for k, v in terms.items()}
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise NonFiniteLossError(
                f"non-finite loss at epoch {epoch + 1}, batch {b + 1} (global step "
                f"{epoch * n_batches + b + 1}): term {bad[0]!r} = {values[bad[0]]}; all terms: {values}. "
                "The parameters were not updated with it; lower the learning rate or check the input data."
            )
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        # max_norm=inf: measures the total gradient norm without clipping anything.
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
        if not torch.isfinite(grad_norm):
            raise NonFiniteLossError(
                f"non-finite gradient at epoch {epoch + 1}, batch {b + 1} (global step "
                f"{epoch * n_batches + b + 1}) although every loss term was finite ({values}). "
                "The parameters were not updated with it; lower the learning rate or check the input data."
            )
        optimizer.step()
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
    return {k: v / n_batches for k, v in sums.items()}
