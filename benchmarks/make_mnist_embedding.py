"""An "embedding from an encoder" for the feature-matrix benchmark (issue 13): SimCLR (the small
CNN on 16 px crops, as the CPU presets) trained on the 70,000 MNIST images, then its
representation h of every image saved as ``X`` (float32, N × feature_dim) with the labels ``y``
in an .npz that ``bench_features.py --datasets embedding --embedding PATH`` reads.

    python benchmarks/make_mnist_embedding.py --mnist-root /tmp/mnistroot --epochs 6 --out /tmp/mnist_simclr.npz

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
    model = SimCLR(n_clusters=10, backbone="smallcnn", image_size=16, epochs=args.epochs, batch_size=256, lr=2e-3,
                   clusterer="kmeans", seed=args.seed, eval_every=args.epochs).fit(data)
    seconds = time.perf_counter() - started
    h = model.transform(data).astype(np.float32)
    tmp = out.with_name(out.name + ".partial.npz")
    np.savez(tmp, X=h, y=data.labels.numpy())
    os.replace(tmp, out)
    last = model.history_[-1]
    print(json.dumps({"epochs": args.epochs, "seed": args.seed, "seconds": round(seconds, 1), "shape": list(h.shape),
                      "kmeans_acc": last.get("acc"), "kmeans_nmi": last.get("nmi")}), flush=True)


if __name__ == "__main__":
    main()
