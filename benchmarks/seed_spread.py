"""Issue 9, robustness: one preset on several seeds, with what each run's history says about it.
For every seed, one JSON line: ACC / NMI / ARI / DP, wall seconds, the pruning order with each
pruned leaf's share of the mass when it went, the final leaf shares, and ACC at each evaluation.

    python benchmarks/seed_spread.py --config digits --seeds 0,1,2,3,4 --threads 1 --out spread.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from machine import cpu_model  # this folder is on sys.path when run as a script


def _value(text: str) -> object:
    """A --set value read as YAML: an int, a float, a word, or a mapping such as
    '{preset: auto, stroke_p: 0.5}'. Numbers first, as YAML reads '1e-3' as a word."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="digits", help="a preset name (src/hiclust/configs)")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--root", default=None, help="data root for presets that need one")
    p.add_argument("--out", default=None, help="also append the lines to this file")
    p.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE",
                   help="override a preset parameter (an int, a float, a word or a YAML mapping), e.g. --set prune_start=95, "
                        "--set precision=bfloat16, --set 'augmentation={preset: auto, stroke_p: 0.5}'")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from hiclust import load_dataset
    from hiclust.methods import make_estimator
    from hiclust.metrics import evaluate
    from hiclust.runs import load_config_file

    preset = load_config_file(args.config)
    overrides = {k: _value(v) for k, v in (item.split("=", 1) for item in args.set)}
    data = load_dataset(preset["dataset"], root=args.root, split=preset.get("split", "all"))
    y = data.labels.numpy()
    for seed in (int(s) for s in args.seeds.split(",")):
        params = {**preset["params"], **overrides, "seed": seed, "verbose": False, "eval_every": 10}
        model = make_estimator(preset["method"], params)
        started = time.perf_counter()
        model.fit(data)
        seconds = time.perf_counter() - started
        metrics = evaluate(y, model.labels_, linkage=model.hierarchy_.to_linkage())
        pruned = [{"epoch": h["epoch"], "leaf": h["pruned_leaf"], "mass": h["leaf_mass"][h["pruned_leaf"]]}
                  for h in model.history_ if h.get("pruned_leaf") is not None]
        line = {"config": args.config, "overrides": overrides, "seed": seed, "seconds": round(seconds, 1),
                **{k: round(float(v), 4) for k, v in metrics.items() if isinstance(v, (float, int, np.floating))},
                "pruned": pruned, "final_leaf_mass": model.history_[-1].get("leaf_mass"),
                "acc_by_epoch": {h["epoch"]: round(h["acc"], 4) for h in model.history_ if "acc" in h},
                "leaf_sizes": np.bincount(model.labels_, minlength=model.n_clusters).tolist(),
                "tree_draw": getattr(model, "tree_draw_", None),
                "tree_draw_masses": getattr(model, "tree_draw_masses_", None),
                "nproc": os.cpu_count(), "cpu_model": cpu_model(), "threads": torch.get_num_threads()}
        text = json.dumps(line)
        print(text, flush=True)
        if args.out:
            with Path(args.out).open("a") as f:
                f.write(text + "\n")


if __name__ == "__main__":
    main()
