"""``hiclust bench``: train several methods on one dataset and write one comparison table.

Every deep method is trained with its bundled preset (``configs/<method>_<dataset>.yaml``; for
CoHiClust also ``configs/<dataset>.yaml``; estimator defaults otherwise), every baseline is run
on raw pixels (or, for the ``ae_*`` / ``simclr_*`` baselines, on features learned with the DEC /
SimCLR preset), and the table gives NMI, ACC, ARI, dendrogram purity (hierarchical methods only,
over the tree of the K clusters) and the wall time of fitting, in the layout of the papers'
tables. Files written to ``--out``: ``results.jsonl`` (one record per method, appended as each
finishes), ``table.md`` and ``table.csv`` (rewritten after each method).

    hiclust bench --dataset digits --methods cohiclust,cc,dec,idec,kmeans,agglomerative --out runs/bench
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["register", "run_bench", "resolve_preset", "DISPLAY_NAMES", "DEFAULT_METHODS", "format_markdown"]

DISPLAY_NAMES: dict[str, str] = {
    "cohiclust": "CoHiClust",
    "cc": "CC",
    "dec": "DEC",
    "idec": "IDEC",
    "simclr": "SimCLR features + agglomerative",
    "kmeans": "k-means",
    "spectral": "Spectral clustering",
    "nmf": "NMF",
    "agglomerative": "Agglomerative (ward)",
    "agglomerative_ward": "Agglomerative (ward)",
    "agglomerative_average": "Agglomerative (average)",
    "agglomerative_complete": "Agglomerative (complete)",
    "agglomerative_single": "Agglomerative (single)",
    "bisecting_kmeans": "Bisecting k-means",
    "ae_kmeans": "AE + k-means",
    "ae_agglomerative": "AE + agglomerative (ward)",
    "simclr_agglomerative": "SimCLR features + agglomerative",
    "simclr_kmeans": "SimCLR features + k-means",
}

DEFAULT_METHODS = (
    "kmeans,spectral,agglomerative_ward,agglomerative_average,agglomerative_complete,nmf,bisecting_kmeans,"
    "ae_kmeans,ae_agglomerative,dec,idec,simclr,cc,cohiclust"
)

COLUMNS = ("method", "nmi", "acc", "ari", "dp", "seconds")


def _configs_dir() -> Path:
    return Path(__file__).parent / "configs"


def resolve_preset(method: str, dataset: str) -> tuple[dict[str, Any], str | None]:
    """Parameters of the bundled preset for ``method`` on ``dataset``: (params, preset name or None).

    Looked up: ``<method>_<dataset>.yaml``, then (CoHiClust only) ``<dataset>.yaml``. A preset
    whose ``method`` differs from ``method`` is skipped.
    """
    from hiclust.runs import load_config_file

    key = dataset.strip().lower().replace("-", "_")
    names = [f"{method}_{key}"] + ([key] if method == "cohiclust" else [])
    for name in names:
        if (_configs_dir() / f"{name}.yaml").is_file():
            preset = load_config_file(name)
            if preset.get("method", method) == method:
                return dict(preset.get("params", {})), name
    return {}, None


def _metrics(y: np.ndarray, labels: np.ndarray, hierarchy: Any) -> dict[str, float | None]:
    from hiclust.metrics import evaluate

    if hierarchy is not None and hierarchy.n_leaves > 1:
        m = evaluate(y, labels, hierarchy.to_linkage(), labels)
    else:
        m = evaluate(y, labels)
    return {"nmi": m["nmi"], "acc": m["acc"], "ari": m["ari"], "dp": m.get("dp")}


# DEC/IDEC parameters that define the pre-trained autoencoder: a preset that differs from the
# DEC preset in any of them pre-trains its own.
_PRETRAINING_PARAMS = (
    "backbone", "hidden_dims", "embedding_dim", "conv_channels", "pretrain_epochs", "pretrain_lr", "batch_size",
    "weight_decay", "corruption", "augmentation", "locality_weight", "n_neighbors", "self_augmentation_weight",
)


def _shared_autoencoder(data: Any, n_clusters: int, out: Path, cache: dict[str, Any], *, seed: int, device: str,
                        verbose: bool, overrides: dict[str, dict[str, Any]]) -> Any:
    """Pre-trains DEC's autoencoder once (DEC preset, ``epochs=0``) for DEC, IDEC and the AE
    baselines, as the DEC and IDEC papers do; saved as ``out/autoencoder.pt``."""
    if "ae" not in cache:
        from hiclust.methods.dec import DEC

        params, preset = resolve_preset("dec", data.name)
        params = {"n_clusters": n_clusters, **params, **overrides.get("dec", {}), "seed": seed, "device": device,
                  "verbose": verbose, "epochs": 0}
        params.pop("pretrained", None)
        model = DEC(**params)
        model.check_params(data)
        started = time.perf_counter()
        model.fit(data)
        seconds = time.perf_counter() - started
        path = out / "autoencoder.pt"
        model.save(path)
        cache["ae"] = (model, seconds, path, preset)
    return cache["ae"]


def _run_one(name: str, data: Any, n_clusters: int, *, seed: int, device: str, verbose: bool,
             overrides: dict[str, dict[str, Any]], out: Path, cache: dict[str, Any],
             share_autoencoder: bool = True) -> dict[str, Any]:
    from hiclust.baselines import BASELINES, FEATURE_BASELINES, agglomerative, run_baseline
    from hiclust.methods import METHODS, make_estimator

    record: dict[str, Any] = {"method": name, "name": DISPLAY_NAMES.get(name, name)}
    ae_kw = dict(seed=seed, device=device, verbose=verbose, overrides=overrides)
    if name in ("ae_kmeans", "ae_agglomerative") and share_autoencoder:
        ae, ae_seconds, _, preset = _shared_autoencoder(data, n_clusters, out, cache, **ae_kw)
        started = time.perf_counter()
        if name == "ae_kmeans":  # DEC's initialisation: k-means (n_init restarts) on z
            labels, hierarchy = np.asarray(ae.init_labels_), None
        else:
            result = agglomerative(ae.transform(data), n_clusters, linkage="ward")
            labels, hierarchy = result.labels, result.hierarchy
        record.update(seconds=time.perf_counter() - started + ae_seconds, pretrain_seconds=ae_seconds, preset=preset)
    elif name in METHODS:
        params, preset = resolve_preset(name, data.name)
        params = {"n_clusters": n_clusters, **params, "seed": seed, "device": device, "verbose": verbose}
        params.update(overrides.get(name, {}))
        pretrain_seconds = 0.0
        if name in ("dec", "idec") and share_autoencoder and params.get("pretrained") is None:
            ae, ae_seconds, ae_path, _ = _shared_autoencoder(data, n_clusters, out, cache, **ae_kw)
            mine, theirs = make_estimator(name, params)._config(), ae._config()
            if all(mine[k] == theirs[k] for k in _PRETRAINING_PARAMS):
                params["pretrained"] = str(ae_path)
                pretrain_seconds = ae_seconds
        model = make_estimator(name, params)
        model.check_params(data)
        started = time.perf_counter()
        model.fit(data)
        record["seconds"] = time.perf_counter() - started + pretrain_seconds
        if pretrain_seconds:
            record["pretrain_seconds"] = pretrain_seconds
        labels, hierarchy = np.asarray(model.labels_), getattr(model, "hierarchy_", None)
        record["preset"] = preset
        record["params"] = {k: v for k, v in params.items() if k not in ("verbose",)}
    elif name in BASELINES or name in FEATURE_BASELINES:
        feature_params = None
        if name in FEATURE_BASELINES:
            learner = "dec" if FEATURE_BASELINES[name][0] == "autoencoder" else "simclr"
            params, preset = resolve_preset(learner, data.name)
            feature_params = {**params, "device": device, "verbose": verbose, **overrides.get(learner, {})}
            feature_params.pop("n_clusters", None)
            record["preset"] = preset
        result = run_baseline(name, data, n_clusters, random_state=seed, feature_params=feature_params)
        labels, hierarchy = result.labels, result.hierarchy
        record["seconds"] = result.seconds
        record.update({k: v for k, v in result.extra.items() if isinstance(v, (int, float))})
    else:
        known = sorted(set(METHODS) | set(BASELINES) | set(FEATURE_BASELINES))
        raise ValueError(f"unknown method {name!r} for bench; choose from {', '.join(known)}")
    record.update(_metrics(data.labels.numpy(), labels, hierarchy))
    record["n_clusters_found"] = int(np.unique(labels).size)
    return record


def format_markdown(rows: list[dict[str, Any]], title: str = "") -> str:
    """The table in the papers' layout: Method | NMI | ACC | ARI | DP | Time (s)."""
    out = io.StringIO()
    if title:
        out.write(f"{title}\n\n")
    out.write("| Method | NMI | ACC | ARI | DP | Time (s) |\n| --- | --- | --- | --- | --- | --- |\n")
    for r in rows:
        cells = [r.get("name", r["method"])]
        for key in ("nmi", "acc", "ari", "dp"):
            v = r.get(key)
            cells.append("–" if v is None else f"{v:.3f}")
        cells.append("–" if r.get("seconds") is None else f"{r['seconds']:.1f}")
        out.write("| " + " | ".join(cells) + " |\n")
    return out.getvalue()


def _write_tables(out: Path, rows: list[dict[str, Any]], title: str) -> None:
    from hiclust.checkpoint import atomic_write_text

    atomic_write_text(out / "table.md", format_markdown(rows, title))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["dataset", "method", "name", "nmi", "acc", "ari", "dp", "seconds"])
    for r in rows:
        writer.writerow([r["dataset"], r["method"], r["name"]] + [
            "" if r.get(k) is None else f"{r[k]:.6g}" for k in ("nmi", "acc", "ari", "dp", "seconds")])
    atomic_write_text(out / "table.csv", buf.getvalue())


def _parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, param = key.partition(".")
        if not sep or not dot or not method or not param:
            raise ValueError(f"--set expects METHOD.PARAM=VALUE (e.g. cc.epochs=5), got {item!r}")
        out.setdefault(method, {})[param] = yaml.safe_load(value)
    return out


def run_bench(
    dataset: str,
    methods: list[str],
    out: str | Path,
    *,
    root: str | None = None,
    split: str = "all",
    seed: int = 0,
    device: str = "auto",
    verbose: bool = False,
    overrides: dict[str, dict[str, Any]] | None = None,
    threads: int | None = None,
    share_autoencoder: bool = True,
) -> list[dict[str, Any]]:
    """Runs ``methods`` on ``dataset``; writes results.jsonl, table.md, table.csv to ``out``.

    With ``share_autoencoder``, DEC, IDEC, "AE + k-means" and "AE + agglomerative" start from one
    autoencoder pre-trained with the DEC preset (as in the DEC/IDEC papers); each of their
    ``seconds`` includes that pre-training time (``pretrain_seconds``).

    Returns one record per method: method, name, nmi, acc, ari, dp (None if flat), seconds,
    preset, dataset, n_samples.
    """
    import torch

    from hiclust.data import load_dataset

    if threads is not None:
        torch.set_num_threads(int(threads))
    data = load_dataset(dataset, root=root, split=split)
    if data.labels is None:
        raise ValueError(f"dataset {dataset!r} has no labels; the benchmark needs ground-truth classes")
    n_clusters = int(np.unique(data.labels.numpy()).size)
    overrides = overrides or {}
    methods = [m.strip() for m in methods if m.strip()]
    if not methods:
        raise ValueError("give at least one method, e.g. --methods kmeans,cc")
    from hiclust.baselines import BASELINES, FEATURE_BASELINES
    from hiclust.methods import METHODS

    unknown = [m for m in methods if m not in METHODS and m not in BASELINES and m not in FEATURE_BASELINES]
    if unknown:
        known = sorted(set(METHODS) | set(BASELINES) | set(FEATURE_BASELINES))
        raise ValueError(f"unknown method(s) {', '.join(unknown)} for bench; choose from {', '.join(known)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}"
    title = (f"**{dataset}** ({len(data)} images, {n_clusters} classes, split={split}: trained and evaluated on the "
             f"same images), seed {seed}, device {device} ({machine})")
    rows: list[dict[str, Any]] = []
    cache: dict[str, Any] = {}
    for name in methods:
        record = _run_one(name, data, n_clusters, seed=seed, device=device, verbose=verbose, overrides=overrides,
                          out=out, cache=cache, share_autoencoder=share_autoencoder)
        record.update(dataset=dataset, n_samples=len(data), split=split, seed=seed)
        rows.append(record)
        with open(out / "results.jsonl", "a") as f:
            f.write(json.dumps(record, default=str) + "\n")
        _write_tables(out, rows, title)
        shown = "  ".join(f"{k.upper()}={record[k]:.3f}" for k in ("nmi", "acc", "ari", "dp") if record.get(k) is not None)
        print(f"{record['name']:<34} {shown}  ({record['seconds']:.1f} s)", flush=True)
    return rows


def _cmd_bench(args: argparse.Namespace) -> int:
    run_bench(
        args.dataset, args.methods.split(","), args.out, root=args.root, split=args.split, seed=args.seed,
        device=args.device, verbose=args.verbose, overrides=_parse_overrides(args.set or []), threads=args.threads,
        share_autoencoder=not args.separate_autoencoders,
    )
    print(f"wrote {Path(args.out) / 'table.md'} and {Path(args.out) / 'table.csv'}")
    return 0


def register(subparsers: Any) -> None:
    """Adds ``hiclust bench`` to the CLI."""
    p = subparsers.add_parser("bench", help="train several methods on one dataset; write a Markdown/CSV comparison table")
    p.add_argument("--dataset", required=True, help="digits, mnist5k, mnist, fashion_mnist, cifar10, ...")
    p.add_argument("--methods", default=DEFAULT_METHODS,
                   help=f"comma-separated methods and baselines (default: {DEFAULT_METHODS})")
    p.add_argument("--out", required=True, help="directory for results.jsonl, table.md, table.csv")
    p.add_argument("--root", default=None, help="dataset directory")
    p.add_argument("--split", default="all", help="train, test or all (default all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--set", action="append", metavar="METHOD.PARAM=VALUE",
                   help="override a preset parameter, e.g. --set cc.epochs=20 (repeatable)")
    p.add_argument("--separate-autoencoders", action="store_true",
                   help="pre-train DEC's and IDEC's autoencoders separately instead of sharing one (default: shared)")
    p.add_argument("--verbose", action="store_true", help="per-epoch logs of the deep methods")
    p.set_defaults(func=_cmd_bench)
