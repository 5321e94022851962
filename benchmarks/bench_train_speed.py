"""Training throughput of CoHiClust on CIFAR-shaped data (3×32×32 uint8, random pixels: this
measures speed only, not quality). Prints one JSON line per measured configuration.

    python benchmarks/bench_train_speed.py --device cuda --backbone resnet18 --n 10240 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from hiclust import CoHiClust


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="auto")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--n", type=int, default=10240)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.n, 3, args.size, args.size), dtype=torch.uint8, generator=g)
    times: list[float] = []
    last = [time.perf_counter()]

    def tick(record: dict) -> None:
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    # pretrain_epochs=0 so every epoch runs the full loss (NT-Xent + CoHiLoss + R1).
    model = CoHiClust(n_clusters=10, depth=4, backbone=args.backbone, epochs=args.epochs + 1, pretrain_epochs=0,
                      prune_start=args.epochs + 1 - 6 if args.epochs + 1 >= 6 else None, batch_size=args.batch_size,
                      device=args.device, verbose=False, eval_every=10**9)
    if args.epochs + 1 < 6:
        model.set_params(depth=3, n_clusters=8)
    model.fit(x, callback=tick)
    steady = times[1:]  # the first epoch includes warm-up (cuDNN autotuning, allocator)
    sec = sum(steady) / len(steady)
    info = {"bench": "cohiclust_train_epoch", "backbone": args.backbone, "n": args.n, "size": args.size,
            "batch_size": args.batch_size, "sec_per_epoch": round(sec, 3), "images_per_sec": round(args.n // args.batch_size * args.batch_size / sec, 1),
            "device": str(model.device_), "nproc": os.cpu_count(), "cpu": platform.processor() or platform.machine()}
    if model.device_.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(model.device_)
        info["max_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    print(json.dumps(info))


if __name__ == "__main__":
    main()
