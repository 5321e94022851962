"""The answer at the end of a training run: per-item assignments, a one-screen summary, and the
label-free numbers of ``hiclust evaluate`` on unlabeled data.

* :func:`assignment_table` — leaf, root-to-leaf path and leaf probability of every item (one
  forward pass); :func:`write_assignments` writes it as ``assignments.csv``.
* :func:`leaf_warnings` — empty, tiny and dominant leaves, each with what to try.
* :func:`format_summary` — leaves with their sizes, the tree drawn in text, the warnings.
* :func:`label_free_evaluation` — sizes, balance per level, mean decision confidence and the
  silhouette of the leaves on the learned representation (on the whitened rows for a matrix
  split directly).

>>> import numpy as np
>>> from hiclust.hierarchy import Hierarchy
>>> h = Hierarchy.from_complete_tree(2)
>>> [w.split(":")[0] for w in leaf_warnings(np.array([97, 2, 1, 0]))]
['empty leaves', 'tiny leaf', 'dominant leaf']
>>> print(text_tree(h, np.array([5, 3, 2, 0]), max_lines=10))
(root)  10
├─ L  8
│  ├─ L L  leaf 0  5  50.0%
│  └─ L R  leaf 1  3  30.0%
└─ R  2
   ├─ R L  leaf 2  2  20.0%
   └─ R R  leaf 3  0  0.0%  (empty)
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = [
    "assignment_table", "write_assignments", "csv_safe", "leaf_warnings", "text_tree", "format_summary",
    "label_free_evaluation", "format_label_free",
]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> str:
    """Text for a CSV cell that spreadsheets will not run as a formula: a cell starting with
    = + - @ (or a tab / carriage return) gets a leading apostrophe.

    >>> csv_safe("=cmd()"), csv_safe("@x"), csv_safe("cat.png")
    ("'=cmd()", "'@x", 'cat.png')
    """
    s = str(value)
    return "'" + s if s.startswith(_FORMULA_START) else s


def assignment_table(model: Any, X: Any) -> dict[str, np.ndarray]:
    """Leaf, path and leaf probability of every item of ``X`` (model input: an ImageDataset or an
    (N, D) matrix), from one forward pass where the model allows.

    Returns:
        dict with "leaf" (N,) int64 (the cluster id, = ``predict``), "path" (N,) str ("L R R";
        "" without a tree), "leaf_probability" (N,) float64 or None, "step_probabilities"
        (N, T) or None (CoHiClust: the probability of each branch taken).
    """
    if getattr(model, "hierarchy_", None) is not None:
        from hiclust.report.cli import predict_table

        t = predict_table(model, X)
        # DeepECT's tree has more leaves than clusters: the tree leaf, whose path is given
        leaf = model.predict_leaf(X) if hasattr(model, "predict_leaf") else t["cluster"]
        return {"leaf": np.asarray(leaf, dtype=np.int64), "path": np.asarray(t["path"], dtype=object),
                "leaf_probability": t["leaf_probability"], "step_probabilities": t["step_probabilities"]}
    if hasattr(model, "predict_proba"):
        proba = np.asarray(model.predict_proba(X))
        leaf = proba.argmax(1).astype(np.int64)
        leaf_p = proba[np.arange(leaf.size), leaf].astype(np.float64)
    else:
        leaf, leaf_p = np.asarray(model.predict(X), dtype=np.int64), None
    return {"leaf": leaf, "path": np.full(leaf.size, "", dtype=object), "leaf_probability": leaf_p,
            "step_probabilities": None}


def write_assignments(table: dict[str, Any], items: Sequence[str], out: str | Path,
                      labels: Sequence[str] | None = None) -> Path:
    """Writes ``assignments.csv`` atomically: item, [label], leaf, path, leaf_probability (one row
    per item; text cells escaped with :func:`csv_safe`)."""
    from hiclust.checkpoint import atomic_write_text

    n = table["leaf"].shape[0]
    if len(items) != n:
        raise ValueError(f"{len(items)} item ids for {n} assignments")
    header = ["item"] + (["label"] if labels is not None else []) + ["leaf", "path"]
    cols: list[Any] = [[csv_safe(i) for i in items]]
    if labels is not None:
        cols.append([csv_safe(v) for v in labels])
    cols += [table["leaf"], table["path"]]
    if table["leaf_probability"] is not None:
        header.append("leaf_probability")
        cols.append(np.char.mod("%.6g", table["leaf_probability"]))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(zip(*cols))  # rows assembled by csv from whole columns
    atomic_write_text(Path(out), buf.getvalue())
    return Path(out)


def leaf_warnings(sizes: np.ndarray, method: str = "cohiclust") -> list[str]:
    """Warnings about the leaf sizes (K,): empty leaves, tiny leaves (under a tenth of the mean
    size) and a dominant leaf (over half of the items, or 90% for K ≤ 3), each with what to do next."""
    sizes = np.asarray(sizes, dtype=np.int64)
    k, n = sizes.size, int(sizes.sum())
    if k < 2 or n == 0:
        return []
    tries = "train longer (--epochs)"
    if method == "cohiclust":
        tries += ", raise --balance-weight (the tree balance term R1)"
    tries += ", try another --seed, or ask for fewer --n-clusters"
    out = []
    empty = np.flatnonzero(sizes == 0)
    if empty.size:
        out.append(f"empty leaves: {', '.join(map(str, empty[:12]))}{' ...' if empty.size > 12 else ''} "
                   f"({empty.size} of {k} hold no item); {tries}")
    tiny = np.flatnonzero((sizes > 0) & (sizes < max(2.0, 0.1 * n / k)))
    if tiny.size:
        shown = ", ".join(f"{i} ({sizes[i]})" for i in tiny[:8])
        out.append(f"tiny leaf: {shown} hold{'s' if tiny.size == 1 else ''} under a tenth of the mean leaf size "
                   f"({n / k:.1f}); they may be outliers or a split worth merging: look at their items "
                   "(RUN_DIR/assignments.csv, or their nodes in hiclust report RUN_DIR), or ask for fewer --n-clusters")
    big = int(sizes.argmax())
    limit = 0.9 if k <= 3 else 0.5
    if sizes[big] > limit * n:
        out.append(f"dominant leaf: leaf {big} holds {sizes[big]} of {n} items ({sizes[big] / n:.0%}); {tries}")
    return out


def text_tree(h: Any, sizes: np.ndarray, max_lines: int = 40) -> str:
    """The tree drawn in text, one node per line: path from the root, number of items, and for
    leaves their cluster id and share. Deeper levels are folded when the tree needs more than
    ``max_lines`` lines (a folded node shows how many leaves it holds)."""
    from hiclust.report.tree_plot import node_names

    sizes = np.asarray(sizes, dtype=np.int64)
    names = node_names(h)
    node_size = np.zeros(h.n_nodes, dtype=np.int64)
    node_size[: h.n_leaves] = sizes
    for v in range(h.n_leaves, h.n_nodes):  # children have smaller ids than their parent
        node_size[v] = node_size[h.children_array[v]].sum()
    n = max(int(node_size[h.root]), 1)
    depth_cap = int(h.max_depth)
    while depth_cap > 1 and int((h.depth <= depth_cap).sum()) > max_lines:
        depth_cap -= 1
    lines: list[str] = []
    stack: list[tuple[int, str, str]] = [(int(h.root), "", "")]
    while stack:  # depth-first, left child first; at most max_lines nodes
        v, prefix, branch = stack.pop()
        label = " ".join(names[v]) if names[v] else "(root)"
        if v < h.n_leaves:
            text = f"{label}  leaf {v}  {node_size[v]}  {node_size[v] / n:.1%}" + ("  (empty)" if node_size[v] == 0 else "")
        elif h.depth[v] >= depth_cap:
            text = f"{label}  {node_size[v]}  ({int(h.sizes[v])} leaves below, folded)"
        else:
            text = f"{label}  {node_size[v]}"
        lines.append(prefix + branch + text)
        if v >= h.n_leaves and h.depth[v] < depth_cap:
            child_prefix = prefix + ("│  " if branch == "├─ " else "   " if branch else "")
            left, right = (int(c) for c in h.children_array[v])
            stack.append((right, child_prefix, "└─ "))
            stack.append((left, child_prefix, "├─ "))
    return "\n".join(lines)


def _skipped_levels_note(h: Any) -> str:
    """Said when a child's path is more than one step longer than its parent's (a pruned
    CoHiClust leaf's sibling took the parent's place), so the drawing's jumps are explained."""
    from hiclust.report.tree_plot import node_names

    names = node_names(h)
    skips = any(len(names[int(c)]) > len(names[v]) + 1
                for v in range(h.n_leaves, h.n_nodes) for c in h.children_array[v])
    return "; a path more than one step longer than its parent's passed nodes of one child, left out" if skips else ""


def format_summary(model: Any, table: dict[str, Any], *, method: str = "cohiclust",
                   assignments: str | Path | None = None, n_items_name: str = "items") -> str:
    """One screen about a fitted run: leaves with sizes (and the tree in text when the model has
    one), the mean leaf probability, the warnings of :func:`leaf_warnings`, and where the
    assignments are."""
    h = getattr(model, "hierarchy_", None)
    k = h.n_leaves if h is not None else int(getattr(model, "n_clusters", table["leaf"].max() + 1))
    sizes = np.bincount(table["leaf"], minlength=k)
    n = int(sizes.sum())
    head = f"{n:,} {n_items_name} in {k} leaves"
    if table["leaf_probability"] is not None:
        head += f"; mean leaf probability {float(np.mean(table['leaf_probability'])):.3f}"
    out = [head]
    if h is not None and h.n_leaves > 1:
        out += [f"tree (path from the root: L = left, R = right; items per node{_skipped_levels_note(h)}):",
                text_tree(h, sizes, max_lines=30)]
    else:
        out.append("leaf sizes: " + ", ".join(f"{i}: {s}" for i, s in enumerate(sizes.tolist())))
    out += [f"warning: {w}" for w in leaf_warnings(sizes, method)]
    if assignments is not None:
        out.append(f"each item's leaf, path and probability: {assignments}")
    return "\n".join(out)


def _balance(counts: np.ndarray) -> float:
    """Normalized entropy of group sizes: 1 = all groups equally large, 0 = one group holds all."""
    g = counts.size
    if g < 2 or counts.sum() == 0:
        return 1.0
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum() / math.log(g))


def label_free_evaluation(model: Any, X: Any, table: dict[str, Any], *, max_silhouette: int = 5000,
                          seed: int = 0) -> dict[str, Any]:
    """What a fitted run says about data without labels.

    Args:
        model: the fitted estimator (``transform`` gives the learned representation).
        X: its input (ImageDataset or (N, D) matrix).
        table: :func:`assignment_table` of X.
        max_silhouette: items sampled (without replacement, seeded) for the silhouette.
    Returns:
        JSON-serializable dict: "sizes" (K,), "balance" (normalized entropy of the leaf sizes),
        "levels": [{"level", "n_groups", "sizes", "balance"}] per tree level, "mean_leaf_probability",
        "mean_step_probability" (CoHiClust: mean probability of each branch taken), "silhouette"
        (cosine silhouette of the leaves on ``transform(X)``; None with fewer than 2 non-empty
        leaves), "silhouette_items".
    """
    from sklearn.metrics import silhouette_score

    h = getattr(model, "hierarchy_", None)
    leaf = table["leaf"]
    k = h.n_leaves if h is not None else int(leaf.max()) + 1
    sizes = np.bincount(leaf, minlength=k)
    levels = []
    if h is not None and h.n_leaves > 1:
        for t in range(1, h.n_levels + 1):
            nodes, group_of_leaf = h.cut_nodes(level=t)
            counts = np.bincount(group_of_leaf[leaf], minlength=len(nodes))
            levels.append({"level": t, "n_groups": int(len(nodes)), "sizes": counts.tolist(), "balance": _balance(counts)})
    sil, used = None, 0
    if np.count_nonzero(sizes) >= 2:
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(leaf.size, size=min(leaf.size, max_silhouette), replace=False))
        sub = X.subset(idx) if hasattr(X, "subset") else X[idx]
        z = np.asarray(model.transform(sub), dtype=np.float64)
        lab = leaf[idx]
        if np.unique(lab).size >= 2 and np.unique(lab).size < lab.size:
            sil, used = float(silhouette_score(z, lab, metric="cosine")), int(idx.size)
    steps = table.get("step_probabilities")
    lp = table["leaf_probability"]
    return {
        "sizes": sizes.tolist(), "balance": _balance(sizes), "levels": levels,
        "mean_leaf_probability": None if lp is None else float(np.mean(lp)),
        "mean_step_probability": None if steps is None else float(np.mean(steps)),
        "silhouette": sil, "silhouette_items": used, "representation": _representation_name(model),
    }


def _representation_name(model: Any) -> str:
    """What ``model.transform`` gives, in words: CoHiClust's input-space mode has no network, its
    tree splits the rows through a fixed map (whitened or standardized), nothing learned."""
    if getattr(model, "backbone_", None) == "input":
        return "whitened rows" if getattr(model, "input_whitening_", False) else "standardized rows"
    return "learned representation"


def format_label_free(result: dict[str, Any]) -> str:
    """Readable text of :func:`label_free_evaluation`."""
    out = ["Label-free (no ground truth needed):",
           f"  leaf sizes: {result['sizes']}  balance {result['balance']:.3f} (1 = equal sizes)"]
    for lv in result["levels"]:
        out.append(f"  level {lv['level']}: {lv['n_groups']} groups, sizes {lv['sizes']}, balance {lv['balance']:.3f}")
    if result["mean_leaf_probability"] is not None:
        out.append(f"  mean leaf probability {result['mean_leaf_probability']:.4f}")
    if result["mean_step_probability"] is not None:
        out.append(f"  mean probability of each decision taken {result['mean_step_probability']:.4f}")
    if result["silhouette"] is not None:
        where = result.get("representation", "learned representation")  # results saved before it was named
        out.append(f"  silhouette of the leaves on the {where} (cosine, {result['silhouette_items']:,} "
                   f"items) {result['silhouette']:.4f} (-1..1, higher = better separated)")
    else:
        out.append("  silhouette: - (needs at least 2 non-empty leaves)")
    return "\n".join(out)
