"""Cost model of data in memory against data streamed from disk (hiclust.data.streaming).

    # embeddings: (N, D) float32 .npy files; CoHiClust fit (2 epochs) + predict, in memory vs streamed
    python benchmarks/bench_streaming.py features --n 10000,100000,1000000 --dim 768 --dir /tmp/hcstream
    # images: a folder of real-sized JPEGs (500x375, ~110 KB); decode+resize throughput per worker,
    # and one training epoch in memory vs streamed with 1 and 2 workers
    python benchmarks/bench_streaming.py images --n 10000 --size 64 --dir /tmp/hcstream

Every configuration runs in a fresh subprocess; its peak resident memory is read from
``/proc/self/status`` (VmHWM, the high-water mark of this process's own memory).
``resource.getrusage(...).ru_maxrss`` is not used: Linux carries it across ``exec``, so a child
reports at least its parent's peak at fork time (3.4 GB here after the parent had written a
3 GB file through a memory map). One JSON line per result on stdout. ``rss_import_mib`` is the
process after importing torch and hiclust, before any data; ``rss_peak_mib`` the peak over the
whole run. ``*_cpu_s``: CPU seconds of the process and its finished children (the data-loading
workers), a measure of the work done that holds when other jobs share the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

_CHILD_FEATURES = r"""
import json, sys, time
import numpy as np, torch
import hiclust
from hiclust.data import load_dataset
path, mode, epochs, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
import resource
def cpu():  # CPU seconds of this process and its finished children (the data-loading workers)
    return sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))
torch.set_num_threads(threads)
mib = lambda: next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
base = mib()
t0 = time.perf_counter()
ds = load_dataset("features:" + path, max_memory=None if mode == "memory" else "1M")
t_load = time.perf_counter() - t0
model = hiclust.CoHiClust(n_clusters=8, epochs=epochs, batch_size=512, random_state=0, verbose=False,
                          device="cpu", eval_every=10**6)
t0, c0 = time.perf_counter(), cpu()
model.fit(ds.features)
t_fit, c_fit = time.perf_counter() - t0, cpu() - c0
t0 = time.perf_counter()
pred = model.predict(ds.features)
t_pred = time.perf_counter() - t0
print(json.dumps({"streamed": ds.is_streamed, "load_s": round(t_load, 2), "fit_s": round(t_fit, 2),
                  "fit_cpu_s": round(c_fit, 2),
                  "epoch_s": [round(r["seconds"], 2) for r in model.history_], "predict_s": round(t_pred, 2),
                  "rss_import_mib": round(base), "rss_peak_mib": round(mib()), "n_pred": int(pred.shape[0])}))
"""

_CHILD_LOADER = r"""
import json, sys, time
import numpy as np, torch
from hiclust.data import load_dataset
folder, size, workers, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
import resource
def cpu():
    return sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))
torch.set_num_threads(1)
ds = load_dataset("folder:" + folder, image_size=size, max_memory=1, workers=workers)
rows = ds.images if limit >= len(ds) else ds.images.take(np.arange(limit))
t0, c0 = time.perf_counter(), cpu()
n = 0
for b in rows.batches([np.arange(s, min(s + 256, len(rows))) for s in range(0, len(rows), 256)]):
    n += b.shape[0]
dt, dc = time.perf_counter() - t0, cpu() - c0
print(json.dumps({"images": n, "seconds": round(dt, 2), "images_per_s": round(n / dt, 1), "cpu_s": round(dc, 2),
                  "images_per_cpu_s": round(n / dc, 1),
                  "rss_peak_mib": round(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024)}))
"""

_CHILD_EPOCH = r"""
import json, sys, time
import numpy as np, torch
import hiclust
from hiclust.data import load_dataset
folder, size, workers, mode, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
import resource
def cpu():
    return sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))
torch.set_num_threads(threads)
t0 = time.perf_counter()
ds = load_dataset("folder:" + folder, image_size=size, max_memory=None if mode == "memory" else 1, workers=workers)
t_load = time.perf_counter() - t0
model = hiclust.CoHiClust(n_clusters=8, epochs=1, batch_size=256, random_state=0, verbose=False, device="cpu",
                          backbone="resnet18", eval_every=10**6)
c0 = cpu()
model.fit(ds)
print(json.dumps({"streamed": ds.is_streamed, "load_s": round(t_load, 2), "epoch_s": round(model.history_[0]["seconds"], 2),
                  "fit_cpu_s": round(cpu() - c0, 2),
                  "rss_peak_mib": round(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024)}))
"""


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "date": time.strftime("%Y-%m-%d")}


def run_child(code: str, *args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_features(path: Path, n: int, d: int, k: int = 10) -> None:
    """(n, d) float32: k Gaussian clusters, written a block at a time (never held whole)."""
    import numpy as np

    if path.exists():
        return
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(k, d)).astype(np.float32) * 3
    tmp = path.with_suffix(".partial.npy")
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, d))
    for s in range(0, n, 50_000):
        e = min(n, s + 50_000)
        arr[s:e] = centers[rng.integers(0, k, e - s)] + rng.normal(size=(e - s, d)).astype(np.float32)
    arr.flush()
    del arr
    tmp.rename(path)


def write_jpegs(folder: Path, n: int) -> None:
    """n JPEGs of 500x375 (ImageNet's typical size) with photo-like content: smooth colour fields
    plus noise, quality 90 (~100 KB each); 10 class folders."""
    import numpy as np
    from PIL import Image

    done = folder / ".complete"
    if done.exists():
        return
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:375, 0:500].astype(np.float32)
    for i in range(n):
        cls = folder / f"class{i % 10}"
        cls.mkdir(parents=True, exist_ok=True)
        f = rng.uniform(0.005, 0.03, size=(3, 2))
        ph = rng.uniform(0, 6.3, size=3)
        img = np.stack([127 + 100 * np.sin(f[c, 0] * xx + f[c, 1] * yy + ph[c]) for c in range(3)], -1)
        img += rng.normal(0, 12, size=img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(cls / f"{i:07d}.jpg", quality=90)
    done.touch()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=("features", "images"))
    ap.add_argument("--n", default="10000", help="comma-separated dataset sizes")
    ap.add_argument("--dim", type=int, default=768, help="features: D")
    ap.add_argument("--size", type=int, default=64, help="images: the training image size (px)")
    ap.add_argument("--epochs", type=int, default=2, help="features: CoHiClust epochs")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the network")
    ap.add_argument("--workers", default="1,2", help="images: data-loading worker counts to measure")
    ap.add_argument("--modes", default="memory,streamed")
    ap.add_argument("--loader-limit", type=int, default=0, help="images: decode at most this many in the loader "
                    "throughput pass (0: all)")
    ap.add_argument("--no-epoch", action="store_true", help="images: loader throughput only")
    ap.add_argument("--dir", required=True, help="where the synthetic data is written (reused if present)")
    args = ap.parse_args()
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    info = machine()
    for n in (int(v) for v in args.n.split(",")):
        if args.kind == "features":
            path = root / f"features_{n}x{args.dim}.npy"
            write_features(path, n, args.dim)
            for mode in args.modes.split(","):
                res = run_child(_CHILD_FEATURES, path, mode, args.epochs, args.threads)
                print(json.dumps({"bench": "features", "n": n, "dim": args.dim, "mode": mode,
                                  "file_mib": round(path.stat().st_size / 2**20), **res, **info}), flush=True)
            continue
        folder = root / f"jpegs_{n}"
        write_jpegs(folder, n)
        for w in (int(v) for v in args.workers.split(",")):
            res = run_child(_CHILD_LOADER, folder, args.size, w, args.loader_limit or n)
            print(json.dumps({"bench": "decode", "n": n, "size": args.size, "workers": w, **res, **info}), flush=True)
        if args.no_epoch:
            continue
        for mode in args.modes.split(","):
            for w in ([0] if mode == "memory" else [int(v) for v in args.workers.split(",")]):
                res = run_child(_CHILD_EPOCH, folder, args.size, w, mode, args.threads)
                print(json.dumps({"bench": "epoch", "n": n, "size": args.size, "mode": mode, "workers": w,
                                  "threads": args.threads, **res, **info}), flush=True)


if __name__ == "__main__":
    main()
