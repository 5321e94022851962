"""CoHiLoss + R1 forward+backward time: hiclust's closed form vs a pairwise (2N×2N Gram matrix)
implementation of the same reference form. Prints one JSON line per (B, T, implementation).

    python benchmarks/bench_losses.py [--device cpu|cuda] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from hiclust.losses import cohiloss, level_probabilities, tree_balance_loss


def pairwise_reference(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The reference form written with explicit 2N×2N similarity matrices per level."""
    n = a.shape[0]
    levels = level_probabilities(torch.cat((a, b)))
    total = a.new_zeros(())
    eye = torch.eye(2 * n, dtype=torch.bool, device=a.device)
    pos = eye.roll(n, dims=1)
    for t, p in enumerate(levels, start=1):
        m = mask if t == len(levels) else torch.ones_like(mask[: p.shape[1]])
        r = torch.sqrt(p * m + 1e-8)
        sim = r @ r.T
        total = total + sim[~pos].mean() - sim[pos].mean()
    return total


def time_it(fn, a, b, mask, repeats: int, device: torch.device) -> float:
    def once():
        x = a.clone().requires_grad_(True)
        loss = fn(x, b, mask)
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):
        once()
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    device = torch.device(args.device)
    machine = {"nproc": os.cpu_count(), "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}
    if device.type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(device)
    closed = lambda a, b, m: cohiloss(a, b, m) + tree_balance_loss(a, b, m)  # noqa: E731
    pairwise = lambda a, b, m: pairwise_reference(a, b, m) + tree_balance_loss(a, b, m)  # noqa: E731
    g = torch.Generator().manual_seed(0)
    for batch, depth in [(512, 4), (4096, 4), (4096, 8)]:
        a = torch.rand(batch, 2**depth - 1, generator=g).to(device)
        b = torch.rand(batch, 2**depth - 1, generator=g).to(device)
        mask = torch.ones(2**depth, device=device)
        mask[:3] = 0
        diff = float((cohiloss(a, b, mask) - pairwise_reference(a, b, mask)).abs())
        for name, fn in [("closed_form", closed), ("pairwise_gram", pairwise)]:
            sec = time_it(fn, a, b, mask, args.repeats, device)
            print(json.dumps({"bench": "cohiloss_r1_fwd_bwd", "impl": name, "B": batch, "T": depth,
                              "ms": round(sec * 1e3, 3), "abs_diff_vs_pairwise": diff, "device": str(device), **machine}))


if __name__ == "__main__":
    main()
