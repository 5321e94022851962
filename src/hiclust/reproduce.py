"""The paper's flat table (CIFAR-10, CIFAR-100/20, STL-10, ImageNet-10, ImageNet-Dogs) for CoHiClust
and CC: which bundled presets reproduce it, which of their data sets a data root holds, a smoke
run of a preset on synthetic data of its shape, and the table of finished runs beside the
published numbers.

``benchmarks/reproduce_flat_table.sh DATA_ROOT`` drives it; the subcommand

    hiclust flat-table available DATA_ROOT      # the presets whose data DATA_ROOT holds
    hiclust flat-table table RUNS_DIR           # RUNS_DIR/<preset>/metrics.json → table.md, table.csv

serves that script and anyone who ran the presets by hand.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "FlatPreset", "FLAT_PRESETS", "PUBLISHED_FLAT", "data_available", "available_presets",
    "synthetic_stand_in", "smoke_run", "collect_runs", "format_flat_markdown", "format_flat_csv", "register",
]


@dataclass(frozen=True)
class FlatPreset:
    """One cell group of the flat table: ``method`` on ``dataset`` with bundled preset ``name``.

    ``shape`` is (C, H, W) of the stored images; ``images_per_epoch`` what one training epoch
    passes through the network (an instance-only pass included)."""

    name: str
    method: str
    dataset: str
    shape: tuple[int, int, int]
    images_per_epoch: int


FLAT_PRESETS: tuple[FlatPreset, ...] = (
    FlatPreset("cifar10", "cohiclust", "cifar10", (3, 32, 32), 60_000),
    FlatPreset("cc_cifar10", "cc", "cifar10", (3, 32, 32), 60_000),
    FlatPreset("cifar100_20", "cohiclust", "cifar100_20", (3, 32, 32), 60_000),
    FlatPreset("cc_cifar100_20", "cc", "cifar100_20", (3, 32, 32), 60_000),
    FlatPreset("stl10", "cohiclust", "stl10", (3, 96, 96), 100_000),
    FlatPreset("cc_stl10", "cc", "stl10", (3, 96, 96), 113_000),
    FlatPreset("imagenet10", "cohiclust", "imagenet10", (3, 224, 224), 13_000),
    FlatPreset("cc_imagenet10", "cc", "imagenet10", (3, 224, 224), 13_000),
    FlatPreset("imagenet_dogs", "cohiclust", "imagenet_dogs", (3, 224, 224), 19_500),
    FlatPreset("cc_imagenet_dogs", "cc", "imagenet_dogs", (3, 224, 224), 19_500),
)

# NMI, ACC, ARI of the CoHiClust paper's flat table (CC's row as quoted there from the CC paper).
PUBLISHED_FLAT: dict[tuple[str, str], tuple[float, float, float]] = {
    ("cohiclust", "cifar10"): (0.779, 0.839, 0.731),
    ("cohiclust", "cifar100_20"): (0.467, 0.437, 0.299),
    ("cohiclust", "stl10"): (0.584, 0.613, 0.474),
    ("cohiclust", "imagenet10"): (0.907, 0.953, 0.899),
    ("cohiclust", "imagenet_dogs"): (0.411, 0.355, 0.232),
    ("cc", "cifar10"): (0.705, 0.790, 0.637),
    ("cc", "cifar100_20"): (0.431, 0.429, 0.266),
    ("cc", "stl10"): (0.764, 0.850, 0.726),
    ("cc", "imagenet10"): (0.859, 0.893, 0.822),
    ("cc", "imagenet_dogs"): (0.445, 0.429, 0.274),
}

_DATASET_LABELS = {"cifar10": "CIFAR-10", "cifar100_20": "CIFAR-100 (20)", "stl10": "STL-10",
                   "imagenet10": "ImageNet-10", "imagenet_dogs": "ImageNet-Dogs"}
_METHOD_LABELS = {"cohiclust": "CoHiClust", "cc": "CC"}


def preset_by_name(name: str) -> FlatPreset:
    for p in FLAT_PRESETS:
        if p.name == name:
            return p
    raise ValueError(f"{name!r} is not a flat-table preset; choose one of {', '.join(p.name for p in FLAT_PRESETS)}")


def data_available(dataset: str, root: str | Path) -> bool:
    """Whether ``root`` holds the files ``load_dataset(dataset, root=root)`` reads (without reading them)."""
    root = Path(root)
    files = {
        "cifar10": ["cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch"],
        "cifar100_20": ["cifar-100-python/train", "cifar-100-python/test"],
        "stl10": ["stl10_binary/train_X.bin", "stl10_binary/test_X.bin", "stl10_binary/unlabeled_X.bin"],
    }
    if dataset in files:
        return all((root / f).is_file() for f in files[dataset])
    if dataset in ("imagenet10", "imagenet_dogs"):
        from hiclust.data.imagenet import IMAGENET10_CLASSES, IMAGENET_DOGS_CLASSES, _train_dir

        wnids = list(IMAGENET10_CLASSES if dataset == "imagenet10" else IMAGENET_DOGS_CLASSES)
        base = _train_dir(root, wnids)
        return all((base / w).is_dir() for w in wnids)
    raise ValueError(f"no flat-table dataset {dataset!r}")


def available_presets(root: str | Path) -> list[FlatPreset]:
    """The flat-table presets whose data ``root`` holds, in table order."""
    return [p for p in FLAT_PRESETS if data_available(p.dataset, root)]


def synthetic_stand_in(preset: FlatPreset, n: int, seed: int = 0, labeled: bool = False):
    """Random uint8 images of the preset's stored shape: an :class:`ImageDataset` of ``n`` images."""
    import torch

    from hiclust.data import ImageDataset

    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, *preset.shape), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=gen) if labeled else None
    return ImageDataset(images, labels, None, preset.dataset)


def smoke_run(name: str, *, steps_per_epoch: int = 10, epochs: int | None = None, batch_size: int | None = None,
              device: str = "auto", seed: int = 0, overrides: dict[str, Any] | None = None,
              total_steps: int | None = None) -> dict[str, Any]:
    """Trains preset ``name`` on synthetic data of its shape for a few epochs and measures it.

    Everything but the schedule is the preset's (network, crop size, batch, optimizer, augmentation,
    and CC's instance-only pass for STL-10); CoHiClust gets one NT-Xent epoch, then the tree terms
    and all its prunings. The first epoch (warm-up: allocation, cuDNN autotuning) is not timed
    unless it is the only one. ``overrides`` replace preset parameters last (a CPU test shrinks the
    tree to one level there so that a single step runs); ``total_steps`` raises ``steps_per_epoch``
    so that the whole run has about that many steps.

    Returns one record: ``images_per_s`` (training samples per second, two views each),
    ``peak_memory_gib`` (CUDA only), ``full_recipe_hours`` (the preset's epochs × images per epoch
    at that rate), ``steps`` and ``seconds``.
    """
    import torch

    from hiclust.methods import make_estimator
    from hiclust.runs import load_config_file

    preset = preset_by_name(name)
    config = load_config_file(name)
    params = dict(config["params"])
    full_epochs = int(params["epochs"])
    batch = int(batch_size or params["batch_size"])
    if preset.method == "cohiclust":
        prunings = 2 ** int(params["depth"]) - int(params["n_clusters"])
        epochs = epochs or max(3, prunings + 2)
        params.update(pretrain_epochs=1, prune_start=1)
    else:
        epochs = epochs or 3
    params.update(epochs=epochs, batch_size=batch, device=device, seed=seed, verbose=False, eval_every=10**6)
    params.update(overrides or {})
    epochs = int(params["epochs"])
    if total_steps is not None:  # spread about that many steps over the epochs the schedule needs
        steps_per_epoch = max(steps_per_epoch, -(-total_steps // epochs))
    n = batch * steps_per_epoch
    data = synthetic_stand_in(preset, n, seed)
    fit_extra: dict[str, Any] = {}
    if config.get("instance_split"):
        fit_extra["instance_data"] = synthetic_stand_in(preset, n, seed + 1)
    model = make_estimator(preset.method, params)
    cuda = model.device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    model.fit(data, **fit_extra)
    seconds = time.perf_counter() - started
    timed = model.history_[1:] or model.history_
    per_epoch = n * (2 if fit_extra else 1)
    rate = per_epoch * len(timed) / sum(r["seconds"] for r in timed)
    return {
        "preset": name, "method": preset.method, "dataset": preset.dataset, "device": str(model.device_),
        "batch_size": batch, "image_shape": list(preset.shape), "crop": model.image_size_,
        "steps": epochs * steps_per_epoch * (2 if fit_extra else 1), "seconds": round(seconds, 2),
        "images_per_s": round(rate, 1),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "full_recipe_epochs": full_epochs, "images_per_epoch": preset.images_per_epoch,
        "full_recipe_hours": round(full_epochs * preset.images_per_epoch / rate / 3600, 1),
    }


# ---------------------------------------------------------------------------------------- the table
def collect_runs(runs_dir: str | Path) -> list[dict[str, Any]]:
    """One row per flat-table preset, in table order: the metrics of ``runs_dir/<preset>`` when
    the run finished (its metrics.json exists), else ``status`` "missing" / "unfinished"."""
    runs_dir = Path(runs_dir)
    rows = []
    for p in FLAT_PRESETS:
        run = runs_dir / p.name
        row: dict[str, Any] = {"preset": p.name, "method": p.method, "dataset": p.dataset}
        metrics = run / "metrics.json"
        if metrics.is_file():
            m = json.loads(metrics.read_text())
            row.update(status="done", **{k: m.get(k) for k in ("nmi", "acc", "ari", "dp")})
            history = run / "history.jsonl"
            if history.is_file():
                records = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
                row["hours"] = round(sum(r.get("seconds", 0.0) for r in records) / 3600, 2)
        else:
            row["status"] = "unfinished" if (run / "run.json").is_file() else "missing"
        rows.append(row)
    return rows


def _cell(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def format_flat_markdown(rows: list[dict[str, Any]], title: str = "") -> str:
    """Dataset | Method | NMI | ACC | ARI (ours) | NMI | ACC | ARI (published) | GPU hours | status."""
    out = io.StringIO()
    if title:
        out.write(f"{title}\n\n")
    out.write("| Dataset | Method | NMI | ACC | ARI | published NMI | ACC | ARI | hours | status |\n"
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
    for r in rows:
        pub = PUBLISHED_FLAT.get((r["method"], r["dataset"]), (None, None, None))
        cells = [_DATASET_LABELS.get(r["dataset"], r["dataset"]), _METHOD_LABELS.get(r["method"], r["method"]),
                 *(_cell(r.get(k)) for k in ("nmi", "acc", "ari")), *(_cell(v) for v in pub),
                 "–" if r.get("hours") is None else f"{r['hours']:.1f}", r["status"]]
        out.write("| " + " | ".join(cells) + " |\n")
    return out.getvalue()


def format_flat_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["dataset", "method", "preset", "status", "nmi", "acc", "ari", "dp", "hours",
                "published_nmi", "published_acc", "published_ari"])
    for r in rows:
        pub = PUBLISHED_FLAT.get((r["method"], r["dataset"]), (None, None, None))
        w.writerow([r["dataset"], r["method"], r["preset"], r["status"]]
                   + ["" if r.get(k) is None else f"{r[k]:.6g}" for k in ("nmi", "acc", "ari", "dp", "hours")]
                   + ["" if v is None else v for v in pub])
    return buf.getvalue()


# ---------------------------------------------------------------------------------------- CLI
def _cmd(args: argparse.Namespace) -> int:
    from hiclust.checkpoint import atomic_write_text

    if args.action == "available":
        if not Path(args.path).is_dir():
            raise ValueError(f"DATA_ROOT {args.path} is not a directory")
        for p in available_presets(args.path):
            print(p.name)
        return 0
    runs = Path(args.path)
    if not runs.is_dir():
        raise ValueError(f"RUNS_DIR {runs} is not a directory")
    rows = collect_runs(runs)
    title = f"Flat table: {sum(r['status'] == 'done' for r in rows)} of {len(rows)} runs finished ({runs})"
    md = format_flat_markdown(rows, title)
    atomic_write_text(runs / "table.md", md)
    atomic_write_text(runs / "table.csv", format_flat_csv(rows))
    print(md, end="")
    print(f"wrote {runs / 'table.md'} and {runs / 'table.csv'}")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "flat-table", help="the paper's flat table: presets whose data a root holds, or the table of finished runs",
        description="available DATA_ROOT: print the flat-table presets (CoHiClust and CC on CIFAR-10, CIFAR-100/20, "
                    "STL-10, ImageNet-10, ImageNet-Dogs) whose data DATA_ROOT holds. table RUNS_DIR: read "
                    "RUNS_DIR/<preset>/metrics.json and write RUNS_DIR/table.md and table.csv beside the published "
                    "numbers. benchmarks/reproduce_flat_table.sh uses both.")
    p.add_argument("action", choices=["available", "table"])
    p.add_argument("path", metavar="DATA_ROOT|RUNS_DIR")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice; "
                   "the table itself reads JSON files and needs none)")
    p.set_defaults(func=_cmd)
