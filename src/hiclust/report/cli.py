"""Subcommands ``hiclust tree``, ``hiclust report`` and ``hiclust predict`` (registered through
``hiclust.cli.EXTENSIONS``), and :func:`predict_table`, the per-image tree paths behind
``predict``."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["register", "predict_table", "write_predictions"]


# --------------------------------------------------------------------------------------
# predictions with their tree paths
# --------------------------------------------------------------------------------------
def predict_table(model: Any, data: Any) -> dict[str, Any]:
    """Cluster, root-to-leaf path and probabilities of every image, from ONE forward pass.

    For a model with ``decision_path`` (CoHiClust; see ``hiclust.methods.cohiclust.DecisionPath``):
    the decisions d (N, 2^T−1) give the masked leaf probabilities P_T; the cluster is the argmax over the kept leaves (= ``model.predict``), ``leaf_probability``
    is that leaf's probability renormalized over the kept leaves (= ``model.predict_proba``),
    ``step_probabilities[:, s]`` is the probability of the branch taken at step s (d_u going
    left, 1 − d_u going right, u the heap node at level s), and ``path_probability`` is their
    product: the unnormalized P_T of the leaf. Without pruning, the kept leaves' P_T sum to 1 and
    ``leaf_probability == path_probability`` (to float precision); with pruning,
    ``leaf_probability = path_probability / Σ_kept P_T ≥ path_probability``.

    Other models with ``hierarchy_`` get cluster and path only (probabilities None; the leaf
    probability from ``predict_proba`` when available).

    Returns:
        dict with "cluster" (N,) int64, "path" (N,) str ("L R R L"), "leaf_probability" (N,)
        or None, "path_probability" (N,) or None, "step_probabilities" (N, T) or None, and
        "leaf_paths" (K,) the path of every leaf.
    """
    from hiclust.report.tree_plot import node_names, node_path

    h = getattr(model, "hierarchy_", None)
    if h is None:
        raise TypeError(f"{type(model).__name__} has no hierarchy_; predict paths need a fitted hierarchical model")
    names = node_names(h)
    leaf_paths = np.array([node_path(names[k]) for k in range(h.n_leaves)], dtype=object)
    if not hasattr(model, "decision_path"):
        cluster = np.asarray(model.predict(data), dtype=np.int64)
        leaf_p = None
        if hasattr(model, "predict_proba"):
            proba = np.asarray(model.predict_proba(data))
            leaf_p = proba[np.arange(cluster.size), cluster]
        # A tree with more leaves than clusters (DeepECT) routes each point to its own leaf.
        leaf = np.asarray(model.predict_leaf(data), dtype=np.int64) if hasattr(model, "predict_leaf") else cluster
        return {"cluster": cluster, "path": leaf_paths[leaf], "leaf_probability": leaf_p,
                "path_probability": None, "step_probabilities": None, "leaf_paths": leaf_paths}

    path = model.decision_path(data)  # one forward pass
    return {"cluster": path.cluster, "path": leaf_paths[path.cluster], "leaf_probability": path.leaf_probability,
            "path_probability": path.path_probability, "step_probabilities": path.step_probabilities,
            "leaf_paths": leaf_paths}


def write_predictions(table: dict[str, Any], out: str | Path, inputs: list[str], labels: list[str] | None = None) -> Path:
    """Writes :func:`predict_table` output as CSV: input, [label], cluster, path,
    leaf_probability, path_probability, p_step_1..p_step_T (one row per input; text cells
    starting with = + - @ get a leading apostrophe, see :func:`hiclust.report.summary.csv_safe`)."""
    n = table["cluster"].shape[0]
    if len(inputs) != n:
        raise ValueError(f"{len(inputs)} input names for {n} predictions")
    steps = table["step_probabilities"]
    header = ["input"] + (["label"] if labels is not None else []) + ["cluster", "path"]
    from hiclust.report.summary import csv_safe

    # text cells that a spreadsheet would run as formulas (=, +, -, @) are escaped
    cols: list[Any] = [[csv_safe(v) for v in inputs]] + ([[csv_safe(v) for v in labels]] if labels is not None else [])
    cols += [table["cluster"], table["path"]]
    for key in ("leaf_probability", "path_probability"):
        if table[key] is not None:
            header.append(key)
            cols.append(np.char.mod("%.6g", table[key]))
    if steps is not None:
        header += [f"p_step_{s + 1}" for s in range(steps.shape[1])]
        cols += [np.char.mod("%.6g", steps[:, s]) for s in range(steps.shape[1])]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(zip(*cols))  # rows assembled by csv from whole columns
    return out


def _folder_files(path: Path) -> list[str]:
    """File names (relative to path) in the order hiclust.data's folder loader reads them."""
    import warnings

    from hiclust.data.datasets import IMAGE_EXTENSIONS, _list_images, class_dirs

    top = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                 and p.name.lower().endswith(IMAGE_EXTENSIONS))
    with warnings.catch_warnings():  # the loader has said it already
        warnings.simplefilter("ignore")
        subdirs = class_dirs(path)
    per_class = {d.name: _list_images(d) for d in subdirs}
    files = [f for c in sorted(per_class) for f in per_class[c]] if any(per_class.values()) else top
    return [str(f.relative_to(path)) for f in files]


def load_prediction_input(path: str | Path, image_size: int | None = None, *, features: bool = False,
                          label_column: str | None = None, id_column: str | None = None,
                          strict: bool = False) -> tuple[Any, list[str]]:
    """Loads a folder of images, one image file, a shard directory written by ``hiclust shard`` (a
    folder holding dataset.json and index.npz), a .npy array or, for a model fitted on a feature
    matrix (``features=True``), a .npy/.npz/.csv/.parquet feature matrix; returns (ImageDataset
    or FeatureDataset, input names). The names are the files' paths relative to the folder (an image file's own name), a
    shard directory's stored item ids, the row numbers of an array, or a feature file's ids. Data over the memory budget (``--max-memory``) is
    streamed: the dataset's images / features are a :class:`~hiclust.data.streaming.DiskRows`.
    A folder's unreadable image files are skipped with a warning that names them, as ``train``
    does (their names are then absent from the rows); ``strict``: refuse them instead."""
    from hiclust.data import load_dataset
    from hiclust.data.datasets import IMAGE_EXTENSIONS, load_image_file
    from hiclust.data.feature_files import FEATURE_SUFFIXES

    p = Path(path).expanduser()
    suffix = p.suffix.lower()
    if not features and suffix in FEATURE_SUFFIXES and suffix != ".npy":
        # Refused before it is read: the loader would first warn about the file's columns.
        raise ValueError(f"--input {p} is a feature file ({suffix}), but the run's model was fitted on "
                         "images; pass a folder of images, an image file or a .npy image array "
                         "(N, H, W[, C]) / (N, C, H, W)")
    if features and suffix in FEATURE_SUFFIXES:
        if not p.is_file():
            raise FileNotFoundError(f"--input {p}: no such file")
        data = load_dataset(f"features:{p}", split="all", label_column=label_column, id_column=id_column)
        return data, data.ids()
    if label_column is not None or id_column is not None:
        raise ValueError("--label-column and --id-column apply to feature files (.npz, .csv, .parquet), not to images")
    if p.is_dir() and (p / "dataset.json").is_file() and (p / "index.npz").is_file():
        data = load_dataset(f"shards:{p}", split="all", image_size=image_size)
        return data, data.ids()
    if p.is_dir():
        data = load_dataset(f"folder:{p}", split="all", image_size=image_size, strict=strict)
        names = data.ids()  # the files read, in row order (a skipped unreadable file has no row)
        if data.item_ids is None or not set(names) <= set(_folder_files(p)):
            raise RuntimeError(f"the images read from {p} do not match the folder's file list; report this as a bug")
        return data, names
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        if not p.is_file():
            raise FileNotFoundError(f"--input {p}: no such file")
        return load_image_file(p, image_size), [p.name]
    if p.suffix.lower() == ".npy":
        if not p.is_file():
            raise FileNotFoundError(f"--input {p}: no such file")
        try:
            ndim = np.load(p, mmap_mode="r", allow_pickle=False).ndim  # the header only
        except ValueError:
            ndim = None  # load_dataset says what is wrong with the file
        if ndim == 2:  # predict's own words: the train-side hint (--dataset features:) does not apply here
            raise ValueError(f"--input {p} holds a 2-D feature matrix, but the run's model was fitted on images; "
                             "pass a folder of images, an image file or a .npy image array "
                             "(N, H, W[, C]) / (N, C, H, W)")
        data = load_dataset(f"npy:{p}", split="all", image_size=image_size)
        return data, [str(i) for i in range(len(data))]
    if not p.exists():
        raise FileNotFoundError(f"--input {p}: no such file or folder")
    raise ValueError(f"--input {p} must be a folder of images, an image file or a .npy array "
                     "(N, H, W[, C]) / (N, C, H, W), or a shard directory written by 'hiclust shard' "
                     "(for a run trained on features: a .npy, .npz, .csv or .parquet feature file)")


def _name_the_trained_size(exc: ValueError, model: Any, features: bool) -> ValueError:
    """``exc`` with the size the model was trained at in place of the generic "image_size=S"
    (a folder of mixed sizes must be resized, and to that size)."""
    shape = tuple(getattr(model, "input_shape_", ()) or ())
    text = str(exc)
    if features or len(shape) != 3 or shape[1] != shape[2] or "image_size=S to resize every image to S×S" not in text:
        return exc
    size = shape[1]
    return ValueError(text.replace("image_size=S to resize every image to S×S",
                                   f"--image-size {size} to resize every image to {size}×{size}, the size this "
                                   "model was trained at"))


def check_input_shape(model: Any, data: Any, source: str) -> None:
    """Raises ValueError unless ``data``'s images have the shape the model was fitted on."""
    expected = tuple(int(s) for s in getattr(model, "input_shape_", ()) or ())
    is_features = hasattr(data, "features")
    got = (data.feature_dim,) if is_features else tuple(data.image_shape)
    if not expected or expected == got:
        return
    if len(expected) != 3 and is_features:
        raise ValueError(f"{source} has {got[0]} features per item but the model was fitted on {expected[0]}")
    if len(expected) != 3:
        raise ValueError(f"the model was fitted on feature vectors of {expected[0]} values, not images; "
                         "pass a feature file (.npy, .npz, .csv, .parquet)")
    if is_features:
        raise ValueError(f"the model was fitted on images {expected}, not feature vectors; pass a folder of images "
                         "or a .npy image array")
    hint = []
    if expected[0] != got[0]:
        hint.append(f"pass --channels {expected[0]} to convert them to {'grayscale' if expected[0] == 1 else 'RGB'}")
    if expected[1:] != got[1:]:
        hint.append(f"pass --image-size {expected[1]} to resize them" if expected[1] == expected[2]
                    else f"resize them to {expected[1]}x{expected[2]}")
    raise ValueError(
        f"images in {source} are {got[0]}x{got[1]}x{got[2]} (channels x height x width) but the model expects "
        f"{expected[0]}x{expected[1]}x{expected[2]}; " + " and ".join(hint)
    )


# --------------------------------------------------------------------------------------
# subcommands
# --------------------------------------------------------------------------------------
def _load(run_dir: str, device: str, dataset: str | None = None, root: str | None = None) -> tuple[Any, Any]:
    from hiclust.cli import load_run

    model, config, data = load_run(run_dir, device, dataset, root)
    if getattr(model, "hierarchy_", None) is None:
        raise ValueError(f"the model in {run_dir} ({config.method}) has no hierarchy to draw")
    return model, data


def _check_run_and_out(run_dir: str, out: str | Path, example: str, replace_ok: bool) -> None:
    """Before the model is loaded: the run exists (named first, before any complaint about
    --out), and --out may be written."""
    from hiclust.checkpoint import check_output_file
    from hiclust.runs import read_run_config

    read_run_config(run_dir)
    check_output_file(out, "--out", example, replace_ok=replace_ok)


def _cmd_tree(args: argparse.Namespace) -> int:
    from hiclust.report.tree_plot import plot_tree

    out = Path(args.out) if args.out else Path(args.run_dir) / "tree.png"
    # The run's own tree.png may be redrawn; any other existing file only with --overwrite.
    _check_run_and_out(args.run_dir, out, "tree.png", replace_ok=args.overwrite or not args.out)
    model, data = _load(args.run_dir, args.device, args.dataset, args.root)
    plot_tree(model, data, show=args.show, out=out, max_depth=args.max_depth, n_samples=args.samples, dpi=args.dpi)
    print(f"wrote {out}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from hiclust.report.html import write_report

    if args.max_mb <= 0:
        raise ValueError(f"--max-mb must be positive, got {args.max_mb}")
    out = Path(args.out) if args.out else Path(args.run_dir) / "report.html"
    # before the model is loaded or a temporary file written; the run's own report.html may be rewritten
    _check_run_and_out(args.run_dir, out, "report.html", replace_ok=args.overwrite or not args.out)
    model, data = _load(args.run_dir, args.device, args.dataset, args.root)
    write_report(model, data, out, run_dir=args.run_dir, max_images_per_node=args.max_images_per_node,
                 max_bytes=int(args.max_mb * 1e6), figures=not args.no_figures)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); open it in a browser (works offline)")
    return 0


def _rows(x: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of a predict input: an ImageDataset (a view of streamed images, nothing
    read), a DiskRows view, or a tensor / array slice."""
    from hiclust.data.datasets import ImageDataset
    from hiclust.data.streaming import is_streamed

    if isinstance(x, ImageDataset):
        return ImageDataset(_rows(x.images, start, stop), None if x.labels is None else x.labels[start:stop],
                            x.class_names, x.name, None if x.item_ids is None else x.item_ids[start:stop])
    if is_streamed(x):
        return x.take(np.arange(start, stop, dtype=np.int64))
    return x[start:stop]


def _predict_distributed(model: Any, x: Any, n: int) -> dict[str, Any] | None:
    """:func:`predict_table` of ``x`` (``n`` rows) split over the torchrun ranks: each rank predicts
    its contiguous block (:func:`hiclust.distributed.block_range`), the blocks are gathered to
    rank 0 in rank order. Returns the whole table on rank 0, None on the others. A failure on
    any rank makes every rank raise (no rank is left waiting in the gather)."""
    from hiclust import distributed as dist_utils

    start, stop = dist_utils.block_range(n)
    error: BaseException | None = None
    fields: dict[str, np.ndarray | None] = {}
    leaf_paths = None
    try:
        # A rank without rows (n < world) predicts row 0 and keeps none of it: the arrays it
        # passes to the gather then have the dtypes and widths of everyone else's.
        part = predict_table(model, _rows(x, start, stop) if stop > start else _rows(x, 0, 1))
        keep = stop - start
        leaf_paths = part["leaf_paths"]
        index = {path: i for i, path in enumerate(leaf_paths.tolist())}
        fields["cluster"] = np.asarray(part["cluster"], dtype=np.int64)[:keep]
        fields["leaf"] = np.fromiter((index[v] for v in part["path"][:keep].tolist()), dtype=np.int64, count=keep)
        for key in ("leaf_probability", "path_probability", "step_probabilities"):
            fields[key] = None if part[key] is None else np.asarray(part[key])[:keep]
    except Exception as exc:  # noqa: BLE001 - every rank must learn of it before the gather
        error = exc
    # Which columns exist depends on the model alone, so every rank sends the same ones.
    dist_utils.agree(error)
    gathered = {key: None if value is None else dist_utils.gather_rows(value) for key, value in fields.items()}
    if not dist_utils.is_main():
        return None
    table = {key: gathered[key] for key in ("cluster", "leaf_probability", "path_probability", "step_probabilities")}
    table["path"] = leaf_paths[gathered["leaf"]]
    table["leaf_paths"] = leaf_paths
    return table


def _write_predictions_atomically(table: dict[str, Any], out: str | Path, names: list[str],
                                  labels: list[str] | None) -> None:
    """:func:`write_predictions` into a temporary file beside ``out``, then renamed over it: a
    failure or a kill leaves no partial CSV (and an existing file untouched)."""
    import os
    import tempfile

    from hiclust.checkpoint import _fsync_dir, _new_file_mode

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    mode = _new_file_mode(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        os.chmod(tmp, mode)
        write_predictions(table, tmp, names, labels)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(out.parent)


def _columns_as_trained(model: Any, data: Any, source: str) -> Any:
    """``data`` (a FeatureDataset) with its columns in the order the run was trained on, matched
    by the header's names: a table whose columns come in another order is read as its header says
    (a note says so), one with other columns is refused naming them. Data without names (a .npy)
    is taken as it is."""
    import dataclasses

    fitted = getattr(model, "feature_names_in_", None)
    given = getattr(data, "feature_names", None)
    if fitted is None or given is None or list(given) == list(fitted):
        return data
    fitted = [str(c) for c in fitted]
    extra = [c for c in given if c not in fitted]
    missing = [c for c in fitted if c not in given]
    if extra or missing:
        what = "; ".join(part for part in (
            f"not in the training file: {', '.join(extra[:8])}{' ...' if len(extra) > 8 else ''}" if extra else "",
            f"missing: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}" if missing else "") if part)
        raise ValueError(f"{source}'s columns are not those the run was trained on ({what}); give a file with the "
                         "training file's feature columns (plus, if you like, its label and id columns)")
    position = {c: i for i, c in enumerate(given)}
    order = [position[c] for c in fitted]
    print(f"hiclust predict: {source}'s columns are those of the training file in another order; they are matched "
          "by name", file=sys.stderr)
    return dataclasses.replace(data, features=data.features[:, order].contiguous(), feature_names=fitted)


def _run_columns_in(run_dir: str, input_path: str, label_column: str | None,
                    id_column: str | None) -> tuple[str | None, str | None]:
    """--label-column / --id-column for predict: those given, else the run's own (as trained with)
    where the input file has such a column or array, so that a file laid out like the training
    file needs no flags. A note on stderr names the columns taken from the run."""
    from hiclust import distributed as dist_utils
    from hiclust.data.feature_files import feature_file_columns
    from hiclust.runs import read_run_config

    columns = feature_file_columns(input_path)
    if not columns or (label_column is not None and id_column is not None):
        return label_column, id_column
    run = read_run_config(run_dir)
    taken = []
    if label_column is None and run.label_column in columns:
        label_column = run.label_column
        taken.append(f"--label-column {label_column}")
    if id_column is None and run.id_column in columns:
        id_column = run.id_column
        taken.append(f"--id-column {id_column}")
    if taken and dist_utils.is_main():
        print(f"hiclust predict: {' and '.join(taken)} read as the run was trained", file=sys.stderr)
    return label_column, id_column


def _cmd_predict(args: argparse.Namespace) -> int:
    import hashlib

    from hiclust import distributed as dist_utils
    from hiclust.cli import load_run_model
    from hiclust.data.feature_files import model_input

    world = dist_utils.world_size()
    # Under torchrun every rank checks and loads everything itself, and the ranks compare notes
    # (dist_utils.agree) before the first collective: an error on any rank ends all of them alike.
    error: BaseException | None = None
    info: Any = None
    try:
        _check_run_and_out(args.run_dir, args.out, "predictions.csv", replace_ok=args.overwrite)
        model, config = load_run_model(args.run_dir, args.device)
        if getattr(model, "hierarchy_", None) is None:
            raise ValueError(f"the model in {args.run_dir} has no hierarchy; predict paths need CoHiClust")
        features = len(getattr(model, "input_shape_", ()) or ()) == 1
        label_column, id_column = args.label_column, args.id_column
        if features:
            label_column, id_column = _run_columns_in(args.run_dir, args.input, label_column, id_column)
        image_size = args.image_size
        if image_size is None and not features and getattr(config, "image_size", None):
            # The run resized its training images on load: new images get the same resize.
            image_size = int(config.image_size)
            if dist_utils.is_main():
                print(f"resizing the input images to {image_size}x{image_size}, as the run's training images were "
                      f"(--image-size {image_size} in {Path(args.run_dir) / 'run.json'}); pass --image-size to "
                      "choose another size", file=sys.stderr)
        try:
            data, names = load_prediction_input(args.input, image_size, features=features,
                                                label_column=label_column, id_column=id_column,
                                                strict=args.strict)
        except ValueError as exc:
            raise _name_the_trained_size(exc, model, features) from None
        if features:
            data = _columns_as_trained(model, data, args.input)
        channels = getattr(args, "channels", None)
        if channels is not None:
            if features:
                raise ValueError("--channels converts images; this run was trained on a feature matrix")
            data = data.with_channels(channels)
        check_input_shape(model, data, args.input if channels is None else f"{args.input} (converted by --channels {channels})")
        if world > 1:  # the ranks must have read the same items in the same order
            info = (len(names), hashlib.sha256("\n".join(names).encode("utf-8", "surrogatepass")).hexdigest())
    except Exception as exc:  # noqa: BLE001 - re-raised by agree on this rank
        error = exc
    infos = dist_utils.agree(error, info)
    if len(set(infos)) > 1:
        counts = ", ".join(f"rank {r}: {i[0]}" for r, i in enumerate(infos))
        raise RuntimeError(f"the ranks read different inputs from {args.input} ({counts} items, or other names); "
                           "every rank must see the same files")
    if world > 1:
        table = _predict_distributed(model, model_input(data), len(names))
        if table is None:  # not rank 0: nothing to write or print
            return 0
    else:
        table = predict_table(model, model_input(data))
    labels = None
    if data.labels is not None and (data.class_names is not None or features):
        labels = [data.class_names[i] if data.class_names is not None else str(i) for i in data.labels.tolist()]
    _write_predictions_atomically(table, args.out, names, labels)
    counts = np.bincount(table["cluster"], minlength=model.hierarchy_.n_leaves)
    print(f"wrote {args.out}: {len(names)} rows; {'items' if features else 'images'} per cluster: {counts.tolist()}")
    return 0


def register(subparsers: Any) -> None:
    """Adds ``tree``, ``report`` and ``predict`` to the ``hiclust`` command."""
    from hiclust.cli import _add_data_location_flags, add_streaming_flags

    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "tree", help="draw the learned tree with node images (PNG)", formatter_class=fmt,
        description="Draw the run's tree as in the CoHiClust paper: each node shows the mean image of the\n"
                    "images routed to it (--show mean) or a grid of its most confident images (--show samples),\n"
                    "a bar of its class composition (with labels) and its path / size / majority class.\n"
                    "Runs on a feature matrix (features:PATH) show the ids of each node's most confident items\n"
                    "instead of images (--show mean and samples draw the same picture there).\n\n"
                    "example: hiclust tree runs/demo --show samples --out tree_samples.png",
    )
    p.add_argument("run_dir", help="run directory written by 'hiclust train'")
    p.add_argument("--out", help="output image (default RUN_DIR/tree.png, the run's own picture, which is "
                                 "redrawn without --overwrite); .png, .pdf or .svg")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out file (not needed for the default RUN_DIR/tree.png)")
    p.add_argument("--show", choices=("mean", "samples"), default="mean",
                   help="node picture: mean image (default) or a grid of the most confident samples")
    p.add_argument("--samples", type=int, default=9, help="images per node with --show samples (default 9, a 3x3 grid)")
    p.add_argument("--max-depth", type=int, default=None,
                   help="draw levels 0..N only (deeper subtrees are merged into their ancestor); readable up to 6")
    p.add_argument("--dpi", type=float, default=100, help="resolution of the image (default 100)")
    _add_data_location_flags(p)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.set_defaults(func=_cmd_tree)

    p = subparsers.add_parser(
        "report", help="write a self-contained HTML explorer of the tree", formatter_class=fmt,
        description="Write ONE self-contained HTML file (images embedded, no network or server needed) with the\n"
                    "clickable tree: each node shows its sample images (a feature run: its items' ids), size,\n"
                    "class composition and path from the root (e.g. 'L R R'), plus the metrics per level, the\n"
                    "leaves x classes table and the pictures.\n\n"
                    "example: hiclust report runs/demo --out report.html",
    )
    p.add_argument("run_dir", help="run directory written by 'hiclust train'")
    p.add_argument("--out", help="output HTML file (default RUN_DIR/report.html, the run's own report, which "
                                 "is rewritten without --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out file (not needed for the default RUN_DIR/report.html)")
    p.add_argument("--max-images-per-node", type=int, default=24, help="sample images embedded per node (default 24)")
    p.add_argument("--max-mb", type=float, default=18.0,
                   help="budget for the embedded sample images in MB; fewer per node when exceeded (default 18)")
    p.add_argument("--no-figures", action="store_true", help="leave out the static PNG pictures")
    _add_data_location_flags(p)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.set_defaults(func=_cmd_report)

    p = subparsers.add_parser(
        "predict", help="assign new images or feature rows to clusters with their root-to-leaf paths (CSV)",
        formatter_class=fmt,
        description="Route new images (or, for a run trained on features, new rows) through the run's tree and\n"
                    "write one CSV row per item:\n"
                    "  input             file name (relative to the folder, or the image file's own), stored item\n"
                    "                    id of a shard directory, row index of the array, or the item id of a\n"
                    "                    feature file (--id-column)\n"
                    "  label             class name (folders with class sub-folders, labelled shards, or a feature\n"
                    "                    file's --label-column)\n"
                    "  cluster           leaf id 0..K-1 (= CoHiClust.predict)\n"
                    "  path              root-to-leaf path, e.g. 'L R R L' (L = left, R = right)\n"
                    "  leaf_probability  probability of that leaf, renormalized over the kept leaves (= predict_proba)\n"
                    "  path_probability  product of the decisions on the path (unnormalized; equal to\n"
                    "                    leaf_probability when no leaf was pruned)\n"
                    "  p_step_1..T       probability of the branch taken at each node of the path\n\n"
                    "--input: a folder of images (flat, or one sub-folder per class), one image file, a shard\n"
                    "directory written by 'hiclust shard' (dataset.json, index.npz, shard-*.tar), a .npy image\n"
                    "array, or for a run trained on features a feature file; input over --max-memory is streamed\n"
                    "from disk.\n"
                    "The images must have the shape the model was trained on (use --image-size to resize,\n"
                    "--channels to convert colour images to grayscale or back).\n\n"
                    "Under torchrun each process predicts a contiguous block of the rows and process 0 writes\n"
                    "the whole CSV (the same file as one process writes), e.g.\n"
                    "  torchrun --nproc-per-node 4 -m hiclust predict runs/big --input shards/ --out preds.csv\n\n"
                    "example: hiclust predict runs/mnist --input new_digits/ --out predictions.csv",
    )
    p.add_argument("run_dir", help="run directory written by 'hiclust train'")
    p.add_argument("--input", required=True, metavar="PATH",
                   help="a folder of images (flat, or one sub-folder per class), one image file, a shard "
                   "directory written by 'hiclust shard', or a .npy array of images; for a run trained on features, a feature file (.npy, "
                   ".npz, .csv, .parquet)")
    p.add_argument("--out", default="predictions.csv", help="output CSV (default predictions.csv)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--image-size", type=int, default=None, metavar="S",
                   help="resize every input image to S x S pixels (default: the run's own --image-size, if it "
                   "trained with one; else no resize)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=None,
                   help="convert the input images to 1 channel (grayscale, Pillow's convert('L') formula) or 3 (RGB, "
                   "the gray channel repeated) before predicting, for images whose colour layout differs from the "
                   "run's (not for input streamed from disk: raise --max-memory)")
    p.add_argument("--strict", action="store_true",
                   help="fail on unreadable image files in a --input folder instead of skipping them (with a warning)")
    p.add_argument("--label-column", default=None, metavar="NAME",
                   help="feature files: the column (.csv/.parquet) or array (.npz) holding labels, written to 'label' "
                   "(default: the run's --label-column, where the input has that column)")
    p.add_argument("--id-column", default=None, metavar="NAME",
                   help="feature files: the column or array holding item ids, written to 'input' (default: the run's "
                   "--id-column, where the input has that column)")
    add_streaming_flags(p)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.set_defaults(func=_cmd_predict)
