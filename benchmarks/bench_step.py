"""One CoHiClust optimizer step (network forward + loss + backward + Adam) in three layouts, on the
same network and batch: the authors' (the two views through the network one after the other, NCHW
weights), hiclust's before channels-last (both views stacked into one 2B batch, NCHW) and hiclust's
now (stacked, channels-last convolution weights, as ``CoHiClust`` places its model on the CPU);
with ``--compile`` also the stacked layouts under ``torch.compile``; with ``--bf16`` also the
channels-last layout under bfloat16 autocast (``precision="bfloat16"``; only on a CPU with bfloat16
instructions) and the authors' layout under it.
Prints one JSON line per layout and round (median wall and CPU seconds per step).

    python benchmarks/bench_step.py --backbone resnet18 --channels 3 --size 32 --batch-size 128 --threads 2
    python benchmarks/bench_step.py --backbone smallcnn --channels 1 --size 16 --batch-size 256 --threads 2

The views are random floats (augmentation is measured by bench_augment.py); every layout uses
hiclust's closed-form CoHiLoss, so the authors' column leaves out their Python loops over nodes
and pairs and is, if anything, faster than their code. Layouts alternate within each round, so
a busy neighbour slows all of them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch
from machine import cpu_model  # this folder is on sys.path when run as a script

from hiclust.losses import CoHiClustLoss
from hiclust.methods.cohiclust import CoHiClustNet
from hiclust.nn import BACKBONES

LAYOUTS = ("authors_split_nchw", "stacked_nchw", "stacked_channels_last")
COMPILED = ("stacked_nchw_compiled", "stacked_channels_last_compiled")
BF16 = ("authors_split_nchw_bf16", "stacked_channels_last_bf16")


def make_step(layout: str, backbone: str, channels: int, size: int, batch: int, depth: int):
    torch.manual_seed(0)
    net = CoHiClustNet(BACKBONES[backbone](channels, size), depth)
    if "channels_last" in layout:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), 1e-3, fused=True)
    forward = torch.compile(net) if layout.endswith("compiled") else net
    crit = CoHiClustLoss(0.5)
    mask = torch.ones(2**depth)
    gen = torch.Generator().manual_seed(1)
    xa, xb = torch.rand(batch, channels, size, size, generator=gen), torch.rand(batch, channels, size, size, generator=gen)

    def step() -> None:
        # As CoHiClust's training step: the forward under autocast, the loss on float32 outputs.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=layout.endswith("bf16")):
            if layout.startswith("authors"):
                _, za, da = forward(xa)
                _, zb, db = forward(xb)
            else:
                _, z, d = forward(torch.cat((xa, xb)))
                za, zb, da, db = z[:batch], z[batch:], d[:batch], d[batch:]
        loss = crit(za.float(), zb.float(), da.float(), db.float(), mask)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=128, help="B: images per view (2B rows per step)")
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--steps", type=int, default=5, help="measured steps per layout and round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--compile", action="store_true",
                   help="also the stacked layouts under torch.compile (inductor; its compilation is in the warm-up)")
    p.add_argument("--bf16", action="store_true",
                   help="also the authors' and the channels-last layouts under bfloat16 autocast")
    args = p.parse_args()
    if args.bf16:
        from hiclust.methods.base import cpu_has_bf16

        if not cpu_has_bf16():
            raise SystemExit("--bf16: this CPU has no bfloat16 instructions (AVX-512 BF16 or AMX)")
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = {"nproc": os.cpu_count(), "cpu": platform.processor() or platform.machine(), "cpu_model": cpu_model(),
               "threads": torch.get_num_threads(), "torch": torch.__version__}
    for r in range(args.rounds):
        for layout in LAYOUTS + (COMPILED if args.compile else ()) + (BF16 if args.bf16 else ()):
            step = make_step(layout, args.backbone, args.channels, args.size, args.batch_size, args.depth)
            for _ in range(args.warmup):
                step()
            walls, cpus = [], []
            for _ in range(args.steps):
                w, c = time.perf_counter(), time.process_time()
                step()
                walls.append(time.perf_counter() - w)
                cpus.append(time.process_time() - c)
            print(json.dumps({"bench": "cohiclust_step", "layout": layout, "round": r, "backbone": args.backbone,
                              "channels": args.channels, "size": args.size, "batch_size": args.batch_size,
                              "wall_s": round(statistics.median(walls), 4), "cpu_s": round(statistics.median(cpus), 4),
                              **machine}), flush=True)


if __name__ == "__main__":
    main()
