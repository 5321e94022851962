"""Augmentation throughput on the CPU: hiclust's batched pipeline against torchvision's per-image
transforms (v1 and v2), the SimCLR/CoHiClust recipe (random resized crop 0.08–1, flip 0.5, colour
jitter 0.4/0.4/0.4/0.1 with p 0.8 in random order, grayscale 0.2), uint8 images in, float out.

    python benchmarks/bench_augment.py --sizes 32,96 --batch 256 --repeats 5 --threads 1

One JSON line per (pipeline, size): images per second (best of --repeats timed batches after one
warm-up batch). The torchvision pipelines run image by image on uint8 tensors, as a DataLoader
worker would; hiclust's runs once per batch.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def tv_pipeline(version: int, size: int):
    if version == 2:
        from torchvision.transforms import v2 as T

        return T.Compose([
            T.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True), T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(0.2),
            T.ToDtype(torch.float32, scale=True),
        ])
    import torchvision.transforms as T

    return T.Compose([
        T.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True), T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(0.2),
        T.ConvertImageDtype(torch.float32),
    ])


def best_rate(fn, images: torch.Tensor, repeats: int) -> float:
    fn(images)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(images)
        best = min(best, time.perf_counter() - t)
    return images.shape[0] / best


def main() -> None:
    from hiclust.data import augmentation_preset

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="32,96")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    for size in (int(s) for s in args.sizes.split(",")):
        images = torch.randint(0, 256, (args.batch, 3, size, size), generator=gen, dtype=torch.uint8)
        ours = augmentation_preset("simclr", size, 3, generator=torch.Generator().manual_seed(1))
        rows = {"hiclust (batched)": lambda x: ours(x)}
        for v in (1, 2):
            t = tv_pipeline(v, size)
            rows[f"torchvision v{v} (per image)"] = lambda x, t=t: torch.stack([t(im) for im in x])
        rates = {name: best_rate(fn, images, args.repeats) for name, fn in rows.items()}
        for name, rate in rates.items():
            print(json.dumps({"pipeline": name, "size": size, "batch": args.batch, "threads": args.threads,
                              "images_per_s": round(rate, 1),
                              "speedup_vs_v2": round(rate / rates["torchvision v2 (per image)"], 2)}), flush=True)


if __name__ == "__main__":
    main()
