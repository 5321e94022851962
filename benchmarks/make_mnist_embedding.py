"""An "embedding from an encoder" for the feature-matrix benchmark (issue 13): SimCLR (on 16 px
crops, as the CPU presets; the small CNN by default, ResNet18 with ``--backbone resnet18``)
trained on the 70,000 MNIST images (or the first ``--train-subset`` of them), then its
representation h of every one of the 70,000 images saved as ``X`` (float32, N × feature_dim: 128
for the small CNN, 512 for ResNet18) with the labels ``y`` in an .npz that
``bench_features.py --datasets embedding --embedding PATH`` reads.

    python benchmarks/make_mnist_embedding.py --mnist-root /tmp/mnistroot --epochs 6 --out /tmp/mnist_simclr.npz
    python benchmarks/make_mnist_embedding.py --mnist-root /tmp/mnistroot --backbone resnet18 \
        --train-subset 10000 --epochs 3 --out /tmp/mnist_simclr_resnet18.npz

Prints one JSON line (epochs, seconds, the encoder's k-means ACC/NMI on h). The output file is
written to a temporary name and renamed when complete; an existing file is not replaced.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mnist-root", required=True)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backbone", choices=("smallcnn", "resnet18"), default="smallcnn")
    p.add_argument("--train-subset", type=int, default=None,
                   help="train on the first N images only (the embedding still covers all 70,000)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists; choose another --out (this script does not replace files)")

    import torch

    from hiclust import SimCLR
    from hiclust.data import load_dataset

    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset("mnist", root=args.mnist_root, split="all")
    started = time.perf_counter()
    # k-means, not the default agglomerative clusterer: Ward over 70,000 points needs O(N²) memory.
    train = data if args.train_subset is None else data.subset(np.arange(args.train_subset))
    model = SimCLR(n_clusters=10, backbone=args.backbone, image_size=16, epochs=args.epochs, batch_size=256, lr=2e-3,
                   clusterer="kmeans", seed=args.seed, eval_every=args.epochs).fit(train)
    seconds = time.perf_counter() - started
    h = model.transform(data).astype(np.float32)
    tmp = out.with_name(out.name + ".partial.npz")
    np.savez(tmp, X=h, y=data.labels.numpy())
    os.replace(tmp, out)
    last = model.history_[-1]
    print(json.dumps({"backbone": args.backbone, "train_images": len(train), "epochs": args.epochs, "seed": args.seed, "seconds": round(seconds, 1), "shape": list(h.shape),
                      "kmeans_acc": last.get("acc"), "kmeans_nmi": last.get("nmi")}), flush=True)


if __name__ == "__main__":
    main()
