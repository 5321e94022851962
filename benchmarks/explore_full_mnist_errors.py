"""Issue 9: what a finished full-MNIST run gets wrong. For each run directory (written by
``hiclust train --config mnist``): the leaves × classes table, and, with ``--kmeans``, k-means
(k = 10, 3 inits) on the run's learned representation (raw and L2-normalized) beside the tree's
own ACC / NMI; ``--sevens PNG`` draws, per run, the mean image of the 7s in their own leaf, the
mean of the 7s in the leaf of another class, and seven of the latter (``--digit 4`` the same for
the 4s, or any class).

    python benchmarks/explore_full_mnist_errors.py RUN [RUN ...] --root /tmp/mnistroot --kmeans --sevens PNG
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--root", required=True, help="the MNIST data root the runs trained on")
    p.add_argument("--kmeans", action="store_true")
    p.add_argument("--sevens", default=None, metavar="PNG", help="draw the misplaced items of --digit")
    p.add_argument("--digit", type=int, default=7, help="the class --sevens draws (default 7)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from hiclust import CoHiClust, load_dataset
    from hiclust.metrics import evaluate

    data = load_dataset("mnist", root=args.root, split="all")
    y = data.labels.numpy()
    tables = {}
    for run in args.runs:
        a = pd.read_csv(f"{run}/assignments.csv")
        tables[run] = a
        print(run)
        print(pd.crosstab(a["leaf"], a["label"]))
        if args.kmeans:
            from sklearn.cluster import KMeans

            h = CoHiClust.load(f"{run}/model.pt", device="cpu").transform(data)
            for name, feats in (("h", h), ("h_l2", h / np.linalg.norm(h, axis=1, keepdims=True))):
                km = KMeans(10, n_init=3, random_state=0).fit(feats)
                print(json.dumps({"run": run, "kmeans_on": name, "dim": int(h.shape[1]),
                                  **{k: round(float(v), 4) for k, v in evaluate(y, km.labels_).items()}}))
    if args.sevens:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        x = data.images[:, 0].numpy().astype(float)
        fig, axes = plt.subplots(len(args.runs), 9, figsize=(9, 1.1 * len(args.runs)), squeeze=False)
        rng = np.random.default_rng(0)
        for row, run in enumerate(args.runs):
            sevens = tables[run][tables[run]["label"] == args.digit]
            counts = sevens["leaf"].value_counts()
            own, other = counts.index[0], counts.index[1]  # the class's leaf, and the leaf holding most of the rest
            ok = sevens[sevens["leaf"] == own]["item"].to_numpy()
            odd = sevens[sevens["leaf"] == other]["item"].to_numpy()
            axes[row, 0].imshow(x[ok].mean(0), cmap="gray")
            axes[row, 0].set_title(f"{args.digit}s in leaf {own}", fontsize=6)
            axes[row, 1].imshow(x[odd].mean(0), cmap="gray")
            axes[row, 1].set_title(f"{len(odd)} {args.digit}s in leaf {other}", fontsize=6)
            for j, i in enumerate(rng.choice(odd, 7, replace=False)):
                axes[row, 2 + j].imshow(x[i], cmap="gray")
        for ax in axes.flat:
            ax.axis("off")
        plt.tight_layout()
        plt.savefig(args.sevens, dpi=110)
        print(f"wrote {args.sevens}")


if __name__ == "__main__":
    main()
