"""Evaluation of a hierarchy as a whole: metrics at every level, leaf × class table, super-groups.

:func:`hierarchy_evaluation` returns plain JSON-serializable data (what ``hiclust evaluate``
writes to ``evaluation.json``); :func:`format_evaluation` turns it into readable text.

Example
-------
>>> from hiclust.hierarchy import Hierarchy
>>> h = Hierarchy.from_complete_tree(2)
>>> ev = hierarchy_evaluation(h, [0, 1, 2, 3, 3], [0, 0, 1, 1, 1], ["cat", "dog"])
>>> [lv["n_groups"] for lv in ev["levels"]], ev["levels"][0]["acc"]
([2, 4], 1.0)
"""

from __future__ import annotations

from typing import Any, Sequence

from hiclust import metrics as M
from hiclust.hierarchy import Hierarchy
from hiclust.report.tree_plot import node_names

__all__ = ["hierarchy_evaluation", "format_evaluation"]


def _class_name(names: Sequence[str] | None, c: int) -> str:
    return str(names[c]) if names is not None and 0 <= c < len(names) else str(c)


def hierarchy_evaluation(
    hierarchy: Hierarchy,
    y_pred: Any,
    y_true: Any,
    class_names: Sequence[str] | None = None,
    *,
    top: int = 3,
) -> dict[str, Any]:
    """Evaluates the tree at every level against the true classes.

    The points are attached to a copy of ``hierarchy`` with ``leaf_of = y_pred`` (cluster ids
    are leaf ids, as for CoHiClust), so the model's tree is left untouched.

    Args:
        hierarchy: the tree (K leaves).
        y_pred: (n,) predicted cluster (= leaf) ids in 0..K−1.
        y_true: (n,) true class ids.
        class_names: names indexed by class id (default: the ids as text).
        top: number of most frequent classes listed per super-group.
    Returns:
        JSON-serializable dict:

        * ``"tree"``: {"n_leaves", "n_levels", "max_depth", "source", "newick"};
        * ``"levels"``: for t = 1..n_levels, {"level", "n_groups", "nmi", "acc", "ari",
          "leaf_purity"} of ``cut(level=t)`` (the last level is the leaves);
        * ``"dp"``: dendrogram purity of the tree (None with a single leaf: no tree);
        * ``"leaf_purity"``: leaf purity of ``y_pred``;
        * ``"contingency"``: {"leaves": [{"leaf", "name", "size"}...] (left to right),
          "classes": [{"id", "name"}...] (classes present), "table": leaves × classes counts};
        * ``"super_groups"``: for each level t, {"level", "groups": [{"node", "name", "size",
          "majority", "majority_fraction", "top": [{"class", "name", "fraction"}...]}...]}.
    """
    if not isinstance(hierarchy, Hierarchy):
        raise TypeError(f"hierarchy must be a hiclust.Hierarchy, got {type(hierarchy).__name__}")
    h = hierarchy.with_points(y_pred, y_true)  # checks: y_pred are leaf ids, one y_true per point
    t, p = h.y, h.leaf_of
    levels = h.level_metrics()
    for row in levels:  # a handful of levels: leaf purity of each cut
        row["leaf_purity"] = M.leaf_purity(t, h.cut(level=row["level"]))
    dp = None if h.n_leaves < 2 else h.dendrogram_purity()

    names = node_names(h)
    table = h.contingency()  # (K, classes present), columns = sorted distinct labels
    order = h.leaf_order
    classes = h.classes
    contingency = {
        "leaves": [
            {"leaf": int(i), "name": names[i], "size": int(table[i].sum())}
            for i in order
        ],
        "classes": [{"id": int(c), "name": _class_name(class_names, int(c))} for c in classes],
        "table": table[order].tolist(),
    }

    super_groups = []
    for lv in range(1, h.n_levels + 1):
        groups = []
        for g in h.super_groups(level=lv, top=top):  # output assembly, a few groups per level
            tops = [{"class": int(c), "name": _class_name(class_names, int(c)), "fraction": float(f)} for c, f in g["top"]]
            groups.append({
                "node": g["node"], "name": names[g["node"]], "size": g["size"],
                "majority": tops[0]["name"] if tops else None,
                "majority_fraction": tops[0]["fraction"] if tops else 0.0,
                "top": tops,
            })
        super_groups.append({"level": lv, "groups": groups})

    return {
        "tree": {
            "n_leaves": int(h.n_leaves), "n_levels": int(h.n_levels), "max_depth": int(h.max_depth),
            "source": h.source, "newick": h.to_newick(),
        },
        "levels": levels,
        "dp": dp,
        "leaf_purity": M.leaf_purity(t, p),
        "contingency": contingency,
        "super_groups": super_groups,
    }


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}"


def format_evaluation(result: dict[str, Any]) -> str:
    """Readable text of an evaluation result.

    ``result`` holds :func:`hierarchy_evaluation`'s keys and optionally "dataset", "split",
    "n_samples", "metrics" ({nmi, acc, ari, dp, leaf_purity}) and "label_free"
    (:func:`hiclust.report.summary.label_free_evaluation`); every part is optional.
    """
    if not isinstance(result, dict):
        raise TypeError(f"result must be a dict (from hierarchy_evaluation / evaluation.json), got {type(result).__name__}")
    out: list[str] = []
    head = [str(result[k]) for k in ("dataset",) if k in result]
    if "split" in result:
        head.append(f"split {result['split']}")
    if "n_samples" in result:
        head.append(f"{result['n_samples']:,} samples")
    if "tree" in result:
        tr = result["tree"]
        head.append(f"{tr['n_leaves']} leaves, {tr['n_levels']} levels")
    if head:
        out.append("Evaluation: " + ", ".join(head))
    overall = dict(result.get("metrics") or {})
    for key in ("dp", "leaf_purity"):
        if key not in overall and result.get(key) is not None:
            overall[key] = result[key]
    if overall:
        names = {"nmi": "NMI", "acc": "ACC", "ari": "ARI", "dp": "DP", "leaf_purity": "leaf purity"}
        out.append("Overall: " + "  ".join(f"{names.get(k, k)}={_fmt(overall[k])}" for k in names if k in overall))

    levels = result.get("levels") or []
    if levels:
        out += ["", "Per level (cut of the tree at level t):",
                f"  {'level':>5} {'groups':>6} {'NMI':>7} {'ACC':>7} {'ARI':>7} {'purity':>7}"]
        for r in levels:
            out.append(f"  {r['level']:>5} {r['n_groups']:>6} {_fmt(r['nmi']):>7} {_fmt(r['acc']):>7} "
                       f"{_fmt(r['ari']):>7} {_fmt(r.get('leaf_purity')):>7}")

    sg = result.get("super_groups") or []
    if sg:
        out += ["", "Super-groups (majority classes of each node of the level):"]
        for lv in sg:
            parts = []
            for g in lv["groups"]:
                name = g["name"] if g["name"] is not None else f"node {g['node']}"
                tops = ", ".join(f"{t['name']} {t['fraction']:.0%}" for t in g["top"][:3])
                parts.append(f"{name or 'root'} (n={g['size']:,}: {tops})")
            out.append(f"  level {lv['level']}: " + " | ".join(parts))

    if result.get("label_free"):
        from hiclust.report.summary import format_label_free

        out += ["", format_label_free(result["label_free"])]

    ct = result.get("contingency")
    if ct and ct.get("table"):
        cls = [c["name"] for c in ct["classes"]]
        width = max(5, min(10, max(len(c) for c in cls)))
        lw = max(8, max(len(str(lf["name"] or lf["leaf"])) for lf in ct["leaves"]) + 5)
        out += ["", "Contingency (rows: leaves left to right as 'cluster: path', columns: classes):",
                " " * (lw + 2) + " ".join(f"{c[:width]:>{width}}" for c in cls) + f" {'size':>7}"]
        for lf, row in zip(ct["leaves"], ct["table"]):
            label = f"{lf['leaf']}: {lf['name'] if lf['name'] is not None else ''}"
            out.append(f"  {label:<{lw}}" + " ".join(f"{v:>{width}}" for v in row) + f" {lf['size']:>7}")
    return "\n".join(out)
