"""Issue 9, robustness: which label-free score tells a good tree draw from a bad one on images?
Trains a preset with ``tree_draws`` > 1 and, at the end of each draw's search (where the library
compares the draws by their largest leaf's mass), records for that draw: ACC / NMI (labels, for
judging only), the largest leaf mass, and candidate label-free scores of its partition:

* ``sil_own``: cosine silhouette of the leaves on the draw's own representation h (each draw
  trains the backbone on from the shared pre-trained state, so these differ per draw);
* ``sil_shared`` / ``wss_shared``: the silhouette and the within-cluster share of the total sum of
  squares (1 − R², k-means' criterion made scale-free) of the partition on the representation at
  the end of pre-training, which every draw shares, so the draws are compared on one footing;
* ``confidence``: the mean probability of each item's most probable leaf.

One JSON line per draw and one per seed (the draw the library kept, and the final metrics).

    python benchmarks/explore_draw_criteria.py --config digits --seeds 0,1,2,3,4 --threads 1 --out FILE
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_model  # this folder is on sys.path when run as a script


def scores(h: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, float]:
    """Silhouette (cosine, on at most 3,000 items) and the within-cluster share of the sum of
    squares of the L2-normalized rows of h (N, d) for the partition ``labels`` (N,)."""
    from sklearn.metrics import silhouette_score

    z = h / np.linalg.norm(h, axis=1, keepdims=True).clip(1e-12)
    total = ((z - z.mean(0)) ** 2).sum()
    within = sum(((z[labels == c] - z[labels == c].mean(0)) ** 2).sum() for c in np.unique(labels))
    idx = np.random.default_rng(seed).permutation(len(z))[:3000]
    sil = silhouette_score(z[idx], labels[idx], metric="cosine") if np.unique(labels[idx]).size > 1 else -1.0
    return {"silhouette": round(float(sil), 4), "wss": round(float(within / total), 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="digits")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--root", default=None)
    p.add_argument("--out", default=None, help="also append the lines to this file")
    p.add_argument("--draws", type=int, default=3)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from hiclust import load_dataset
    from hiclust.methods.cohiclust import CoHiClust
    from hiclust.metrics import evaluate
    from hiclust.runs import load_config_file

    preset = load_config_file(args.config)
    data = load_dataset(preset["dataset"], root=args.root, split=preset.get("split", "all"))
    y = data.labels.numpy()

    def emit(line: dict) -> None:
        text = json.dumps(line)
        print(text, flush=True)
        if args.out:
            with Path(args.out).open("a") as f:
                f.write(text + "\n")

    for seed in (int(s) for s in args.seeds.split(",")):
        draws: list[dict] = []

        class Recording(CoHiClust):
            """Records the candidate scores where the library snapshots: once where pre-training
            ends (the shared representation) and at the end of each draw's search."""

            def _snapshot(self, optimizer_state):
                snap = super()._snapshot(optimizer_state)
                if getattr(self, "_draw", None) is None and not hasattr(self, "_shared_h"):
                    self._shared_h = self._batched_eval(self._embed, self._x).double().numpy()
                elif getattr(self, "_draw", None) is not None:
                    proba = self._batched_eval(self._masked_leaf_probs, self._x)
                    labels = proba.argmax(1).numpy()
                    h = self._batched_eval(self._embed, self._x).double().numpy()
                    m = evaluate(y, labels)
                    own, shared = scores(h, labels, seed), scores(self._shared_h, labels, seed)
                    line = {"config": args.config, "seed": seed, "draw": int(self._draw),
                            "epoch": self.history_[-1]["epoch"], "acc": round(float(m["acc"]), 4),
                            "nmi": round(float(m["nmi"]), 4),
                            "largest_mass": round(max(self.history_[-1]["leaf_mass"]), 4),
                            "sil_own": own["silhouette"], "wss_own": own["wss"],
                            "sil_shared": shared["silhouette"], "wss_shared": shared["wss"],
                            "confidence": round(float(proba.max(1).values.mean()), 4),
                            "sizes": np.bincount(labels, minlength=proba.shape[1]).tolist()}
                    draws.append(line)
                    emit(line)
                    self.model_.train()
                return snap

        params = {**preset["params"], "seed": seed, "verbose": False, "eval_every": 10, "tree_draws": args.draws}
        model = Recording(**params)
        started = time.perf_counter()
        model.fit(data)
        metrics = evaluate(y, model.labels_, linkage=model.hierarchy_.to_linkage())
        emit({"config": args.config, "seed": seed, "kept_draw": model.tree_draw_,
              "seconds": round(time.perf_counter() - started, 1),
              **{k: round(float(v), 4) for k, v in metrics.items() if isinstance(v, (float, int, np.floating))},
              "nproc": os.cpu_count(), "cpu_model": cpu_model(), "threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
