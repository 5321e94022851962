"""Issue 9, robustness: where every item sits, epoch by epoch. Trains the ``digits`` preset (one
torch thread) with the label evaluation every 2 epochs and records each item's leaf there, then
writes DIR/seed{SEED}.json: metrics, history (leaf masses, pruning order), the labels, and for
every evaluated epoch the leaf of every item (indices among the kept leaves once pruning began)
— and prints, for the epochs given with --show, the leaf × class table.

    python benchmarks/explore_leaf_history.py 3 --out /tmp/leaves --show 64,200
    python benchmarks/explore_leaf_history.py 9 --set pretrain_epochs=100 --out /tmp/leaves --show 110,200
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from hiclust import load_dataset
from hiclust.methods import make_estimator
from hiclust.methods.cohiclust import CoHiClust
from hiclust.metrics import evaluate
from hiclust.runs import load_config_file


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("seed", type=int)
    p.add_argument("--out", required=True, help="folder for seed{SEED}.json (a new file; an existing one is refused)")
    p.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE", help="override a preset parameter")
    p.add_argument("--show", default="", help="comma-separated epochs whose leaf x class table is printed")
    args = p.parse_args()
    out = Path(args.out) / f"seed{args.seed}.json"
    if out.exists():
        raise SystemExit(f"{out} exists; choose another --out")
    torch.set_num_threads(1)
    leaves: dict[int, list[int]] = {}
    evaluate_record = CoHiClust._evaluate_record

    def record_leaves(self, record):
        evaluate_record(self, record)
        leaves[record["epoch"]] = self._predict_raw(self._data.x).tolist()

    CoHiClust._evaluate_record = record_leaves
    overrides = {k: (float(v) if "." in v else int(v)) for k, v in (item.split("=", 1) for item in args.set)}
    preset = load_config_file("digits")
    data = load_dataset("digits", split="all")
    model = make_estimator("cohiclust", {**preset["params"], **overrides, "seed": args.seed, "verbose": False,
                                         "eval_every": 2})
    started = time.perf_counter()
    model.fit(data)
    seconds = time.perf_counter() - started
    y = data.labels.numpy()
    metrics = {k: float(v) for k, v in evaluate(y, model.labels_, linkage=model.hierarchy_.to_linkage()).items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seed": args.seed, "overrides": overrides, "seconds": seconds, "metrics": metrics,
                               "history": model.history_, "pruned": model.pruned_leaves_, "y": y.tolist(),
                               "leaves": leaves}))
    print(json.dumps({"seed": args.seed, "overrides": overrides, "seconds": round(seconds, 1), **metrics}))
    for epoch in (int(e) for e in args.show.split(",") if e):
        pred = np.asarray(leaves[epoch])
        table = np.zeros((pred.max() + 1, y.max() + 1), int)
        np.add.at(table, (pred, y), 1)
        print(f"epoch {epoch}: rows = leaves, columns = classes 0..{y.max()}")
        for leaf, row in enumerate(table):
            if row.sum():
                print(f"  leaf {leaf:2d} ({row.sum():4d} items) | " + " ".join(f"{v:4d}" for v in row))


if __name__ == "__main__":
    main()
