"""Pictures of a learned hierarchy: the tree with node images, the leaf × class table, per-level metrics.

Everything here draws on a bare :class:`matplotlib.figure.Figure` with the Agg canvas attached
(no ``pyplot``), so it never opens a window, needs no display and leaves the user's global
matplotlib backend alone.

The per-node data (points routed to each node, class composition, mean image, most confident
samples) is computed once by :func:`route` with one vectorized step per tree depth, and shared
with the HTML report (:mod:`hiclust.report.html`).

Example
-------
>>> from hiclust.report import plot_tree                            # doctest: +SKIP
>>> fig = plot_tree(model, data, show="samples", out="tree.png")    # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from hiclust.hierarchy import Hierarchy, subtree_sums
from hiclust.data.streaming import iter_batches

__all__ = [
    "plot_tree",
    "plot_contingency",
    "plot_level_metrics",
    "route",
    "Routing",
    "tree_layout",
    "TreeLayout",
    "class_colors",
    "node_names",
    "node_path",
]

SHOW_MODES = ("mean", "samples")


# --------------------------------------------------------------------------------------
# routing points through the tree
# --------------------------------------------------------------------------------------
@dataclass
class Routing:
    """Points of a dataset routed to the nodes of a hierarchy.

    Attributes:
        hierarchy: the tree with the points attached (a copy; the model's tree is not touched).
        pred: (N,) leaf id (= cluster id) of each point.
        confidence: (N,) probability of the predicted leaf, or None when the source has none.
        labels: (N,) int64 class ids, or None for unlabeled data.
        class_names: one name per class id (``str(id)`` when the dataset has none), or None.
        counts: (n_nodes,) number of points under each node.
        class_counts: (n_nodes, n_classes) points of each class id under each node, or None.
        levels: node ids grouped by depth (root first), for per-depth vectorized steps.
    """

    hierarchy: Hierarchy
    pred: np.ndarray
    confidence: np.ndarray | None
    labels: np.ndarray | None
    class_names: list[str] | None
    counts: np.ndarray
    class_counts: np.ndarray | None
    levels: list[np.ndarray]

    @property
    def n_points(self) -> int:
        return int(self.pred.shape[0])


def _is_features(data: Any) -> bool:
    from hiclust.data.feature_files import FeatureDataset

    return isinstance(data, FeatureDataset)


def _check_dataset(data: Any) -> None:
    if _is_features(data):
        return
    from hiclust.data.streaming import DiskRows

    images = getattr(data, "images", None)
    if not isinstance(images, (torch.Tensor, DiskRows)) or images.dtype != torch.uint8 or images.ndim != 4:
        raise TypeError(
            "data must be a hiclust.data.ImageDataset (uint8 images (N, C, H, W)); "
            f"got {type(data).__name__}. Build one with ImageDataset.from_numpy(array, labels)."
        )


def _depth_levels(h: Hierarchy) -> list[np.ndarray]:
    """Node ids grouped by depth (root first); order inside a group does not matter here."""
    order = np.argsort(h.depth, kind="stable")
    bounds = np.searchsorted(h.depth[order], np.arange(h.max_depth + 2))
    return [order[bounds[d]:bounds[d + 1]] for d in range(h.max_depth + 1)]


def _hierarchy_of(model: Any) -> Hierarchy:
    if isinstance(model, Hierarchy):
        return model
    h = getattr(model, "hierarchy_", None)
    if not isinstance(h, Hierarchy):
        raise TypeError(
            f"expected a fitted hierarchical model (with a hierarchy_ attribute, e.g. CoHiClust after fit) "
            f"or a hiclust.Hierarchy with points attached; got {type(model).__name__}"
        )
    return h


def route(
    model: Any,
    data: Any,
    *,
    predictions: Any = None,
    confidence: Any = None,
    need_confidence: bool = False,
) -> Routing:
    """Routes every image of ``data`` to its leaf and aggregates per node.

    Args:
        model: a fitted model with ``hierarchy_`` and ``predict`` (and ``predict_proba`` for
            confidences), or a :class:`Hierarchy` whose attached points (``leaf_of``) are the
            images of ``data``.
        data: ImageDataset with N images.
        predictions: optional (N,) leaf ids, to skip ``model.predict``.
        confidence: optional (N,) probability of each point's predicted leaf.
        need_confidence: compute confidences with ``model.predict_proba`` when not given
            (then the predictions are its argmax, unless ``predictions`` is given).
    """
    from hiclust.data.feature_files import model_input

    _check_dataset(data)
    n = len(data)
    h = _hierarchy_of(model)
    x = model_input(data)  # a FeatureDataset's (N, D) matrix; an ImageDataset as it is
    conf = None if confidence is None else np.asarray(confidence, dtype=np.float64).reshape(-1)
    if predictions is not None:
        pred = np.asarray(predictions)
    elif isinstance(model, Hierarchy):
        if h.leaf_of is None:
            raise ValueError(
                "this Hierarchy has no points attached; call hierarchy.fit_points(leaf_of) with the leaf of "
                "every image of data, or pass predictions="
            )
        pred = h.leaf_of
    elif hasattr(model, "predict_leaf"):
        # A tree with more leaves than clusters (DeepECT): route to the leaves, which assign hard.
        pred = np.asarray(model.predict_leaf(x))
        if need_confidence and conf is None:
            conf = np.ones(n)
    elif need_confidence and conf is None and hasattr(model, "predict_proba"):
        proba = np.asarray(model.predict_proba(x))
        pred = proba.argmax(1)  # = predict(): the row scaling of predict_proba keeps the argmax
        conf = proba[np.arange(proba.shape[0]), pred]
    else:
        pred = np.asarray(model.predict(x))
    if need_confidence and conf is None and not isinstance(model, Hierarchy) and hasattr(model, "predict_proba"):
        proba = np.asarray(model.predict_proba(x))  # predictions were given: their leaves' probabilities
        conf = proba[np.arange(n), np.clip(pred.astype(np.int64), 0, proba.shape[1] - 1)]
    if pred.ndim != 1 or pred.shape[0] != n:
        raise ValueError(f"predictions must have one leaf id per image ({n}), got shape {pred.shape}")
    if not np.issubdtype(pred.dtype, np.integer):
        raise ValueError(f"predictions must be integer leaf ids, got dtype {pred.dtype}")
    pred = pred.astype(np.int64)
    if pred.min() < 0 or pred.max() >= h.n_leaves:
        raise ValueError(f"predictions must lie in 0..{h.n_leaves - 1} (the tree's leaves), got {pred.min()}..{pred.max()}")
    if conf is not None and conf.shape != (n,):
        raise ValueError(f"confidence must have shape ({n},), got {conf.shape}")

    labels = None if data.labels is None else data.labels.numpy().astype(np.int64)
    hp = h.with_points(pred, labels)
    class_names = None
    class_counts = None
    if labels is not None:
        n_classes = int(labels.max()) + 1
        if data.class_names is not None:
            n_classes = max(n_classes, len(data.class_names))
            class_names = list(data.class_names) + [str(i) for i in range(len(data.class_names), n_classes)]
        else:
            class_names = [str(i) for i in range(n_classes)]
        class_counts = np.zeros((h.n_nodes, n_classes), dtype=np.int64)
        class_counts[:, hp.classes] = hp.class_counts  # fixed columns = class ids, also absent ones
    return Routing(
        hierarchy=hp, pred=pred, confidence=conf, labels=labels, class_names=class_names,
        counts=np.asarray(hp.counts), class_counts=class_counts, levels=_depth_levels(hp),
    )


def node_names(h: Hierarchy) -> list[str]:
    """Root-to-node paths of 'L'/'R' ("" for the root): ``h.name`` when the tree has names (the
    complete-tree heap paths of CoHiClust, collapsed steps included), else from the structure."""
    if h.name is not None:
        return list(h.name)
    names = [""] * h.n_nodes
    for nodes in _depth_levels(h)[:-1]:  # top-down; string assembly per node (output only)
        for v in nodes[nodes >= h.n_leaves]:
            left, right = h.children_array[v]
            names[left], names[right] = names[v] + "L", names[v] + "R"
    return names


def node_path(name: str | None) -> str:
    """Readable root-to-node path: "LRR" → "L R R", the root ("") → "(root)"."""
    if name is None:
        return "?"
    return " ".join(name) if name else "(root)"


def _ancestor_table(h: Hierarchy, levels: list[np.ndarray]) -> np.ndarray:
    """(n_nodes, max_depth + 1): column d = the ancestor at depth d (the node itself at its own
    depth, −1 below it). One vectorized step per depth."""
    anc = np.full((h.n_nodes, h.max_depth + 1), -1, dtype=np.int64)
    for d, nodes in enumerate(levels):
        if d:
            anc[nodes] = anc[h.parent[nodes]]
        anc[nodes, d] = nodes
    return anc


def top_samples(r: Routing, k: int, score: np.ndarray | None = None) -> np.ndarray:
    """Indices of the k highest-scoring points under every node, (n_nodes, k), −1 padded.

    score: (N,) higher is better; default ``r.confidence``, else typicality (minus the squared
    distance of each image to the mean image of its leaf). One lexsort per depth level.
    """
    h = r.hierarchy
    if score is None:
        score = r.confidence
    if score is None:
        raise ValueError("top_samples needs a score (or a Routing with confidences)")
    out = np.full((h.n_nodes, max(int(k), 0)), -1, dtype=np.int64)
    if k <= 0:
        return out
    anc = _ancestor_table(h, r.levels)
    idx = np.arange(r.n_points)
    for d in range(h.max_depth + 1):
        group = anc[r.pred, d]  # node at depth d holding each point, −1 if its leaf is shallower
        keep = group >= 0
        g, i = group[keep], idx[keep]
        order = np.lexsort((-score[keep], g))
        g, i = g[order], i[order]
        start = np.searchsorted(g, g, side="left")  # first position of each point's group
        rank = np.arange(g.size) - start
        sel = rank < k
        out[g[sel], rank[sel]] = i[sel]
    return out


def typicality(r: Routing, images: torch.Tensor, chunk: int = 8192, means: np.ndarray | None = None) -> np.ndarray:
    """(N,) minus the squared distance of each image to its leaf's mean image (a confidence proxy
    for trees without probabilities). ``means``: node_means(r, images) if already computed."""
    means = (node_means(r, images) if means is None else means)[: r.hierarchy.n_leaves]  # (L, C, H, W)
    out = np.empty(r.n_points)
    pred = torch.from_numpy(r.pred)
    m = torch.from_numpy(means).float()
    s = 0
    for batch in iter_batches(images, chunk):  # chunks bound memory (streamed data: read ahead by workers)
        x = batch.float()
        out[s:s + len(x)] = -((x - m[pred[s:s + len(x)]]) ** 2).flatten(1).sum(1).numpy()
        s += len(x)
    return out


def node_means(r: Routing, images: torch.Tensor, chunk: int = 8192) -> np.ndarray:
    """(n_nodes, C, H, W) float64 mean image of the points under each node (0 where empty)."""
    h = r.hierarchy
    shape = tuple(images.shape[1:])
    leaf_sum = torch.zeros((h.n_leaves, *shape), dtype=torch.float64)
    pred = torch.from_numpy(r.pred)
    s = 0
    for batch in iter_batches(images, chunk):  # chunks: never a float copy of the whole dataset
        leaf_sum.index_add_(0, pred[s:s + len(batch)], batch.double())
        s += len(batch)
    sums = np.zeros((h.n_nodes, *shape), dtype=np.float64)
    sums[: h.n_leaves] = leaf_sum.numpy()
    sums = subtree_sums(h.children_array, sums)
    cnt = r.counts.reshape(-1, *([1] * len(shape))).astype(np.float64)
    return np.divide(sums, cnt, out=np.zeros_like(sums), where=cnt > 0)


# --------------------------------------------------------------------------------------
# layout
# --------------------------------------------------------------------------------------
@dataclass
class TreeLayout:
    """Where each node is drawn.

    Attributes:
        shown: (n_nodes,) bool, nodes drawn (all when no max_depth).
        expanded: (n_nodes,) bool, shown internal nodes whose children are drawn.
        x: (n_nodes,) horizontal slot (display leaves at 0, 1, 2, ... left to right; parents
            centred over their children); NaN for hidden nodes.
        row: (n_nodes,) drawing row (the node's level, capped at max_depth); −1 when hidden.
        n_slots: number of display leaves; n_rows: number of rows.
        edges: (m, 2) (parent, child) pairs of drawn edges.
    """

    shown: np.ndarray
    expanded: np.ndarray
    x: np.ndarray
    row: np.ndarray
    n_slots: int
    n_rows: int
    edges: np.ndarray


def tree_layout(h: Hierarchy, max_depth: int | None = None) -> TreeLayout:
    """Layout of ``h`` with rows by ``h.level`` (the complete-tree level for CoHiClust trees, so
    collapsed single-child chains show as longer edges); nodes below ``max_depth`` are hidden
    and their ancestor at ``max_depth`` is drawn as a leaf holding all their points."""
    if max_depth is not None and (isinstance(max_depth, bool) or not isinstance(max_depth, (int, np.integer)) or max_depth < 0):
        raise ValueError(f"max_depth must be a non-negative integer or None, got {max_depth!r}")
    levels = _depth_levels(h)
    internal = np.arange(h.n_nodes) >= h.n_leaves
    cap = np.inf if max_depth is None else int(max_depth)
    expandable = internal & (h.level < cap)
    shown = np.zeros(h.n_nodes, dtype=bool)
    shown[h.root] = True
    offset = np.zeros(h.n_nodes, dtype=np.int64)  # position of the node's first leaf
    for nodes in levels:  # top-down
        inner = nodes[internal[nodes]]
        left, right = h.children_array[inner, 0], h.children_array[inner, 1]
        open_ = shown[inner] & expandable[inner]
        shown[left] = open_
        shown[right] = open_
        offset[left] = offset[inner]
        offset[right] = offset[inner] + h.sizes[left]
    expanded = shown & expandable
    slots = np.flatnonzero(shown & ~expanded)
    slots = slots[np.argsort(offset[slots], kind="stable")]
    x = np.full(h.n_nodes, np.nan)
    x[slots] = np.arange(slots.size, dtype=np.float64)
    for nodes in reversed(levels):  # bottom-up: centre each open node over its children
        inner = nodes[expanded[nodes]]
        x[inner] = 0.5 * (x[h.children_array[inner, 0]] + x[h.children_array[inner, 1]])
    row = np.where(shown, np.minimum(h.level, cap), -1).astype(np.int64)
    parents = np.flatnonzero(expanded)
    edges = np.stack([np.repeat(parents, 2), h.children_array[parents].reshape(-1)], axis=1)
    return TreeLayout(shown, expanded, x, row, int(slots.size), int(row.max()) + 1, edges.reshape(-1, 2))


# --------------------------------------------------------------------------------------
# colours and image helpers
# --------------------------------------------------------------------------------------
def class_colors(n_classes: int) -> np.ndarray:
    """(n_classes, 4) RGBA colours: tab10 / tab20 when they suffice, else evenly spaced hues."""
    from matplotlib import colormaps

    if n_classes <= 10:
        return np.asarray(colormaps["tab10"].colors)[:n_classes]
    if n_classes <= 20:
        return np.asarray(colormaps["tab20"].colors)[:n_classes]
    return colormaps["hsv"](np.linspace(0, 1, n_classes, endpoint=False))[:, :3]


def image_grid(images: np.ndarray, idx: np.ndarray, pad: int = 1, pad_value: int = 128) -> np.ndarray:
    """Square grids of selected images, one per row of ``idx``.

    Args:
        images: (N, C, H, W) uint8.
        idx: (m, k) image indices, −1 for an empty tile.
    Returns:
        (m, C, g·(H+pad)−pad, g·(W+pad)−pad) uint8 with g = ⌈√k⌉.
    """
    m, k = idx.shape
    _, c, hh, ww = images.shape
    g = max(1, math.ceil(math.sqrt(k)))
    tiles = np.full((m, g * g, c, hh + pad, ww + pad), pad_value, dtype=np.uint8)
    valid = idx >= 0
    sel = np.where(valid, idx, 0)
    tiles[:, :k, :, :hh, :ww] = np.where(valid[:, :, None, None, None], images[sel], pad_value)
    tiles = tiles.reshape(m, g, g, c, hh + pad, ww + pad).transpose(0, 3, 1, 4, 2, 5)
    grid = tiles.reshape(m, c, g * (hh + pad), g * (ww + pad))
    return grid[:, :, : g * (hh + pad) - pad, : g * (ww + pad) - pad]


def _for_imshow(img: np.ndarray) -> np.ndarray:
    """(C, H, W) → (H, W) for grayscale or (H, W, 3) uint8 for colour."""
    return img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))


def _new_figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in))
    FigureCanvasAgg(fig)  # Agg canvas: renders to memory/PNG, no display needed
    return fig


def _save(fig: Figure, out: str | Path | None, dpi: float) -> None:
    """Writes ``fig`` to ``out`` atomically (rendered in memory, then a temporary file renamed
    over ``out``): a failure or a kill leaves the previous file as it was."""
    if out is not None:
        import io

        from hiclust.checkpoint import atomic_write_bytes, check_output_file

        out = Path(out)
        check_output_file(out, replace_ok=True)  # the caller chose the path (CLI: checked for --overwrite)
        buffer = io.BytesIO()
        fig.savefig(buffer, dpi=dpi, format=out.suffix[1:].lower() or None)
        atomic_write_bytes(out, buffer.getvalue())


# --------------------------------------------------------------------------------------
# the tree
# --------------------------------------------------------------------------------------
def plot_tree(
    model: Any,
    data: Any,
    *,
    show: str = "mean",
    out: str | Path | None = None,
    predictions: Any = None,
    max_depth: int | None = None,
    confidence: Any = None,
    n_samples: int = 9,
    dpi: float = 100,
    title: str | None = None,
) -> Figure:
    """Draws the hierarchy as in the CoHiClust paper figures.

    Each drawn node shows the mean image of the images routed to it (``show="mean"``) or a
    grid of its ``n_samples`` most confident images (``show="samples"``; confidence = the
    probability of the image's predicted leaf from ``predict_proba``; for a bare Hierarchy,
    closeness to the leaf's mean image). With labels, a stacked bar shows the node's class
    composition (legend with class names on top), and the label under the node gives its
    root-to-node path, its size and its majority class.

    Args:
        model: fitted CoHiClust (``hierarchy_``, ``predict``, ``predict_proba``) or a
            :class:`Hierarchy` with the images' leaves attached (``fit_points``).
        data: ImageDataset (images uint8 (N, C, H, W), labels or None, class_names).
        show: "mean" or "samples".
        out: optional PNG (or any matplotlib format) path to write.
        predictions: optional (N,) leaf ids, to skip predicting.
        max_depth: draw levels 0..max_depth only (deeper subtrees merged into their ancestor).
            Readable up to 6 (64 leaves); the figure widens with the number of drawn leaves.
        confidence: optional (N,) confidences for ``show="samples"``.
        n_samples: images per node for ``show="samples"`` (a ⌈√n⌉ × ⌈√n⌉ grid).
        dpi: resolution of the saved file.
        title: figure title (default: dataset name, size and number of leaves).
    Returns:
        the matplotlib Figure (Agg canvas; not registered with pyplot, so no need to close it).
    """
    if show not in SHOW_MODES:
        raise ValueError(f"show must be one of {SHOW_MODES}, got {show!r}")
    if show == "samples" and (isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1):
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    r = route(model, data, predictions=predictions, confidence=confidence, need_confidence=show == "samples")
    h = r.hierarchy
    lay = tree_layout(h, max_depth)
    nodes = np.flatnonzero(lay.shown)
    feats = _is_features(data)
    if feats:  # no pictures: each node lists the ids of its most confident (or most typical) items
        score = r.confidence if r.confidence is not None else typicality(r, data.features)
        idx = top_samples(r, min(int(n_samples), 4) if show == "samples" else 3, score)[nodes]
        ids = np.asarray(data.ids(), dtype=object)
        pics = [[_short(str(ids[i]), 14) for i in row if i >= 0] for row in idx]
    images = None if feats else data.images
    if not feats and show == "mean":
        pics = node_means(r, images)[nodes]
        pics = np.clip(np.rint(pics), 0, 255).astype(np.uint8)
    elif not feats:
        score = r.confidence if r.confidence is not None else typicality(r, images)
        idx = top_samples(r, int(n_samples), score)[nodes]
        used = np.unique(idx[idx >= 0])  # read only the pictured images (streamed data: from disk)
        local = np.where(idx >= 0, np.searchsorted(used, np.where(idx >= 0, idx, used[0] if used.size else 0)), -1)
        pics = image_grid(images[torch.from_numpy(used)].numpy() if used.size else
                          np.zeros((1, *images.shape[1:]), np.uint8), local)

    # geometry in inches (data units = inches so images stay square)
    slot = float(np.clip(110.0 / max(lay.n_slots, 1), 0.45, 1.1))
    box = 0.84 * slot
    bar_h = 0.09 * slot if r.class_counts is not None else 0.0
    font = float(np.clip(7.5 * slot, 3.5, 8.0))
    n_lines = 3 if (r.class_counts is not None and slot >= 0.7) else 2
    text_h = n_lines * font * 1.25 / 72.0
    row_h = box + bar_h + text_h + 0.45
    width = lay.n_slots * slot + 0.4
    legend_h = 0.0
    if r.class_counts is not None:
        n_cls = r.class_counts.shape[1]
        longest = max(len(_short(c, 18)) for c in r.class_names)
        legend_cols = min(n_cls, max(1, int(0.9 * width / (0.35 + 0.05 * longest))))  # entry ≈ swatch + text at 6 pt
        legend_h = 0.25 + 0.14 * math.ceil(n_cls / legend_cols)
    # the lines under the tree that explain the node labels, wrapped to the figure's width
    import textwrap

    key_font = max(font - 1.5, 4.5)
    key = ("node labels: path from the root (L = left, R = right; the root is 'root'), n = items under the node"
           + (", then its majority class and share" if r.class_counts is not None and n_lines >= 3 else "")
           + ("; the box lists its most confident items" if feats else ""))
    key_lines = textwrap.wrap(key, max(20, int(width * 72 / (key_font * 0.62))))
    key_h = 0.08 + len(key_lines) * key_font * 1.3 / 72
    height = lay.n_rows * row_h + 0.45 + legend_h + key_h
    fig = _new_figure(width, height)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-0.2 - slot / 2, width - 0.2 - slot / 2)
    top = 0.35 + legend_h
    ax.set_ylim(-(height - top), top)
    ax.set_axis_off()

    cx = lay.x * slot  # node centres
    ytop = -lay.row * row_h  # top edge of each node's picture
    # edges: elbow from below the parent's label, across just under it, then straight down to
    # the child (a long edge of a collapsed chain then runs in the child's own column)
    par, ch = lay.edges[:, 0], lay.edges[:, 1]
    y0 = ytop[par] - box - bar_h - text_h - 0.08
    y1 = ytop[ch] + 0.04
    ym = y0 - 0.14
    segs = np.stack([
        np.stack([cx[par], y0], 1), np.stack([cx[par], ym], 1),
        np.stack([cx[ch], ym], 1), np.stack([cx[ch], y1], 1),
    ], axis=1)
    ax.add_collection(LineCollection(segs, colors="0.45", linewidths=0.8))

    gray = feats or images.shape[1] == 1
    for j, v in enumerate(nodes):  # one image artist per drawn node (≤ 2^(depth+1) of them)
        ext = (cx[v] - box / 2, cx[v] + box / 2, ytop[v] - box, ytop[v])
        if r.counts[v] == 0:
            ax.add_patch(_rect(ext, "0.9"))
            ax.text(cx[v], ytop[v] - box / 2, "empty", ha="center", va="center", fontsize=font, color="0.4")
            continue
        if feats:
            ax.add_patch(_rect(ext, "0.97"))
            ax.text(cx[v], ytop[v] - box / 2, "\n".join(pics[j]), ha="center", va="center",
                    fontsize=max(font - 1.5, 3.0), color="0.15", family="monospace")
            continue
        ax.imshow(_for_imshow(pics[j]), extent=ext, cmap="gray" if gray else None, vmin=0, vmax=255,
                  interpolation="nearest", aspect="auto")
    # class composition: one vectorized barh call per class
    if r.class_counts is not None:
        cc = r.class_counts[nodes].astype(np.float64)
        frac = cc / np.maximum(cc.sum(1, keepdims=True), 1)
        left = np.cumsum(frac, axis=1) - frac
        colors = class_colors(cc.shape[1])
        ybar = ytop[nodes] - box - 0.03 - bar_h / 2
        x0 = cx[nodes] - box / 2
        for c in range(cc.shape[1]):
            ax.barh(ybar, frac[:, c] * box, left=x0 + left[:, c] * box, height=bar_h, color=colors[c], linewidth=0)
        handles = [Patch(color=colors[c], label=_short(r.class_names[c], 18)) for c in range(cc.shape[1])]
        fig.legend(handles=handles, loc="upper center", ncol=legend_cols, handlelength=1.2, labelspacing=0.3,
                   fontsize=6.0, frameon=False, borderaxespad=0, bbox_to_anchor=(0.5, 1 - 0.3 / height))
    # labels: path, size and majority class
    labels = _node_labels(r, nodes, n_lines)
    ty = ytop[nodes] - box - bar_h - 0.06
    for j, v in enumerate(nodes):
        ax.text(cx[v], ty[j], labels[j], ha="center", va="top", fontsize=font, linespacing=1.1)
    if title is None:
        name = str(getattr(data, "name", "data"))
        prefix, _, path = name.partition(":")
        if path and prefix in ("folder", "npy", "features"):  # a long absolute path would not fit the figure
            name = f"{prefix}:{Path(path).name}"
        title = (f"{name}: {r.n_points:,} {'items' if feats else 'images'}, {h.n_leaves} leaves"
                 + (f" (levels ≤ {max_depth})" if max_depth is not None and max_depth < h.n_levels else ""))
    fig.text(0.5, 1 - 0.06 / height, title, ha="center", va="top", fontsize=max(font + 2, 8))
    fig.text(0.5, 0.04 / height, "\n".join(key_lines), ha="center", va="bottom", fontsize=key_font, color="0.3")
    _save(fig, out, dpi)
    return fig


def _rect(ext: tuple[float, float, float, float], color: str):
    from matplotlib.patches import Rectangle

    return Rectangle((ext[0], ext[2]), ext[1] - ext[0], ext[3] - ext[2], facecolor=color, edgecolor="0.7", linewidth=0.5)


def _short(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _node_labels(r: Routing, nodes: np.ndarray, n_lines: int) -> list[str]:
    h = r.hierarchy
    names = node_names(h)
    out = []
    top = None
    if r.class_counts is not None:
        cc = r.class_counts[nodes]
        top = cc.argmax(1)
        share = cc.max(1) / np.maximum(cc.sum(1), 1)
    for j, v in enumerate(nodes):  # text assembly only
        lines = [names[v] or "root", f"n={int(r.counts[v]):,}"]
        if top is not None and n_lines >= 3 and r.counts[v] > 0:
            lines.append(f"{_short(r.class_names[top[j]], 9)} {share[j]:.0%}")
        out.append("\n".join(lines))
    return out


# --------------------------------------------------------------------------------------
# contingency and per-level metrics
# --------------------------------------------------------------------------------------
def plot_contingency(
    hierarchy: Hierarchy,
    y: Any,
    class_names: Sequence[str] | None = None,
    out: str | Path | None = None,
    *,
    leaf_of: Any = None,
    dpi: float = 100,
) -> Figure:
    """Heatmap of the leaves × classes contingency table (rows: leaves left to right, colour:
    fraction of the leaf, numbers: counts when the table is small enough to read).

    Args:
        hierarchy: the tree; its attached points are used unless ``leaf_of`` is given.
        y: (n,) class ids of the points.
        class_names: names indexed by class id (default: the ids).
        out: optional output path.
        leaf_of: optional (n,) leaf of each point (e.g. the predictions).
    """
    h = hierarchy
    if leaf_of is not None:
        h = h.with_points(leaf_of)
    table = h.contingency(y)  # (L, classes present), columns = sorted distinct labels
    classes = np.unique(np.asarray(y))
    names = [str(c) if class_names is None or c >= len(class_names) else str(class_names[c]) for c in classes]
    order = h.leaf_order
    table = table[order]
    paths = node_names(h)
    row_names = [paths[i] or "root" for i in order]
    row_names = [f"{i}: {s}" for i, s in zip(order, row_names)]
    n_rows, n_cols = table.shape
    frac = table / np.maximum(table.sum(1, keepdims=True), 1)
    fig = _new_figure(min(2.0 + 0.45 * n_cols, 40), min(1.6 + 0.3 * n_rows, 60))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(np.arange(n_cols), [_short(s, 14) for s in names], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(np.arange(n_rows), row_names, fontsize=8)
    ax.set_xlabel("class")
    ax.set_ylabel("leaf (cluster id: path)")
    if n_rows * n_cols <= 900:
        rr, cc = np.nonzero(table)
        for i, j in zip(rr, cc):  # cell annotations (≤ 900): output assembly only
            ax.text(j, i, str(table[i, j]), ha="center", va="center", fontsize=6,
                    color="white" if frac[i, j] > 0.55 else "black")
    fig.colorbar(im, ax=ax, label="fraction of the leaf", shrink=0.8)
    ax.set_title("leaves × classes")
    fig.tight_layout()
    _save(fig, out, dpi)
    return fig


def plot_level_metrics(level_metrics: Any, out: str | Path | None = None, *, dpi: float = 100) -> Figure:
    """ACC, NMI and ARI of the cut at each tree level (number of groups on the top axis).

    Args:
        level_metrics: list of {"level", "n_groups", "acc", "nmi", "ari"} as returned by
            ``Hierarchy.level_metrics``, or a dict holding such a list under "levels"
            (the output of :func:`hiclust.report.evaluation.hierarchy_evaluation`).
        out: optional output path.
    """
    rows = level_metrics.get("levels") if isinstance(level_metrics, dict) else level_metrics
    if not isinstance(rows, (list, tuple)) or not rows:
        raise ValueError("level_metrics must be a non-empty list of per-level dicts (Hierarchy.level_metrics())")
    missing = {"level", "acc", "nmi", "ari"} - set(rows[0])
    if missing:
        raise ValueError(f"level_metrics entries lack keys {sorted(missing)}")
    lv = np.array([r["level"] for r in rows])
    fig = _new_figure(5.5, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    for key, marker in (("nmi", "o"), ("acc", "s"), ("ari", "^")):
        ax.plot(lv, [r[key] for r in rows], marker=marker, label=key.upper())
    ax.set_xticks(lv)
    if "n_groups" in rows[0]:
        ax.set_xticklabels([f"{r['level']}\n({r['n_groups']} groups)" for r in rows], fontsize=8)
    ax.set_xlabel("tree level of the cut")
    ax.set_ylim(min(0.0, min(r["ari"] for r in rows) - 0.05), 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("clustering quality at each level")
    fig.tight_layout()
    _save(fig, out, dpi)
    return fig
