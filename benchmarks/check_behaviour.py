"""Fixed-seed predictions of every deep method on scikit-learn's digits, to show that a refactor
preserves behaviour: run it before and after, then compare the two files.

    python benchmarks/check_behaviour.py --out before.npz
    python benchmarks/check_behaviour.py --out after.npz --compare before.npz

Prints one JSON line per method: the fraction of samples whose prediction differs from the
reference file (0.0 = identical) and the largest absolute difference of ``predict_proba``.
Short runs (a few epochs) on CPU with one thread: the point is bit-for-bit equality, not quality.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

import hiclust
from hiclust.data import load_dataset

RUNS = {
    "cohiclust": (hiclust.CoHiClust, dict(n_clusters=10, epochs=9, pretrain_epochs=2, prune_start=2, batch_size=256,
                                          lr=3e-3)),
    "cc": (hiclust.ContrastiveClustering, dict(n_clusters=10, epochs=3, batch_size=256)),
    "simclr": (None, dict(n_clusters=10, epochs=3, batch_size=256)),
    "dec": (hiclust.DEC, dict(n_clusters=10, pretrain_epochs=3, epochs=2, update_interval=5, n_init=2,
                              hidden_dims=(64, 64))),
    "idec": (hiclust.IDEC, dict(n_clusters=10, pretrain_epochs=3, epochs=2, update_interval=5, n_init=2,
                                hidden_dims=(64, 64))),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="npz file to write the predictions to")
    p.add_argument("--compare", help="npz file written by an earlier run of this script")
    args = p.parse_args()
    torch.set_num_threads(1)
    from hiclust.methods import METHODS

    data = load_dataset("digits", split="all")
    ref = dict(np.load(args.compare)) if args.compare else None
    out = {}
    for name, (cls, params) in RUNS.items():
        cls = cls or METHODS[name]
        model = cls(**params, device="cpu", seed=0, verbose=False).fit(data)
        out[f"{name}_labels"] = np.asarray(model.labels_)
        out[f"{name}_proba"] = model.predict_proba(data)
        line = {"method": name}
        if ref is not None:
            line["labels_differ"] = float(np.mean(ref[f"{name}_labels"] != out[f"{name}_labels"]))
            line["proba_max_abs_diff"] = float(np.abs(ref[f"{name}_proba"] - out[f"{name}_proba"]).max())
        print(json.dumps(line), flush=True)
    np.savez(args.out, **out)


if __name__ == "__main__":
    main()
