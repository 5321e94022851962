"""``hiclust bench``: train several methods on one dataset and write one comparison table.

Every deep method is trained with its bundled preset (``configs/<method>_<dataset>.yaml``; for
CoHiClust also ``configs/<dataset>.yaml``; estimator defaults otherwise), every baseline is run
on raw pixels (or, for the ``ae_*`` / ``simclr_*`` baselines, on features learned with the DEC /
SimCLR preset), and the table gives NMI, ACC, ARI, dendrogram purity (hierarchical methods only,
over the tree of the K clusters) and the wall time of fitting, in the layout of the papers'
tables. Files written to ``--out``: ``results.jsonl`` (one record per method and seed, appended
as each finishes), ``table.md`` and ``table.csv`` (rewritten after each method). An ``--out`` that
already holds these files (or ``autoencoder*.pt``) from an earlier bench is refused: a bench never
appends to or replaces earlier results. ``--epochs N`` sets every deep method's training epochs.

    hiclust bench --dataset digits --methods cohiclust,cc,dec,idec,kmeans,agglomerative --out runs/bench

``--table hierarchical`` gives the layout of the CoHiClust paper's hierarchical table (Method | DP |
NMI | ACC | Time (s), each "mean ± std" over ``--seeds``, beside the published DP / NMI / ACC) and
by default runs its rows: DeepECT, DeepECT + Aug, IDEC (agglomerative complete*), AE + k-means
(bisecting*), CoHiClust, plus CC + L2H (docs/methods.md, "DeepECT" and "Post-hoc trees"):

    hiclust bench --table hierarchical --dataset mnist --seeds 0,1,2 --out runs/hier

``--table ablation`` gives the CoHiClust paper's ablation (its Tables 3 and 5, CIFAR-10) on any
dataset: CoHiLoss alone, + R1, + R1 + R2 (full CoHiClust), CoHiClust without pre-training, and
SimCLR features + agglomerative, each "mean ± std" over ``--seeds`` with the worst seed, beside the
published NMI / ACC / ARI (:data:`ABLATION_METHODS`; its rows are fixed, so ``--methods`` is
refused with it):

    hiclust bench --table ablation --dataset digits --seeds 0,1,2 --out runs/ablation
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = [
    "register", "run_bench", "resolve_preset", "DISPLAY_NAMES", "DEFAULT_METHODS", "HIERARCHICAL_METHODS",
    "PUBLISHED_HIERARCHICAL", "format_markdown", "summarize_seeds", "format_hierarchical_markdown",
    "format_hierarchical_csv", "with_epochs", "check_bench_out", "BENCH_FILES", "ABLATION_METHODS",
    "ABLATION_NAMES", "PUBLISHED_ABLATION", "ablation_params", "format_ablation_markdown", "format_ablation_csv",
    "format_seeds_markdown", "format_seeds_csv",
]

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
    "deepect": "DeepECT",
    "deepect_aug": "DeepECT + Aug",
    "idec_complete": "IDEC (agglomerative complete*)",
    "ae_bisecting": "AE + k-means (bisecting*)",
    "cc_l2h": "CC + L2H",
    "cohiloss": "CoHiLoss alone",
    "cohiloss_r1": "CoHiLoss + R1",
    "cohiclust_no_pretrain": "CoHiClust w/o pre-training",
}

# Other spellings accepted on the command line (and as --set keys).
ALIASES: dict[str, str] = {"cc+l2h": "cc_l2h"}

# Rows of the hierarchical table that are not plain estimators or baselines:
# a variant of an estimator (name → (estimator, fixed parameters)) ...
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {"deepect_aug": ("deepect", {"augmentation": "affine"})}
# ... CoHiClust with loss terms or the pre-training switched off, the rows of the paper's loss
# ablation (its Table 3; docs/methods.md, "Regularization"). Pre-training is NT-Xent alone, i.e.
# R2 alone, so the rows without R2 cannot have it: pretrain_epochs=0, and every epoch of the
# preset trains the tree. These fixed parameters define the rows: they win over --set cohiclust.X
# (not over --set <row>.X) ...
ABLATION_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "cohiloss": ("cohiclust", {"nt_xent_weight": 0.0, "balance_weight": 0.0, "pretrain_epochs": 0}),
    "cohiloss_r1": ("cohiclust", {"nt_xent_weight": 0.0, "pretrain_epochs": 0}),
    "cohiclust_no_pretrain": ("cohiclust", {"pretrain_epochs": 0}),
}
VARIANTS.update(ABLATION_VARIANTS)
# ... a tree built post hoc over the clusters of a trained estimator (name → estimator) ...
POST_HOC: dict[str, str] = {"idec_complete": "idec", "cc_l2h": "cc"}
# ... and bisecting k-means on the embedding of the shared pre-trained autoencoder.
AE_ROWS = ("ae_kmeans", "ae_agglomerative", "ae_bisecting")

DEFAULT_METHODS = (
    "kmeans,spectral,agglomerative_ward,agglomerative_average,agglomerative_complete,nmf,bisecting_kmeans,"
    "ae_kmeans,ae_agglomerative,dec,idec,simclr,cc,cohiclust"
)

COLUMNS = ("method", "nmi", "acc", "ari", "dp", "seconds")

TABLES = ("flat", "hierarchical", "ablation")

# The rows of the CoHiClust paper's hierarchical table, plus CC + L2H.
HIERARCHICAL_METHODS = ("deepect", "deepect_aug", "idec_complete", "ae_bisecting", "cohiclust", "cc_l2h")

# Published (DP, NMI, ACC) of the hierarchical table (docs/methods.md, "Reference results";
# MNIST and Fashion-MNIST, train + test). Quoted, not produced by hiclust.
PUBLISHED_HIERARCHICAL: dict[str, dict[str, tuple[float, float, float]]] = {
    "mnist": {
        "deepect": (0.82, 0.83, 0.85),
        "deepect_aug": (0.94, 0.93, 0.95),
        "idec_complete": (0.40, 0.86, 0.85),
        "ae_bisecting": (0.53, 0.70, 0.77),
        "cohiclust": (0.97, 0.97, 0.99),
    },
    "fashion_mnist": {
        "deepect": (0.47, 0.60, 0.52),
        "deepect_aug": (0.44, 0.59, 0.50),
        "idec_complete": (0.35, 0.58, 0.53),
        "ae_bisecting": (0.38, 0.52, 0.48),
        "cohiclust": (0.52, 0.62, 0.65),
    },
}
_DATASET_KEYS = {"fmnist": "fashion_mnist", "f_mnist": "fashion_mnist", "fashionmnist": "fashion_mnist",
                 "cifar_10": "cifar10"}

# The rows of the CoHiClust paper's ablation (CIFAR-10: the paper's Tables 3 and 5, quoted in
# docs/methods.md, "Reference results"), in the paper's order. Reading of the paper: its "CoHiLoss + R1 + R2" row
# (0.767 / 0.84 / 0.72) is the full method *with* pre-training: the same numbers are its ResNet-50
# CoHiClust in Table 2 and "CoHiClust" in Table 5, and Table 3's separate "CoHiClust w/o
# pre-training" row is that full loss without it. So "cohiclust" (the preset as is) is the
# "+ R1 + R2" row and "cohiclust_no_pretrain" the one without pre-training. Table 5's
# "agglomerative clustering trained on the representation generated by the self-supervised
# learning model" is the simclr_agglomerative baseline: CoHiClust's backbone and projection head
# trained with NT-Xent alone (SimCLR preset of the dataset, SimCLR defaults where it has none),
# then Ward agglomerative clustering of the backbone features.
ABLATION_METHODS = ("cohiloss", "cohiloss_r1", "cohiclust", "cohiclust_no_pretrain", "simclr_agglomerative")
ABLATION_NAMES: dict[str, str] = {
    "cohiloss": "CoHiLoss alone",
    "cohiloss_r1": "CoHiLoss + R1",
    "cohiclust": "CoHiLoss + R1 + R2 (CoHiClust)",
    "cohiclust_no_pretrain": "CoHiClust w/o pre-training",
    "simclr_agglomerative": "SimCLR features + agglomerative",
}
# Published (NMI, ACC, ARI), quoted as printed (hence strings: "0.84" is not "0.840"): CIFAR-10,
# ResNet-50, train + test. Not produced by hiclust.
PUBLISHED_ABLATION: dict[str, dict[str, tuple[str, str, str]]] = {
    "cifar10": {
        "cohiloss": ("0.567", "0.569", "0.457"),
        "cohiloss_r1": ("0.629", "0.726", "0.549"),
        "cohiclust": ("0.767", "0.84", "0.72"),
        "cohiclust_no_pretrain": ("0.59", "0.657", "0.50"),
        "simclr_agglomerative": ("0.265", "0.363", "0.147"),
    },
}


def _dataset_key(dataset: str) -> str:
    key = dataset.strip().lower().replace("-", "_")
    return _DATASET_KEYS.get(key, key)


def published_hierarchical(dataset: str) -> dict[str, tuple[float, float, float]]:
    """Published (DP, NMI, ACC) per method for ``dataset`` ({} if the paper has none)."""
    return PUBLISHED_HIERARCHICAL.get(_dataset_key(dataset), {})


def published_ablation(dataset: str) -> dict[str, tuple[str, str, str]]:
    """Published (NMI, ACC, ARI) per ablation row for ``dataset``, as quoted ({} if none: the paper's
    ablation is on CIFAR-10 only)."""
    return PUBLISHED_ABLATION.get(_dataset_key(dataset), {})


def canonical_method(name: str) -> str:
    """The bench name of a method as typed on the command line (``cc+l2h`` → ``cc_l2h``)."""
    name = name.strip()
    return ALIASES.get(name, name)


def _known_methods() -> list[str]:
    from hiclust.baselines import BASELINES, FEATURE_BASELINES
    from hiclust.methods import METHODS

    return sorted(set(METHODS) | set(BASELINES) | set(FEATURE_BASELINES) | set(VARIANTS) | set(POST_HOC)
                  | set(AE_ROWS))


def _configs_dir() -> Path:
    return Path(__file__).parent / "configs"


def resolve_preset(method: str, dataset: str, *, estimator: str | None = None) -> tuple[dict[str, Any], str | None]:
    """Parameters of the bundled preset for ``method`` on ``dataset``: (params, preset name or None).

    Looked up: ``<method>_<dataset>.yaml``, then (CoHiClust only) ``<dataset>.yaml``. A preset
    whose ``method`` differs from ``method`` is skipped.

    For a variant row trained by another estimator (``estimator``, e.g. ``deepect_aug`` by
    ``deepect``): ``<method>_<dataset>.yaml`` and then ``<estimator>_<dataset>.yaml``, each
    accepted when its ``method`` is ``method`` or ``estimator``.
    """
    from hiclust.runs import load_config_file

    key = dataset.strip().lower().replace("-", "_")
    estimator = estimator or method
    names = [f"{method}_{key}"] + ([f"{estimator}_{key}"] if estimator != method else [])
    names += [key] if estimator == "cohiclust" else []
    for name in names:
        if (_configs_dir() / f"{name}.yaml").is_file():
            preset = load_config_file(name)
            if preset.get("method", estimator) in (method, estimator):
                return dict(preset.get("params", {})), name
    return {}, None


def _metrics(y: np.ndarray, labels: np.ndarray, hierarchy: Any, leaf_of: np.ndarray | None = None) -> dict[str, Any]:
    """NMI / ACC / ARI of the flat ``labels``, and DP over ``hierarchy``.

    Without ``leaf_of`` the clusters are the leaves of ``hierarchy`` (trees over the K clusters).
    With ``leaf_of`` (a tree with more leaves than clusters, e.g. DeepECT's ``leaf_labels_``)
    each point sits in leaf ``leaf_of[i]`` of the full tree: DP is over that tree, and the record
    also gets ``leaf_purity`` of the leaves and ``n_leaves``.
    """
    from hiclust.metrics import dendrogram_purity, evaluate, leaf_purity

    if leaf_of is not None:
        leaf_of = np.asarray(leaf_of)
        m = evaluate(y, labels)
        out: dict[str, Any] = {"nmi": m["nmi"], "acc": m["acc"], "ari": m["ari"], "dp": None}
        if hierarchy is not None and hierarchy.n_leaves > 1:
            out["dp"] = dendrogram_purity(y, hierarchy.to_linkage(), leaf_of=leaf_of)
        out["leaf_purity"] = leaf_purity(y, leaf_of)
        out["n_leaves"] = int(hierarchy.n_leaves) if hierarchy is not None else int(np.unique(leaf_of).size)
        return out
    if hierarchy is not None and hierarchy.n_leaves > 1:
        m = evaluate(y, labels, hierarchy.to_linkage(), labels)
    else:
        m = evaluate(y, labels)
    return {"nmi": m["nmi"], "acc": m["acc"], "ari": m["ari"], "dp": m.get("dp")}


def _model_outputs(model: Any) -> tuple[np.ndarray, Any, np.ndarray | None]:
    """(flat labels, tree or None, leaf of each training point or None) of a fitted estimator:
    ``leaf_labels_`` where the estimator has it (DeepECT: a tree with more leaves than clusters)."""
    leaf_of = getattr(model, "leaf_labels_", None)
    return (np.asarray(model.labels_), getattr(model, "hierarchy_", None),
            None if leaf_of is None else np.asarray(leaf_of))


def _model_metrics(y: np.ndarray, model: Any) -> dict[str, Any]:
    """:func:`_metrics` of a fitted estimator (DP over the full tree with ``leaf_labels_``)."""
    return _metrics(y, *_model_outputs(model))


# DEC/IDEC parameters that define the pre-trained autoencoder: a preset that differs from the
# DEC preset in any of them pre-trains its own.
_PRETRAINING_PARAMS = (
    "backbone", "hidden_dims", "embedding_dim", "conv_channels", "pretrain_epochs", "pretrain_lr", "batch_size",
    "weight_decay", "corruption", "augmentation", "locality_weight", "n_neighbors", "self_augmentation_weight",
)


def _shared_autoencoder(data: Any, n_clusters: int, out: Path, cache: dict[str, Any], *, seed: int, device: str,
                        verbose: bool, overrides: dict[str, dict[str, Any]],
                        ae_filename: str = "autoencoder.pt") -> Any:
    """Pre-trains DEC's autoencoder once (DEC preset, ``epochs=0``) for DEC, IDEC and the AE
    baselines, as the DEC and IDEC papers do; saved as ``out/<ae_filename>``."""
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
        path = out / ae_filename
        model.save(path)
        cache["ae"] = (model, seconds, path, preset)
    return cache["ae"]


def _run_one(name: str, data: Any, n_clusters: int, *, seed: int, device: str, verbose: bool,
             overrides: dict[str, dict[str, Any]], out: Path, cache: dict[str, Any],
             share_autoencoder: bool = True, ae_filename: str = "autoencoder.pt",
             epochs: int | None = None) -> dict[str, Any]:
    from hiclust.baselines import BASELINES, FEATURE_BASELINES, agglomerative, run_baseline
    from hiclust.methods import METHODS

    name = canonical_method(name)
    record: dict[str, Any] = {"method": name, "name": DISPLAY_NAMES.get(name, name)}
    ae_kw = dict(seed=seed, device=device, verbose=verbose, overrides=overrides, ae_filename=ae_filename)
    leaf_of = None
    if name in AE_ROWS and (share_autoencoder or name == "ae_bisecting"):
        # ae_bisecting always uses this autoencoder (pre-trained once per seed with the DEC preset).
        ae, ae_seconds, _, preset = _shared_autoencoder(data, n_clusters, out, cache, **ae_kw)
        started = time.perf_counter()
        if name == "ae_kmeans":  # DEC's initialisation: k-means (n_init restarts) on z
            labels, hierarchy = np.asarray(ae.init_labels_), None
        elif name == "ae_bisecting":  # the split tree of bisecting k-means on z: leaves = the K clusters
            from hiclust.baselines import bisecting_kmeans

            result = bisecting_kmeans(ae.transform(data), n_clusters, random_state=seed)
            labels, hierarchy = result.labels, result.hierarchy
        else:
            result = agglomerative(ae.transform(data), n_clusters, linkage="ward")
            labels, hierarchy = result.labels, result.hierarchy
        record.update(seconds=time.perf_counter() - started + ae_seconds, pretrain_seconds=ae_seconds, preset=preset,
                      params={"n_clusters": n_clusters, "random_state": seed,
                              "autoencoder": {k: v for k, v in ae.get_params().items() if k != "verbose"}})
    elif name in METHODS or name in VARIANTS or name in POST_HOC:
        model, info = _train_estimator(name, data, n_clusters, seed=seed, device=device, verbose=verbose,
                                       overrides=overrides, out=out, cache=cache,
                                       share_autoencoder=share_autoencoder, ae_kw=ae_kw, epochs=epochs)
        record.update(info)
        started = time.perf_counter()
        if name == "idec_complete":
            # IDEC's K clusters merged by complete linkage in its embedding (exact, chunked distances).
            from hiclust.baselines import complete_linkage_cluster_tree

            result = complete_linkage_cluster_tree(model.transform(data), model.labels_,
                                                   device=getattr(model, "device_", None))
            labels, hierarchy = result.labels, result.hierarchy
        elif name == "cc_l2h":
            # L2H over CC's K clusters: CC's cluster head is a softmax, its log a valid logit vector.
            from hiclust.hierarchy import Hierarchy

            labels = np.asarray(model.labels_)
            logits = np.log(np.clip(model.predict_proba(data), 1e-12, None))
            hierarchy = Hierarchy.from_logits(logits).with_points(labels)
        else:
            labels, hierarchy, leaf_of = _model_outputs(model)
        if name in POST_HOC:
            record["posthoc_seconds"] = time.perf_counter() - started
            record["seconds"] += record["posthoc_seconds"]
    elif name in BASELINES or name in FEATURE_BASELINES:
        feature_params = None
        if name in FEATURE_BASELINES:
            feature_params, record["preset"] = _feature_params(name, data.name, device=device, verbose=verbose,
                                                               overrides=overrides, epochs=epochs)
        result = run_baseline(name, data, n_clusters, random_state=seed, feature_params=feature_params)
        labels, hierarchy = result.labels, result.hierarchy
        record["seconds"] = result.seconds
        # What reproduces the row: the baseline's seed, and the feature learner's parameters.
        record["params"] = {"n_clusters": n_clusters, "random_state": seed,
                            **({"features": feature_params} if feature_params is not None else {})}
        record.update({k: v for k, v in result.extra.items() if isinstance(v, (int, float))})
    else:
        raise ValueError(f"unknown method {name!r} for bench; choose from {', '.join(_known_methods())}")
    record.update(_metrics(data.labels.numpy(), labels, hierarchy, leaf_of))
    record["n_clusters_found"] = int(np.unique(labels).size)
    return record


def _feature_params(name: str, dataset: str, *, device: str, verbose: bool, overrides: dict[str, dict[str, Any]],
                    epochs: int | None = None) -> tuple[dict[str, Any], str | None]:
    """(parameters of the feature learner, preset name) of the feature baseline ``name``: the DEC
    preset's autoencoder or the SimCLR preset, ``epochs`` (:func:`with_epochs`), then ``--set``."""
    from hiclust.baselines import FEATURE_BASELINES

    learner = "dec" if FEATURE_BASELINES[name][0] == "autoencoder" else "simclr"
    params, preset = resolve_preset(learner, dataset)
    params = with_epochs(learner, params, epochs)
    feature_params = {**params, "device": device, "verbose": verbose, **overrides.get(learner, {})}
    feature_params.pop("n_clusters", None)
    return feature_params, preset


def with_epochs(estimator: str, params: dict[str, Any], epochs: int | None) -> dict[str, Any]:
    """``params`` of ``estimator`` trained for ``epochs`` epochs (``bench --epochs``; None: unchanged).

    CoHiClust's pre-training is part of its epochs: a preset's ``pretrain_epochs`` keeps its share
    of the preset's epochs, lowered where the tree's 2^depth − K prunings (one per epoch) would not
    fit after it, and a preset's ``prune_start`` is dropped (derived again). The other methods'
    pre-training (DEC's and IDEC's autoencoder, DeepECT's) is not counted in their epochs and stays
    as the preset sets it (``--set dec.pretrain_epochs=N`` changes it).

    >>> with_epochs("cohiclust", {"n_clusters": 10, "depth": 4, "epochs": 200, "pretrain_epochs": 50}, 20)
    {'n_clusters': 10, 'depth': 4, 'epochs': 20, 'pretrain_epochs': 5}
    >>> with_epochs("cohiclust", {"n_clusters": 10, "depth": 4, "epochs": 200, "pretrain_epochs": 150}, 8)
    {'n_clusters': 10, 'depth': 4, 'epochs': 8, 'pretrain_epochs': 1}
    >>> with_epochs("dec", {"pretrain_epochs": 100, "epochs": 50}, 5)
    {'pretrain_epochs': 100, 'epochs': 5}
    """
    if epochs is None:
        return dict(params)
    out = {**params, "epochs": int(epochs)}
    if estimator == "cohiclust":
        from hiclust.methods.base import default_depth

        k = int(out.get("n_clusters", 10))
        depth = out.get("depth") or default_depth(max(k, 2))
        n_prune = max(0, 2 ** int(depth) - k)
        old = params.get("epochs")
        if out.get("pretrain_epochs") is not None:
            share = int(out["pretrain_epochs"]) / old if old else 1 / 3
            out["pretrain_epochs"] = max(0, min(round(share * epochs), epochs - n_prune - 1))
        out.pop("prune_start", None)
    return out


def _estimator_params(name: str, dataset: str, n_clusters: int, *, seed: int, device: str, verbose: bool,
                      overrides: dict[str, dict[str, Any]],
                      epochs: int | None = None) -> tuple[str, dict[str, Any], str | None]:
    """(estimator, parameters, preset name) of bench row ``name`` on ``dataset``, as
    :func:`_train_estimator` fits it (before the shared autoencoder is attached)."""
    estimator, fixed = VARIANTS.get(name, (POST_HOC.get(name, name), {}))
    params, preset = resolve_preset(name, dataset, estimator=estimator) if name in VARIANTS else \
        resolve_preset(estimator, dataset)
    own = preset is not None and preset.startswith(f"{name}_")  # the row's own preset wins over its fixed params
    params = {"n_clusters": n_clusters, **({**fixed, **params} if own else {**params, **fixed}), "seed": seed,
              "device": device, "verbose": verbose}
    params = with_epochs(estimator, params, epochs)
    params.update(overrides.get(estimator, {}))
    if name in ABLATION_VARIANTS and not own:
        # The switched-off terms define an ablation row: --set cohiclust.nt_xent_weight=1 must not
        # turn "CoHiLoss alone" back into CoHiClust (--set cohiloss.X still can).
        params.update(fixed)
    if name != estimator:
        params.update(overrides.get(name, {}))
    return estimator, params, preset


def _row_params(name: str, dataset: str, n_clusters: int, *, seed: int, device: str, verbose: bool,
                overrides: dict[str, dict[str, Any]], epochs: int | None = None,
                share_autoencoder: bool = True) -> tuple[str, dict[str, Any], str | None]:
    """:func:`_estimator_params`, and for IDEC starting from the shared autoencoder the
    pre-training parameters set with ``--set dec.X`` (the help's "dec.X to the shared
    autoencoder"), unless ``--set idec.X`` sets them itself."""
    estimator, params, preset = _estimator_params(name, dataset, n_clusters, seed=seed, device=device,
                                                  verbose=verbose, overrides=overrides, epochs=epochs)
    if estimator == "idec" and share_autoencoder:
        own = {**overrides.get("idec", {}), **overrides.get(name, {})}
        params.update({k: v for k, v in overrides.get("dec", {}).items() if k in _PRETRAINING_PARAMS and k not in own})
    return estimator, params, preset


def _override_targets(name: str, share_autoencoder: bool) -> set[str]:
    """The ``--set`` prefixes bench row ``name`` reads (empty for a baseline without settings)."""
    from hiclust.baselines import FEATURE_BASELINES
    from hiclust.methods import METHODS

    if name in AE_ROWS and (share_autoencoder or name == "ae_bisecting"):
        return {"dec"}
    if name in FEATURE_BASELINES:
        return {"dec" if FEATURE_BASELINES[name][0] == "autoencoder" else "simclr"}
    if name in METHODS or name in VARIANTS or name in POST_HOC:
        estimator = VARIANTS[name][0] if name in VARIANTS else POST_HOC.get(name, name)
        shared = {"dec"} if estimator in ("dec", "idec") and share_autoencoder else set()
        return {estimator, name} | shared
    return set()


def _check_overrides(overrides: dict[str, dict[str, Any]], methods: list[str], share_autoencoder: bool) -> None:
    """Refuses ``--set`` keys that no row of this bench reads (a typo, a method not run, or a
    baseline without settings), naming what would read them."""
    targets: set[str] = set()
    for name in methods:
        targets |= _override_targets(name, share_autoencoder)
    for key, params in overrides.items():
        if key in targets:
            continue
        items = ", ".join(f"{key}.{p}={v}" for p, v in params.items())
        if key in _known_methods() and not _override_targets(key, share_autoencoder):
            why = f"{key} is a baseline without settable parameters"
        elif key in _known_methods() or key in ("simclr", "dec"):
            why = f"no row of this bench uses {key} (--methods {','.join(methods)})"
        else:
            why = f"there is no method {key!r}"
        raise ValueError(f"--set {items}: {why}; --set applies here to: {', '.join(sorted(targets)) or 'nothing'}")


def _preflight(methods: list[str], data: Any, n_clusters: int, *, seed: int, device: str,
               overrides: dict[str, dict[str, Any]], epochs: int | None, share_autoencoder: bool,
               table: str) -> None:
    """Checks every row's parameters against the data before anything is written or trained:
    a bad ``--set`` value or an ``--epochs`` too small for a row fails here, in one message
    naming the row, not after an hour of other rows."""
    from hiclust.baselines import FEATURE_BASELINES
    from hiclust.methods import METHODS, make_estimator

    _check_overrides(overrides, methods, share_autoencoder)
    hint = "(bench: --epochs N sets the training epochs, --set {est}.PARAM=VALUE any other parameter)"

    def check(row: str, estimator: str, params: dict[str, Any]) -> None:
        try:
            make_estimator(estimator, params).check_params(data)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{row}: {str(e).splitlines()[0]} {hint.format(est=estimator)}") from None

    needs_ae = any(m in AE_ROWS or (share_autoencoder and m in ("dec", "idec", "idec_complete")) for m in methods)
    if needs_ae:
        dec_params, _ = resolve_preset("dec", data.name)
        dec_params = {"n_clusters": n_clusters, **dec_params, **overrides.get("dec", {}), "seed": seed,
                      "device": device, "verbose": False, "epochs": 0}
        dec_params.pop("pretrained", None)
        check("the shared autoencoder", "dec", dec_params)
    for name in methods:
        if name in METHODS or name in VARIANTS or name in POST_HOC:
            estimator, params, _ = _row_params(name, data.name, n_clusters, seed=seed, device=device, verbose=False,
                                               overrides=overrides, epochs=epochs, share_autoencoder=share_autoencoder)
            check(name, estimator, params)
        elif name in FEATURE_BASELINES and not (name in AE_ROWS and share_autoencoder):
            params, _ = _feature_params(name, data.name, device=device, verbose=False, overrides=overrides,
                                        epochs=epochs)
            learner = "dec" if FEATURE_BASELINES[name][0] == "autoencoder" else "simclr"
            check(name, learner, {"n_clusters": n_clusters, **params, "seed": seed})
    if table == "ablation":
        full = _estimator_params("cohiclust", data.name, n_clusters, seed=seed, device=device, verbose=False,
                                 overrides=overrides, epochs=epochs)[1]
        if not full.get("pretrain_epochs"):
            from hiclust.methods.base import default_depth

            depth = full.get("depth") or default_depth(n_clusters)
            n_prune = 2 ** int(depth) - n_clusters
            raise ValueError(
                f"--epochs {full.get('epochs')} leaves the full CoHiClust row no pre-training (its {n_prune} prunings, "
                "one per epoch, need the epochs after it), so it would be the row 'w/o pre-training' again; "
                f"use --epochs {n_prune + 2} or more")


def ablation_params(dataset: str, n_clusters: int, *, seed: int = 0, device: str = "cpu",
                    epochs: int | None = None,
                    overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """What each row of ``--table ablation`` trains with, without training: row → parameters of
    its CoHiClust estimator, or (``simclr_agglomerative``) of its SimCLR feature learner."""
    overrides = {canonical_method(k): v for k, v in (overrides or {}).items()}
    out: dict[str, dict[str, Any]] = {}
    for name in ABLATION_METHODS:
        if name == "simclr_agglomerative":
            out[name] = _feature_params(name, dataset, device=device, verbose=False, overrides=overrides,
                                        epochs=epochs)[0]
        else:
            out[name] = _estimator_params(name, dataset, n_clusters, seed=seed, device=device, verbose=False,
                                          overrides=overrides, epochs=epochs)[1]
    return out


def _train_estimator(name: str, data: Any, n_clusters: int, *, seed: int, device: str, verbose: bool,
                     overrides: dict[str, dict[str, Any]], out: Path, cache: dict[str, Any],
                     share_autoencoder: bool, ae_kw: dict[str, Any],
                     epochs: int | None = None) -> tuple[Any, dict[str, Any]]:
    """Fits the estimator behind bench row ``name`` (itself, a variant's or a post-hoc row's).

    Parameters: n_clusters, the preset, the variant's fixed parameters, seed/device/verbose,
    ``epochs`` (``bench --epochs``, see :func:`with_epochs`), then ``--set`` overrides of the
    estimator and of the row (``--set idec_complete.epochs=5`` wins over ``--set idec.epochs=3``).
    DEC and IDEC start from the shared autoencoder when their pre-training parameters match the
    DEC preset's. An IDEC or CC model is kept in
    ``cache`` for this seed, so ``idec`` and ``idec_complete`` (or ``cc`` and ``cc_l2h``) with
    the same parameters train once; each row's time still includes the training.
    Returns (fitted model, record fields: seconds, pretrain_seconds, preset, params).
    """
    from hiclust.methods import make_estimator

    estimator, params, preset = _row_params(name, data.name, n_clusters, seed=seed, device=device, verbose=verbose,
                                            overrides=overrides, epochs=epochs, share_autoencoder=share_autoencoder)
    pretrain_seconds = 0.0
    own_autoencoder: list[str] = []
    if estimator in ("dec", "idec") and share_autoencoder and params.get("pretrained") is None:
        ae, ae_seconds, ae_path, _ = _shared_autoencoder(data, n_clusters, out, cache, **ae_kw)
        mine, theirs = make_estimator(estimator, params)._config(), ae._config()
        own_autoencoder = [f"{k} {mine[k]!r} (shared: {theirs[k]!r})" for k in _PRETRAINING_PARAMS
                           if mine[k] != theirs[k]]
        if not own_autoencoder:
            params["pretrained"] = str(ae_path)
            pretrain_seconds = ae_seconds
        else:  # said, not silent: the table then compares autoencoders trained differently
            print(f"note: {name} pre-trains its own autoencoder, its settings differ from the shared one's in "
                  f"{', '.join(own_autoencoder)}; --set {estimator}.PARAM=VALUE to match them", flush=True)
    key = "model:" + json.dumps([estimator, params], sort_keys=True, default=str)
    if key in cache:
        model, seconds = cache[key]
        reused = True
    else:
        model = make_estimator(estimator, params)
        model.check_params(data)
        started = time.perf_counter()
        model.fit(data)
        seconds = time.perf_counter() - started
        reused = False
        if estimator in POST_HOC.values():
            cache[key] = (model, seconds)
    info: dict[str, Any] = {"seconds": seconds + pretrain_seconds}
    if pretrain_seconds:
        info["pretrain_seconds"] = pretrain_seconds
    if reused:
        info["reused_model"] = True
    if own_autoencoder:
        info["own_autoencoder"] = own_autoencoder
    info["preset"] = preset
    info["params"] = {k: v for k, v in params.items() if k not in ("verbose",)}
    return model, info


def _md_name(name: str) -> str:
    return name.replace("*", "\\*")  # "complete*" marks a post-hoc tree, not emphasis


def format_markdown(rows: list[dict[str, Any]], title: str = "") -> str:
    """The table in the papers' layout: Method | NMI | ACC | ARI | DP | Time (s)."""
    out = io.StringIO()
    if title:
        out.write(f"{title}\n\n")
    out.write("| Method | NMI | ACC | ARI | DP | Time (s) |\n| --- | --- | --- | --- | --- | --- |\n")
    for r in rows:
        cells = [_md_name(r.get("name", r["method"]))]
        for key in ("nmi", "acc", "ari", "dp"):
            v = r.get(key)
            cells.append("–" if v is None else f"{v:.3f}")
        cells.append("–" if r.get("seconds") is None else f"{r['seconds']:.1f}")
        out.write("| " + " | ".join(cells) + " |\n")
    return out.getvalue()


_SUMMARY_KEYS = ("dp", "nmi", "acc", "ari", "leaf_purity", "seconds")


def summarize_seeds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per method (in order of first appearance) over its records (one per seed).

    Each summary: method, name, dataset, seeds (sorted), n_seeds, and for each of dp, nmi, acc,
    ari, leaf_purity, seconds: ``<key>_mean`` and ``<key>_std`` (sample standard deviation,
    ddof = 1; None for one value) over the records where the key is not None (both None if none),
    and ``<key>_n``, the number of those records.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["method"], []).append(r)
    out = []
    for method, recs in groups.items():
        seeds = sorted({r["seed"] for r in recs if r.get("seed") is not None})
        summary: dict[str, Any] = {"method": method, "name": recs[0].get("name", DISPLAY_NAMES.get(method, method)),
                                   "dataset": recs[0].get("dataset"), "seeds": seeds, "n_seeds": len(recs)}
        for key in _SUMMARY_KEYS:
            values = np.array([r[key] for r in recs if r.get(key) is not None], dtype=np.float64)
            summary[f"{key}_mean"] = float(values.mean()) if values.size else None
            summary[f"{key}_std"] = float(values.std(ddof=1)) if values.size > 1 else None
            summary[f"{key}_n"] = int(values.size)  # seeds with a value (a collapsed run may have no DP)
        out.append(summary)
    return out


def _mean_std(mean: float | None, std: float | None, digits: int, n: int | None = None,
              of: int | None = None) -> str:
    """"mean ± std" ("mean" for one value, "–" for none), with "(n of m seeds)" when only ``n``
    of the ``of`` seeds have a value: a mean that leaves a seed out says so."""
    if mean is None:
        return "–"
    text = f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"
    return text if n is None or of is None or n >= of else f"{text} ({n} of {of} seeds)"


def _cell(m: dict[str, Any], key: str, digits: int = 3) -> str:
    """The summary cell of ``key`` for method summary ``m`` (:func:`summarize_seeds`)."""
    return _mean_std(m[f"{key}_mean"], m[f"{key}_std"], digits, m.get(f"{key}_n"), m["n_seeds"])


def _summary_cells(m: dict[str, Any], worst: dict[str, dict[str, Any]]) -> list[str]:
    """The cells NMI | ACC | ARI | DP | Time (s) | Worst seed (NMI / ACC / ARI) of summary ``m``."""
    cells = [_cell(m, k) for k in ("nmi", "acc", "ari", "dp")] + [_cell(m, "seconds", 1)]
    w = worst.get(m["method"])
    cells.append("–" if w is None else f"seed {w['seed']}: " + " / ".join(
        "–" if w.get(k) is None else f"{w[k]:.3f}" for k in ("nmi", "acc", "ari")))
    return cells


_SEED_CSV_KEYS = ("nmi", "acc", "ari", "dp", "seconds")


def _summary_csv(rows: list[dict[str, Any]], dataset: str, name_of: Callable[[dict[str, Any]], str],
                 extra_header: list[str], extra_of: Callable[[dict[str, Any]], list[Any]]) -> str:
    """One CSV line per method of ``rows``: ``<key>_mean``, ``<key>_std`` (empty for one seed)
    and ``<key>_n`` (seeds with a value) of NMI, ACC, ARI, DP and seconds, the worst seed and its
    NMI / ACC / ARI, then ``extra_header`` columns filled by ``extra_of(summary)``."""
    worst = _worst_seeds(rows)
    buf = io.StringIO()
    writer = csv.writer(buf)
    header = ["dataset", "method", "name", "n_seeds", "seeds"]
    for k in _SEED_CSV_KEYS:
        header += [f"{k}_mean", f"{k}_std", f"{k}_n"]
    writer.writerow(header + ["worst_seed", "worst_nmi", "worst_acc", "worst_ari"] + extra_header)
    for m in summarize_seeds(rows):
        line = [m["dataset"] if m["dataset"] is not None else dataset, m["method"], name_of(m), m["n_seeds"],
                " ".join(str(x) for x in m["seeds"])]
        for k in _SEED_CSV_KEYS:
            line += ["" if m[f"{k}_{x}"] is None else f"{m[f'{k}_{x}']:.6g}" for x in ("mean", "std")] + [m[f"{k}_n"]]
        w = worst.get(m["method"])
        line += [""] * 4 if w is None else [w["seed"]] + [
            "" if w.get(k) is None else f"{w[k]:.6g}" for k in ("nmi", "acc", "ari")]
        writer.writerow(line + extra_of(m))
    return buf.getvalue()


def format_seeds_markdown(rows: list[dict[str, Any]], title: str = "") -> str:
    """The flat table over several seeds: one row per method,

    Method | NMI | ACC | ARI | DP | Time (s) | Worst seed (NMI / ACC / ARI)

    cells "mean ± std" over its seeds (:func:`summarize_seeds`), the worst seed the one with the
    lowest ACC; then every run, one row per method and seed."""
    worst = _worst_seeds(rows)
    out = io.StringIO()
    if title:
        out.write(f"{title}\n\n")
    out.write("| Method | NMI | ACC | ARI | DP | Time (s) | Worst seed (NMI / ACC / ARI) |\n"
              "| --- | --- | --- | --- | --- | --- | --- |\n")
    for m in summarize_seeds(rows):
        out.write("| " + " | ".join([_md_name(m["name"])] + _summary_cells(m, worst)) + " |\n")
    out.write("\nmean ± sample standard deviation (ddof = 1) over the seeds; worst seed = the seed with the lowest "
              "ACC; DP only for methods with a tree.\n\nEvery run:\n\n")
    out.write(format_markdown([{**r, "name": f"{r['name']} (seed {r['seed']})"} for r in rows]))
    return out.getvalue()


def format_seeds_csv(rows: list[dict[str, Any]]) -> str:
    """CSV of :func:`format_seeds_markdown`'s summary (:func:`_summary_csv`; every run is in
    results.jsonl)."""
    return _summary_csv(rows, "", lambda m: m["name"], [], lambda m: [])


def format_hierarchical_markdown(rows: list[dict[str, Any]], dataset: str, title: str = "") -> str:
    """The layout of the CoHiClust paper's hierarchical table, over seeds:

    Method | DP | NMI | ACC | Time (s) | DP, NMI, ACC (paper)

    Our cells are "mean ± std" over the records of each method (one per seed; the value alone
    for one seed), see :func:`summarize_seeds`. The paper columns are the published numbers for
    ``dataset`` (``PUBLISHED_HIERARCHICAL``), "–" where there are none.
    """
    published = published_hierarchical(dataset)
    summaries = summarize_seeds(rows)
    out = io.StringIO()
    if title:
        out.write(f"{title}\n\n")
    out.write("| Method | DP | NMI | ACC | Time (s) | DP (paper) | NMI (paper) | ACC (paper) |\n"
              "| --- | --- | --- | --- | --- | --- | --- | --- |\n")
    for m in summaries:
        cells = [_md_name(m["name"])]
        cells += [_cell(m, k) for k in ("dp", "nmi", "acc")]
        cells.append(_cell(m, "seconds", 1))
        paper = published.get(m["method"])
        cells += ["–"] * 3 if paper is None else [f"{v:.2f}" for v in paper]
        out.write("| " + " | ".join(cells) + " |\n")
    n_seeds = max((m["n_seeds"] for m in summaries), default=0)
    notes = ["mean ± sample standard deviation (ddof = 1) over the seeds" if n_seeds > 1 else "one seed",
             "DP of DeepECT over its full tree (leaf_labels_), NMI/ACC of its K-cluster partition",
             "DP of the other rows over a tree whose leaves are the K clusters",
             "\\* = tree built post hoc over a flat model's clusters",
             "time = wall time of fitting, shared autoencoder pre-training included",
             "paper = CoHiClust paper, quoted (docs/methods.md, \"Reference results\"); – = not published"
             + ("" if published else f" (none for {dataset})")]
    out.write("\n" + "; ".join(notes) + ".\n")
    return out.getvalue()


_CSV_SUMMARY = ("dp", "nmi", "acc", "ari", "leaf_purity", "seconds")


def format_hierarchical_csv(rows: list[dict[str, Any]], dataset: str) -> str:
    """CSV of :func:`format_hierarchical_markdown`: one line per method with ``<key>_mean`` and
    ``<key>_std`` columns (std empty for one seed) and ``paper_dp``, ``paper_nmi``, ``paper_acc``
    (empty where not published)."""
    published = published_hierarchical(dataset)
    buf = io.StringIO()
    writer = csv.writer(buf)
    header = ["dataset", "method", "name", "n_seeds", "seeds"]
    for k in _CSV_SUMMARY:
        header += [f"{k}_mean", f"{k}_std"]
    writer.writerow(header + ["paper_dp", "paper_nmi", "paper_acc"])
    for m in summarize_seeds(rows):
        line = [m["dataset"] if m["dataset"] is not None else dataset, m["method"], m["name"], m["n_seeds"],
                " ".join(str(x) for x in m["seeds"])]
        for k in _CSV_SUMMARY:
            line += ["" if m[f"{k}_{s}"] is None else f"{m[f'{k}_{s}']:.6g}" for s in ("mean", "std")]
        paper = published.get(m["method"])
        line += [""] * 3 if paper is None else [f"{v:g}" for v in paper]
        writer.writerow(line)
    return buf.getvalue()


def _worst_seeds(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The worst record of each method: lowest ACC (then lowest NMI), over its seeds."""
    worst: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.get("acc") is None:
            continue
        w = worst.get(r["method"])
        if w is None or (r["acc"], r.get("nmi") or 0.0) < (w["acc"], w.get("nmi") or 0.0):
            worst[r["method"]] = r
    return worst


def _ablation_schedule(rows: list[dict[str, Any]]) -> str:
    """A note of the CoHiClust schedule the rows trained with (from the full row's params)."""
    full = next((r.get("params") for r in rows if r["method"] == "cohiclust" and r.get("params")), None)
    if not full or full.get("epochs") is None:
        return ""
    pre = full.get("pretrain_epochs")
    pre_text = f"the first {pre} of NT-Xent alone in the full row" if pre is not None else "pre-training as by default"
    return (f"CoHiClust rows: {full['epochs']} epochs each ({pre_text}; the other rows train the tree from "
            "epoch 0)")


def format_ablation_markdown(rows: list[dict[str, Any]], dataset: str, title: str = "") -> str:
    """The CoHiClust paper's ablation over seeds:

    Variant | NMI | ACC | ARI | DP | Time (s) | Worst seed (NMI / ACC / ARI) | NMI, ACC, ARI (paper)

    Our cells are "mean ± std" over the records of each row (one per seed; the value alone for one
    seed, :func:`summarize_seeds`); the worst seed is the one with the lowest ACC. DP is "–" for a
    row without a tree. The paper columns quote :data:`PUBLISHED_ABLATION` for ``dataset``
    (CIFAR-10 only), "–" elsewhere.
    """
    published = published_ablation(dataset)
    worst = _worst_seeds(rows)
    out = io.StringIO()
    if title:
        out.write(f"{title}\n\n")
    out.write("| Variant | NMI | ACC | ARI | DP | Time (s) | Worst seed (NMI / ACC / ARI) | NMI (paper) | ACC (paper) "
              "| ARI (paper) |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
    for m in summarize_seeds(rows):
        cells = [_md_name(ABLATION_NAMES.get(m["method"], m["name"]))] + _summary_cells(m, worst)
        paper = published.get(m["method"])
        cells += ["–"] * 3 if paper is None else list(paper)
        out.write("| " + " | ".join(cells) + " |\n")
    n_seeds = max((m["n_seeds"] for m in summarize_seeds(rows)), default=0)
    notes = ["mean ± sample standard deviation (ddof = 1) over the seeds" if n_seeds > 1 else "one seed",
             "worst seed = the seed with the lowest ACC",
             "DP over the tree whose leaves are the K clusters",
             "R1 = tree balance term, R2 = NT-Xent; pre-training = NT-Xent alone, so the rows without R2 have none",
             _ablation_schedule(rows),
             "time = wall time of fitting (SimCLR training included)",
             "paper = CoHiClust paper, Tables 3 and 5 (CIFAR-10, ResNet-50, train + test), quoted; – = not "
             "published" + ("" if published else f" (none for {dataset})")]
    out.write("\n" + "; ".join(n for n in notes if n) + ".\n")
    return out.getvalue()


def format_ablation_csv(rows: list[dict[str, Any]], dataset: str) -> str:
    """CSV of :func:`format_ablation_markdown`: one line per row with ``<key>_mean``,
    ``<key>_std`` (std empty for one seed) and ``<key>_n``, the worst seed and its ``worst_nmi``,
    ``worst_acc``, ``worst_ari``, and ``paper_nmi``, ``paper_acc``, ``paper_ari`` (empty where not
    published)."""
    published = published_ablation(dataset)
    return _summary_csv(rows, dataset, lambda m: ABLATION_NAMES.get(m["method"], m["name"]),
                        ["paper_nmi", "paper_acc", "paper_ari"],
                        lambda m: [""] * 3 if published.get(m["method"]) is None else list(published[m["method"]]))


def _write_tables(out: Path, rows: list[dict[str, Any]], title: str, *, table: str = "flat",
                  dataset: str = "", several_seeds: bool = False) -> None:
    from hiclust.checkpoint import atomic_write_text

    if table == "hierarchical":
        atomic_write_text(out / "table.md", format_hierarchical_markdown(rows, dataset, title))
        atomic_write_text(out / "table.csv", format_hierarchical_csv(rows, dataset))
        return
    if table == "ablation":
        atomic_write_text(out / "table.md", format_ablation_markdown(rows, dataset, title))
        atomic_write_text(out / "table.csv", format_ablation_csv(rows, dataset))
        return
    if several_seeds:
        atomic_write_text(out / "table.md", format_seeds_markdown(rows, title))
        atomic_write_text(out / "table.csv", format_seeds_csv(rows))
        return
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
        out.setdefault(canonical_method(method), {})[param] = yaml.safe_load(value)
    return out


def _parse_seeds(text: str | None, seed: int) -> list[int]:
    if text is None or not text.strip():
        return [int(seed)]
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--seeds expects a comma-separated list of integers, e.g. 0,1,2; got {text!r}") from None
    if not seeds:
        raise ValueError(f"--seeds expects at least one integer, got {text!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds lists a seed twice: {text!r}")
    return seeds


def _device_description(device: str) -> str:
    import torch

    resolved = device
    if device == "auto":
        resolved = "cuda" if torch.cuda.is_available() else "cpu"
    if resolved.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(resolved).index or 0
        return f"{resolved} ({torch.cuda.get_device_name(index)})" + (" [auto]" if device == "auto" else "")
    return resolved + (" [auto]" if device == "auto" else "")


# What a bench writes into --out (autoencoder*.pt: the shared autoencoder of each seed).
BENCH_FILES = ("results.jsonl", "table.md", "table.csv")


def check_bench_out(out: str | Path) -> None:
    """Raises ValueError unless ``out`` can take a new bench: absent, or a directory without
    the files a bench writes (:data:`BENCH_FILES`, ``autoencoder*.pt``)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a directory for results.jsonl, table.md and table.csv")
    if not out.is_dir():
        return
    taken = sorted(p.name for p in out.iterdir()
                   if p.name in BENCH_FILES or (p.name.startswith("autoencoder") and p.suffix == ".pt"))
    if taken:
        raise ValueError(f"--out {out} already holds bench results ({', '.join(taken)}); choose a new --out "
                         "(a bench never appends to or replaces earlier results)")


def run_bench(
    dataset: str,
    methods: list[str] | None,
    out: str | Path,
    *,
    root: str | None = None,
    split: str = "all",
    seed: int = 0,
    seeds: list[int] | None = None,
    table: str = "flat",
    device: str = "auto",
    verbose: bool = False,
    overrides: dict[str, dict[str, Any]] | None = None,
    threads: int | None = None,
    share_autoencoder: bool = True,
    epochs: int | None = None,
) -> list[dict[str, Any]]:
    """Runs ``methods`` on ``dataset`` for each of ``seeds``; writes results.jsonl, table.md,
    table.csv to ``out``.

    ``methods``: bench names (``_known_methods``; ``cc+l2h`` is accepted for ``cc_l2h``). None:
    ``DEFAULT_METHODS`` for ``table="flat"``, ``HIERARCHICAL_METHODS`` for ``"hierarchical"``;
    ``"ablation"`` always runs ``ABLATION_METHODS`` and refuses any ``methods`` list (ValueError).
    ``seeds``: every method runs once per seed (seed-major order); default ``[seed]``.
    ``table``: "flat" (Method | NMI | ACC | ARI | DP | Time (s), one row per method; with several
    seeds "mean ± std" and the worst seed, then every run, see :func:`format_seeds_markdown`) or
    "hierarchical" (one row per method, mean ± std over the seeds beside the published numbers,
    see :func:`format_hierarchical_markdown`) or "ablation" (the CoHiClust paper's loss and
    pre-training ablation, see :data:`ABLATION_METHODS` and :func:`format_ablation_markdown`).

    With ``share_autoencoder``, DEC, IDEC, "AE + k-means" and "AE + agglomerative" start from one
    autoencoder pre-trained with the DEC preset (as in the DEC/IDEC papers), once per seed;
    "AE + k-means (bisecting*)" always uses it. Each of their ``seconds`` includes that
    pre-training time (``pretrain_seconds``).

    ``epochs``: the training epochs of every deep method (``bench --epochs``; see
    :func:`with_epochs`), before the ``overrides``.

    Every row's parameters are checked against the data first (:func:`_preflight`): a bad
    ``--set`` (unknown method, a method not run, an invalid value) or an ``epochs`` too small for a
    row is refused before ``out`` is created. Each record is appended to results.jsonl and the
    tables are rewritten as soon as it is finished, so a killed run keeps its finished rows (the
    table's title says it is incomplete until the last run). An ``out`` that already holds results of an
    earlier bench (results.jsonl, table.md, table.csv, autoencoder*.pt) is refused before anything
    is written: a bench never appends to or replaces earlier results.

    Returns one record per method and seed: method, name, nmi, acc, ari, dp (None if flat),
    seconds, preset, dataset, n_samples, split, seed (DeepECT also leaf_purity, n_leaves).
    """
    import torch

    from hiclust.data import load_dataset

    if table not in TABLES:
        raise ValueError(f"--table must be one of {', '.join(TABLES)}, got {table!r}")
    if table == "ablation":
        if methods is not None:
            raise ValueError(f"--methods does not apply to --table ablation: its rows are fixed "
                             f"({','.join(ABLATION_METHODS)}); leave --methods out")
        methods = list(ABLATION_METHODS)
    if methods is None:
        methods = list(HIERARCHICAL_METHODS if table == "hierarchical" else DEFAULT_METHODS.split(","))
    methods = [canonical_method(m) for m in methods if m.strip()]
    if not methods:
        raise ValueError("give at least one method, e.g. --methods kmeans,cc")
    known = _known_methods()
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)} for bench; choose from {', '.join(known)}")
    seeds = [int(seed)] if not seeds else [int(s) for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"--epochs must be a positive number of epochs, got {epochs!r}")
    check_bench_out(out)
    if threads is not None:
        torch.set_num_threads(int(threads))
    data = load_dataset(dataset, root=root, split=split)
    if data.labels is None:
        raise ValueError(f"dataset {dataset!r} has no labels; the benchmark needs ground-truth classes")
    n_clusters = int(np.unique(data.labels.numpy()).size)
    overrides = {canonical_method(k): v for k, v in (overrides or {}).items()}
    _preflight(methods, data, n_clusters, seed=seeds[0], device=device, overrides=overrides, epochs=epochs,
               share_autoencoder=share_autoencoder, table=table)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}"
    several = len(seeds) > 1
    seed_text = f"seeds {', '.join(map(str, seeds))}" if several else f"seed {seeds[0]}"
    if table in ("hierarchical", "ablation"):
        images = "train+test" if split == "all" else f"split {split}"
        title = (f"**{dataset}**, N = {len(data)} images ({n_clusters} classes), {seed_text}, device "
                 f"{_device_description(device)}, machine {machine}, {os.cpu_count()} CPUs. All methods train "
                 f"and are evaluated on the same images ({images}, split={split}).")
    else:
        title = (f"**{dataset}** ({len(data)} images, {n_clusters} classes, split={split}: trained and evaluated on "
                 f"the same images), {seed_text}, device {_device_description(device)} ({machine})")
    rows: list[dict[str, Any]] = []
    total = len(seeds) * len(methods)
    for s in seeds:
        cache: dict[str, Any] = {}  # the shared autoencoder and reusable models of this seed
        ae_filename = f"autoencoder_seed{s}.pt" if several else "autoencoder.pt"
        for name in methods:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                record = _run_one(name, data, n_clusters, seed=s, device=device, verbose=verbose,
                                  overrides=overrides, out=out, cache=cache, share_autoencoder=share_autoencoder,
                                  ae_filename=ae_filename, epochs=epochs)
            for w in caught:  # said again with the row and seed they belong to
                warnings.warn(f"{name}{f' (seed {s})' if several else ''}: {w.message}", w.category, stacklevel=2)
            record.update(dataset=dataset, n_samples=len(data), split=split, seed=s)
            if table == "ablation":
                record["name"] = ABLATION_NAMES[name]
            rows.append(record)
            with open(out / "results.jsonl", "a") as f:
                f.write(json.dumps(record, default=str) + "\n")
            # Until the last row, the title says the table is incomplete: a killed bench leaves
            # a table that cannot pass for a finished one.
            pending = total - len(rows)
            shown_title = title if not pending else (
                f"{title}\n\n**Incomplete: {len(rows)} of {total} runs finished** (the bench was still running or "
                "was stopped; results.jsonl has every finished run)")
            _write_tables(out, rows, shown_title, table=table, dataset=dataset, several_seeds=several)
            shown = "  ".join(f"{k.upper()}={record[k]:.3f}" for k in ("nmi", "acc", "ari", "dp")
                              if record.get(k) is not None)
            tag = f" [seed {s}]" if several else ""
            print(f"{record['name'] + tag:<34} {shown}  ({record['seconds']:.1f} s)", flush=True)
        cache.clear()
    return rows


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.seed is not None and args.seeds is not None:
        raise ValueError(f"give --seed or --seeds, not both (--seed {args.seed} --seeds {args.seeds}); "
                         f"--seeds {args.seeds},{args.seed} runs them all")
    seed = 0 if args.seed is None else args.seed
    run_bench(
        args.dataset, None if args.methods is None else args.methods.split(","), args.out, root=args.root,
        split=args.split, seed=seed, seeds=_parse_seeds(args.seeds, seed), table=args.table,
        device=args.device, verbose=args.verbose, overrides=_parse_overrides(args.set or []), threads=args.threads,
        share_autoencoder=not args.separate_autoencoders, epochs=args.epochs,
    )
    print(f"wrote {Path(args.out) / 'table.md'} and {Path(args.out) / 'table.csv'}")
    return 0


def register(subparsers: Any) -> None:
    """Adds ``hiclust bench`` to the CLI."""
    p = subparsers.add_parser("bench", help="train several methods on one dataset; write a Markdown/CSV comparison table")
    p.add_argument("--dataset", required=True, help="digits, mnist5k, mnist, fashion_mnist, cifar10, ...")
    p.add_argument("--methods", default=None,
                   help=f"comma-separated methods and baselines (default for --table flat: {DEFAULT_METHODS}; "
                        f"for --table hierarchical: {','.join(HIERARCHICAL_METHODS)}). Also: deepect_aug, "
                        "idec_complete, ae_bisecting, cc_l2h (or cc+l2h), cohiloss, cohiloss_r1, "
                        "cohiclust_no_pretrain. Refused with --table ablation, whose rows are fixed")
    p.add_argument("--table", choices=TABLES, default="flat",
                   help="flat: one row per method (NMI, ACC, ARI, DP, time; with --seeds mean ± std, the worst seed, "
                        "then every run); hierarchical: the CoHiClust "
                        "paper's hierarchical table (DP, NMI, ACC, time as mean ± std over --seeds, beside the "
                        "published numbers); ablation: the CoHiClust paper's ablation (CoHiLoss alone, + R1, "
                        "+ R1 + R2 = CoHiClust, CoHiClust w/o pre-training, SimCLR features + agglomerative; NMI, "
                        "ACC, ARI, DP, time as mean ± std over --seeds with the worst seed, beside the published "
                        "CIFAR-10 numbers; --set cohiclust.X applies to every CoHiClust row except the terms a row "
                        "switches off, --set cohiloss.X / cohiloss_r1.X / cohiclust_no_pretrain.X to one row, "
                        "--set simclr.X to the SimCLR row)")
    p.add_argument("--out", required=True, help="a new directory for results.jsonl, table.md, table.csv (one that "
                   "already holds bench results is refused: nothing is appended or replaced)")
    p.add_argument("--root", default=None, help="dataset directory")
    p.add_argument("--split", default="all", help="train, test or all (default all)")
    from hiclust.cli import add_streaming_flags

    add_streaming_flags(p)
    p.add_argument("--seed", type=int, default=None, help="the one seed of every method (default 0)")
    p.add_argument("--seeds", default=None, metavar="S1,S2,...",
                   help="run every method once per seed, e.g. 0,1,2 (instead of --seed); the tables give mean ± std "
                        "and the worst seed of each method")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="training epochs of every deep method, instead of each preset's (CoHiClust's pre-training "
                        "keeps its share, lowered where its prunings, one per epoch, need the epochs after it; "
                        "autoencoder pre-training is unchanged; --set METHOD.epochs=N wins)")
    p.add_argument("--set", action="append", metavar="METHOD.PARAM=VALUE",
                   help="override a preset parameter, e.g. --set cc.epochs=20 (repeatable; --set idec.X also "
                        "applies to idec_complete, cc.X to cc_l2h, dec.X to the shared autoencoder)")
    p.add_argument("--separate-autoencoders", action="store_true",
                   help="pre-train DEC's and IDEC's autoencoders separately instead of sharing one (default: shared)")
    p.add_argument("--verbose", action="store_true", help="per-epoch logs of the deep methods")
    p.set_defaults(func=_cmd_bench)
