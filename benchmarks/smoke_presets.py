"""GPU smoke run of every flat-table preset on synthetic data of its shape (issue: every dataset of
the paper's flat table). For each preset: the preset's network, crop size, batch, optimizer and
augmentation (CoHiClust: one NT-Xent epoch, then the tree terms and all prunings; CC on STL-10: the
instance-only pass too) for about --steps optimizer steps; prints one JSON line per preset with
images/s (training samples, two views each, first epoch not timed), peak CUDA memory and the wall
time the full recipe would take at that rate (epochs × images per epoch / rate).

    python benchmarks/smoke_presets.py --steps 200 > smoke.jsonl
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time

import torch

from hiclust.reproduce import FLAT_PRESETS, smoke_run


def machine() -> dict[str, str]:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name"))
    except (StopIteration, OSError):
        pass
    import os

    return {"gpu": gpu, "cpu": cpu, "nproc": str(os.cpu_count()), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200, help="optimizer steps per preset, about (default 200)")
    ap.add_argument("--presets", default=None, help="comma-separated preset names (default: all ten)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    names = args.presets.split(",") if args.presets else [p.name for p in FLAT_PRESETS]
    print(json.dumps({"machine": machine()}), flush=True)
    for name in names:
        try:
            rec = smoke_run(name, total_steps=args.steps, device=args.device)
        except Exception as exc:  # noqa: BLE001 — report it (out of memory, ...) and go on with the next preset
            rec = {"preset": name, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
        print(json.dumps(rec), flush=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
