"""CoHiClust quality and cost on a real dataset with a bundled preset: trains once and prints
one JSON line (NMI, ACC, ARI, DP, leaf purity, wall and CPU seconds, machine).

    python benchmarks/bench_cohiclust.py --config mnist5k [--threads 2] [--epochs N] [--seed 0]

Data the machine lacks is reported as skipped, never fabricated.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from machine import cpu_name  # this folder is on sys.path when run as a script

from hiclust.data import DatasetNotFoundError, load_dataset
from hiclust.methods import make_estimator
from hiclust.metrics import evaluate
from hiclust.runs import load_config_file


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="mnist5k")
    p.add_argument("--root", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config_file(args.config)
    params = dict(cfg["params"], seed=args.seed, device=args.device, verbose=False)
    if args.epochs:
        params["epochs"] = args.epochs
    base = {"bench": "cohiclust_quality", "config": args.config, "dataset": cfg["dataset"], "split": cfg.get("split", "all"),
            "nproc": os.cpu_count(), "torch_threads": torch.get_num_threads(), "cpu": cpu_name(),
            "date": time.strftime("%Y-%m-%d")}
    try:
        data = load_dataset(cfg["dataset"], root=args.root, split=cfg.get("split", "all"))
    except (DatasetNotFoundError, ImportError) as exc:
        print(json.dumps({**base, "skipped": str(exc).splitlines()[0]}))
        return
    model = make_estimator(cfg["method"], params)
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(data)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    metrics = evaluate(data.labels.numpy(), model.labels_, model.hierarchy_.to_linkage(), model.labels_)
    print(json.dumps({**base, "n": len(data), "params": {k: v for k, v in params.items() if k != "verbose"},
                      **{k: round(v, 4) for k, v in metrics.items()}, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                      "device": str(model.device_)}))


if __name__ == "__main__":
    main()
