"""Issue 13, wine: can a label-free criterion pick good input-space fits among several draws?
For each dataset and seed, one CoHiClust fit with defaults (only n_clusters and the seed), and
one JSON line with ACC / NMI and label-free criteria of the fitted partition: the within-cluster
sum of squares of the standardized rows (k-means' criterion, "inertia"), the silhouette, the
final CoHiLoss, and the largest leaf's share of the items.

    python benchmarks/explore_feature_draws.py --datasets wine,iris,breast_cancer --seeds 0-9

With --tree-draws N each fit makes N draws of the tree itself (CoHiClust(tree_draws=N): the
draw with the smallest largest leaf mass is kept).

Summarize with --summarize FILE: for every window of D consecutive seeds (as D draws), the
draw each criterion picks, and the worst / mean ACC over windows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def criteria(x: np.ndarray, labels: np.ndarray, k: int) -> dict[str, float]:
    from sklearn.metrics import silhouette_score

    z = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)
    inertia = sum(float(((z[labels == c] - z[labels == c].mean(0)) ** 2).sum()) for c in np.unique(labels))
    used = np.unique(labels).size
    sil = float(silhouette_score(z, labels)) if used > 1 else -1.0
    return {"inertia": inertia / len(z), "silhouette": sil, "largest": float(np.bincount(labels).max() / len(z)),
            "used": int(used)}


def run(args: argparse.Namespace) -> None:
    import torch

    from bench_features import load_matrix
    from hiclust import CoHiClust
    from hiclust.metrics import evaluate

    torch.set_num_threads(args.threads)
    lo, hi = (int(v) for v in args.seeds.split("-"))
    for name in args.datasets.split(","):
        x, y, k = load_matrix(name, None)
        for seed in range(lo, hi + 1):
            started = time.perf_counter()
            extra = {} if args.tree_draws is None else {"tree_draws": args.tree_draws}
            if args.draw_epochs is not None:
                extra["draw_epochs"] = args.draw_epochs
            model = CoHiClust(n_clusters=k, seed=seed, verbose=False, **extra).fit(x)
            seconds = time.perf_counter() - started
            m = evaluate(y, model.labels_)
            loss = model.history_[-1].get("cohiloss")
            line = {"dataset": name, "seed": seed, "tree_draws": model.tree_draws, "draw_epochs": model.draw_epochs,
                    "tree_draw": getattr(model, "tree_draw_", None), "acc": round(m["acc"], 4), "nmi": round(m["nmi"], 4),
                    "cohiloss": None if loss is None else round(float(loss), 5),
                    **{c: round(v, 5) if isinstance(v, float) else v for c, v in criteria(x, model.labels_, k).items()},
                    "seconds": round(seconds, 1)}
            print(json.dumps(line), flush=True)


def summarize(path: str, draws: int) -> None:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    for name in sorted({r["dataset"] for r in rows}):
        rs = sorted((r for r in rows if r["dataset"] == name), key=lambda r: r["seed"])
        accs = [r["acc"] for r in rs]
        print(f"{name}: single fits ACC worst {min(accs):.3f} mean {np.mean(accs):.3f}")
        for crit, sign in (("inertia", 1), ("silhouette", -1), ("cohiloss", 1), ("largest", 1)):
            picked = []
            for s in range(len(rs) - draws + 1):
                window = rs[s:s + draws]
                best = min(window, key=lambda r: sign * (r[crit] if r[crit] is not None else np.inf))
                picked.append(best["acc"])
            print(f"  pick by {crit:10s} ({draws} draws): worst {min(picked):.3f} mean {np.mean(picked):.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="wine,iris,breast_cancer")
    p.add_argument("--seeds", default="0-9", help="a range LO-HI")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--summarize", default=None, metavar="FILE", help="summarize the JSON lines in FILE instead")
    p.add_argument("--draws", type=int, default=3)
    p.add_argument("--tree-draws", type=int, default=None,
                   help="fit with this many tree draws (the library's selection) instead of the default")
    p.add_argument("--draw-epochs", type=int, default=None, help="with --tree-draws: epochs each draw trains")
    args = p.parse_args()
    if args.summarize:
        summarize(args.summarize, args.draws)
    else:
        run(args)


if __name__ == "__main__":
    main()
