"""A self-contained HTML explorer of a learned hierarchy.

:func:`write_report` writes ONE HTML file: every image is an embedded base64 PNG, CSS and
JavaScript are inline, nothing is fetched from a network or a server. The file holds

* the tree as inline SVG: every node of the hierarchy is an element ``<g id="node-<id>"
  data-node="<id>">`` with its mean image, class-composition bar, path and size;
* a detail panel: clicking a node (or opening ``report.html#node-<id>``) shows its path from
  the root (e.g. "L R R"), size, class composition, mean image and sample images;
* the metrics (overall, per level, super-groups, leaves × classes table) when labels exist;
* the pictures of :mod:`hiclust.report.tree_plot` (tree, contingency, per-level metrics).

Sample images are the most confident of each leaf (for internal nodes: taken from its leaves
in turn), at most ``max_images_per_node`` per node and within ``max_bytes`` in total, so a
70k-image MNIST report with a depth-6 tree stays a few MB.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hiclust import metrics as M
from hiclust.report.evaluation import hierarchy_evaluation
from hiclust.report.tree_plot import (
    Routing,
    class_colors,
    node_means,
    node_names,
    node_path,
    plot_contingency,
    plot_level_metrics,
    plot_tree,
    _is_features,
    route,
    top_samples,
    tree_layout,
    typicality,
)

__all__ = ["write_report", "stratified_score"]

DEFAULT_MAX_BYTES = 18_000_000


# --------------------------------------------------------------------------------------
# images → base64 PNG
# --------------------------------------------------------------------------------------
def _thumbnails(images: torch.Tensor, size: int) -> np.ndarray:
    """(m, C, H, W) uint8 → (m, H', W', C) uint8 with max(H', W') ≤ size (antialiased)."""
    _, _, hh, ww = images.shape
    if max(hh, ww) > size:
        s = size / max(hh, ww)
        out = (max(1, round(hh * s)), max(1, round(ww * s)))
        images = F.interpolate(images.float(), size=out, mode="bilinear", antialias=True, align_corners=False)
        images = images.round().clamp(0, 255).to(torch.uint8)
    return images.permute(0, 2, 3, 1).numpy()


def _png_b64(img: np.ndarray) -> str:
    """(H, W, C) uint8 → base64 PNG text."""
    from PIL import Image

    pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", compress_level=6)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _fig_b64(fig: Any, dpi: float) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def stratified_score(r: Routing, base: np.ndarray) -> np.ndarray:
    """(N,) score whose top-k under any node takes the best point of each of its leaves, then
    the second best of each, and so on (best = highest ``base`` within the leaf).

    score = −(rank of the point inside its leaf) + 0.5·(base rescaled to [0, 1)), so the rank
    dominates and ``base`` orders points of equal rank.
    """
    order = np.lexsort((-base, r.pred))
    pred_sorted = r.pred[order]
    start = np.searchsorted(pred_sorted, pred_sorted, side="left")
    rank = np.empty(r.n_points, dtype=np.float64)
    rank[order] = np.arange(r.n_points) - start
    lo, hi = float(base.min()), float(base.max())
    unit = (base - lo) / (hi - lo) * 0.999 if hi > lo else np.zeros_like(base)
    return -rank + 0.5 * unit


# --------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------
def write_report(
    model: Any,
    data: Any,
    out_path: str | Path,
    *,
    run_dir: str | Path | None = None,
    max_images_per_node: int = 24,
    max_bytes: int = DEFAULT_MAX_BYTES,
    thumb_size: int = 64,
    predictions: Any = None,
    confidence: Any = None,
    figures: bool = True,
    title: str | None = None,
) -> Path:
    """Writes the HTML explorer of ``model``'s hierarchy on ``data`` to ``out_path``.

    Args:
        model: fitted CoHiClust (``hierarchy_``, ``predict_proba``) or a :class:`Hierarchy`
            with the images' leaves attached.
        data: ImageDataset (labels optional: without them there are no metrics or bars).
        out_path: the .html file to write (parent folders are created).
        run_dir: optional run directory; its run.json (method, dataset, parameters) and
            metrics.json are shown.
        max_images_per_node: sample images embedded per node (upper bound).
        max_bytes: budget for the embedded sample images in bytes of base64 text; the number
            per node is lowered to fit it (the mean images and figures come on top).
        thumb_size: images larger than this many pixels are downscaled (antialiased).
        predictions, confidence: optional (N,) leaf ids and their probabilities, to skip the
            model's forward pass.
        figures: embed the tree, contingency and per-level PNG pictures.
        title: page title (default from the dataset and run).
    Returns:
        the path written.
    """
    if isinstance(max_images_per_node, bool) or not isinstance(max_images_per_node, (int, np.integer)) or max_images_per_node < 0:
        raise ValueError(f"max_images_per_node must be an integer >= 0, got {max_images_per_node!r}")
    if not isinstance(thumb_size, (int, np.integer)) or thumb_size < 4:
        raise ValueError(f"thumb_size must be an integer >= 4, got {thumb_size!r}")
    from hiclust.checkpoint import check_output_file

    check_output_file(out_path, "--out", "report.html", replace_ok=True)  # before any work or temporary file
    r = route(model, data, predictions=predictions, confidence=confidence, need_confidence=True)
    h = r.hierarchy
    feats = _is_features(data)  # feature vectors: item ids per node instead of pictures
    images = data.features if feats else data.images
    n_nodes = h.n_nodes

    # mean image of every node (one vectorized aggregation), as PNG
    means_f = node_means(r, images)
    mean_b64: list[str] | None = None
    if not feats:
        means = np.clip(np.rint(means_f), 0, 255).astype(np.uint8)
        mean_thumbs = _thumbnails(torch.from_numpy(means), thumb_size)
        mean_b64 = [_png_b64(t) for t in mean_thumbs]  # one PNG per node

    # sample images: per-node count chosen to fit the byte budget
    base = r.confidence if r.confidence is not None else typicality(r, images, means=means_f)
    score = stratified_score(r, base)
    k = int(max_images_per_node)
    samples = top_samples(r, k, score) if k else np.zeros((n_nodes, 0), dtype=np.int64)
    if k and not feats:
        probe = np.unique(samples[samples >= 0])[:48]
        avg = np.mean([len(_png_b64(t)) for t in _thumbnails(images[torch.from_numpy(probe)], thumb_size)]) + 60
        n_used = np.count_nonzero(r.counts > 0)
        k_fit = int(max_bytes // max(avg * n_used, 1))
        if k_fit < k:
            samples = samples[:, :k_fit]
    uniq, inv = np.unique(samples[samples >= 0], return_inverse=True)
    if feats:
        ids = data.ids()
        uniq_b64 = [str(ids[i]) for i in uniq]  # the items' ids (escaped by the page's script)
    else:
        thumbs = _thumbnails(images[torch.from_numpy(uniq)], thumb_size) if uniq.size else np.zeros((0,))
        uniq_b64 = [_png_b64(t) for t in thumbs]  # each distinct sample image encoded once
    sample_slot = np.full(samples.shape, -1, dtype=np.int64)
    sample_slot[samples >= 0] = inv

    labels = r.labels
    names = node_names(h)
    n_classes = 0 if r.class_counts is None else r.class_counts.shape[1]
    colors = ["#%02x%02x%02x" % tuple(int(round(255 * c)) for c in col[:3]) for col in class_colors(n_classes)]

    # per-node JSON (output assembly: one record per node)
    node_records = []
    for v in range(n_nodes):
        ch = [int(c) for c in h.children_array[v]] if v >= h.n_leaves else []
        cc = None
        if r.class_counts is not None:
            nz = np.flatnonzero(r.class_counts[v])
            cc = [[int(c), int(r.class_counts[v, c])] for c in nz[np.argsort(-r.class_counts[v, nz], kind="stable")]]
        node_records.append({
            "id": v, "name": names[v], "path": node_path(names[v]), "parent": int(h.parent[v]), "children": ch,
            "level": int(h.level[v]), "depth": int(h.depth[v]), "size": int(r.counts[v]),
            "leaf": v < h.n_leaves, "n_leaves": int(h.sizes[v]),
            "heap": None if h.heap_index is None else int(h.heap_index[v]),
            "classes": cc, "samples": [int(s) for s in sample_slot[v] if s >= 0],
        })
    sample_meta = [[int(i), None if labels is None else int(labels[i]),
                    None if r.confidence is None else round(float(r.confidence[i]), 4)] for i in uniq]
    payload = {
        "n_points": r.n_points, "class_names": r.class_names, "colors": colors, "nodes": node_records,
        "images": uniq_b64, "image_meta": sample_meta, "root": int(h.root), "kind": "features" if feats else "images",
        "confidence": ("most confident (leaf probability)" if r.confidence is not None
                       else "closest to their leaf's mean " + ("vector" if feats else "image")),
    }

    # metrics
    metrics_html = ""
    evaluation = None
    if labels is not None:
        linkage = h.to_linkage() if h.n_leaves > 1 else None
        flat = M.evaluate(labels, r.pred, linkage, r.pred if linkage is not None else None)
        evaluation = hierarchy_evaluation(h, r.pred, labels, r.class_names)
        metrics_html = _metrics_html(flat, evaluation)

    run_html = _run_html(run_dir) if run_dir is not None else ""

    figs_html = ""
    if figures:
        parts = []
        depth_cap = 6 if h.n_levels > 6 else None
        fig = plot_tree(model, data, show="mean", predictions=r.pred, max_depth=depth_cap)
        w_in = fig.get_size_inches()[0]
        parts.append(("Tree (mean image of each node)", _fig_b64(fig, dpi=min(80, 6000 / w_in))))
        if labels is not None:
            parts.append(("Leaves × classes", _fig_b64(plot_contingency(h, labels, r.class_names), dpi=80)))
            if evaluation["levels"]:
                parts.append(("Quality per level", _fig_b64(plot_level_metrics(evaluation["levels"]), dpi=80)))
        figs_html = "".join(
            f'<figure><figcaption>{html.escape(cap)}</figcaption><img alt="{html.escape(cap)}" '
            f'src="data:image/png;base64,{b64}"></figure>' for cap, b64 in parts
        )

    svg = _tree_svg(r, mean_b64, colors)
    ds_name = str(getattr(data, "name", "data"))
    if title is None:
        title = f"hiclust report — {ds_name}" + (f" ({Path(run_dir).name})" if run_dir is not None else "")
    shape = f"{images.shape[1]} features" if feats else f"{tuple(images.shape[1:])}"
    summary = (f"{r.n_points:,} {'items' if feats else 'images'} of {shape}, tree with {h.n_leaves} leaves, "
               f"{h.n_levels} levels, {n_nodes} nodes. Click a node to see its {'items' if feats else 'images'}")
    doc = _TEMPLATE.format(
        title=html.escape(title), summary=html.escape(summary), css=_CSS, svg=svg, metrics=metrics_html,
        run=run_html, figures=figs_html or "<p>(no figures)</p>",
        data=json.dumps(payload, separators=(",", ":")).replace("</", "<\\/"), js=_JS,
    )
    from hiclust.checkpoint import atomic_write_text

    out_path = Path(out_path)
    atomic_write_text(out_path, doc)  # never leave a half-written report behind
    return out_path


# --------------------------------------------------------------------------------------
# HTML pieces
# --------------------------------------------------------------------------------------
def _tree_svg(r: Routing, mean_b64: list[str] | None, colors: list[str]) -> str:
    """Static inline SVG of the whole tree; node groups carry id="node-<id>"."""
    h = r.hierarchy
    lay = tree_layout(h)
    slot = 78 if lay.n_slots <= 64 else 46
    box = slot - 12
    bar = 7 if r.class_counts is not None else 0
    row_h = box + bar + 58
    width = int(lay.n_slots * slot + 20)
    height = int(lay.n_rows * row_h + 10)
    cx = lay.x * slot + slot / 2 + 10
    ytop = lay.row * row_h + 8.0
    names = node_names(h)
    out = [f'<svg id="tree" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    par, ch = lay.edges[:, 0], lay.edges[:, 1]
    y0 = ytop[par] + box + bar + 32
    y1 = ytop[ch] - 3
    ym = y0 + 9  # horizontal part just under the parent: long edges run in the child's column
    d = " ".join(f"M{a:.1f} {b:.1f}V{m:.1f}H{c:.1f}V{e:.1f}" for a, b, m, c, e in zip(cx[par], y0, ym, cx[ch], y1))
    out.append(f'<path class="edges" d="{d}"/>')
    frac = None
    if r.class_counts is not None:
        frac = r.class_counts / np.maximum(r.class_counts.sum(1, keepdims=True), 1)
    for v in np.flatnonzero(lay.shown):  # output assembly: one element per node
        x0, y = cx[v] - box / 2, ytop[v]
        label = names[v] or "root"
        kind = "leaf" if v < h.n_leaves else "internal"
        parts = [f'<g class="node {kind}" id="node-{v}" data-node="{v}" tabindex="0" '
                 f'transform="translate({x0:.1f},{y:.1f})">',
                 f"<title>{html.escape(node_path(names[v]))}: {int(r.counts[v]):,} "
                 f"{'images' if mean_b64 is not None else 'items'}</title>",
                 f'<rect class="frame" x="-3" y="-3" width="{box + 6}" height="{box + bar + 34}" rx="4"/>']
        if r.counts[v] > 0 and mean_b64 is None:  # feature vectors: no picture
            parts.append(f'<rect class="items" width="{box}" height="{box}"/>')
        elif r.counts[v] > 0:
            parts.append(f'<image href="data:image/png;base64,{mean_b64[v]}" width="{box}" height="{box}" '
                         'preserveAspectRatio="none"/>')
        else:
            parts.append(f'<rect class="empty" width="{box}" height="{box}"/>')
        if frac is not None:
            left = 0.0
            for c in np.flatnonzero(frac[v]):
                w = frac[v, c] * box
                parts.append(f'<rect x="{left:.2f}" y="{box + 2}" width="{w:.2f}" height="{bar}" fill="{colors[c]}"/>')
                left += w
        parts.append(f'<text x="{box / 2:.1f}" y="{box + bar + 14}">{html.escape(label)}</text>')
        parts.append(f'<text class="n" x="{box / 2:.1f}" y="{box + bar + 27}">n={int(r.counts[v]):,}</text></g>')
        out.append("".join(parts))
    out.append("</svg>")
    return "".join(out)


def _fmt(v: Any) -> str:
    return "–" if v is None else f"{v:.4f}"


def _metrics_html(flat: dict[str, float], ev: dict[str, Any]) -> str:
    names = {"nmi": "NMI", "acc": "ACC", "ari": "ARI", "dp": "DP", "leaf_purity": "leaf purity"}
    parts = ['<h3>Overall (leaves)</h3><table class="metrics"><tr>']
    parts += [f"<th>{names[k]}</th>" for k in names if k in flat]
    parts.append("</tr><tr>")
    parts += [f"<td>{_fmt(flat[k])}</td>" for k in names if k in flat]
    parts.append("</tr></table>")
    if ev["levels"]:
        parts.append('<h3>Per level</h3><table class="metrics" id="level-table"><tr><th>level</th><th>groups</th>'
                     "<th>NMI</th><th>ACC</th><th>ARI</th><th>leaf purity</th></tr>")
        for row in ev["levels"]:
            parts.append(f"<tr><td>{row['level']}</td><td>{row['n_groups']}</td><td>{_fmt(row['nmi'])}</td>"
                         f"<td>{_fmt(row['acc'])}</td><td>{_fmt(row['ari'])}</td><td>{_fmt(row['leaf_purity'])}</td></tr>")
        parts.append("</table>")
        parts.append('<h3>Super-groups</h3><table class="groups"><tr><th>level</th><th>groups (majority classes)</th></tr>')
        for lv in ev["super_groups"]:
            cells = []
            for g in lv["groups"]:
                tops = ", ".join(f"{html.escape(t['name'])} {t['fraction']:.0%}" for t in g["top"])
                nm = html.escape(node_path(g["name"]))
                cells.append(f'<a href="#node-{g["node"]}" class="goto" data-node="{g["node"]}">{nm}</a> '
                             f"(n={g['size']:,}: {tops})")
            parts.append(f"<tr><td>{lv['level']}</td><td>{' &nbsp;|&nbsp; '.join(cells)}</td></tr>")
        parts.append("</table>")
    ct = ev["contingency"]
    parts.append('<h3>Leaves × classes</h3><div class="scroll"><table class="contingency"><tr><th>leaf</th>')
    parts += [f"<th>{html.escape(c['name'])}</th>" for c in ct["classes"]]
    parts.append("<th>size</th></tr>")
    for lf, row in zip(ct["leaves"], ct["table"]):
        size = max(lf["size"], 1)
        cells = "".join(f'<td style="background:rgba(31,119,180,{v / size:.2f})">{v}</td>' for v in row)
        nm = html.escape(node_path(lf["name"])) if lf["name"] is not None else str(lf["leaf"])
        parts.append(f'<tr><td><a href="#node-{lf["leaf"]}" class="goto" data-node="{lf["leaf"]}">{lf["leaf"]}: {nm}</a>'
                     f"</td>{cells}<td>{lf['size']}</td></tr>")
    parts.append("</table></div>")
    return "".join(parts)


def _run_html(run_dir: str | Path) -> str:
    run_dir = Path(run_dir)
    rows = []
    run_file = run_dir / "run.json"
    if run_file.is_file():
        cfg = json.loads(run_file.read_text())
        for key in ("method", "dataset", "split", "created", "seed"):
            if key in cfg:
                rows.append((key, str(cfg[key])))
        params = cfg.get("params") or {}
        rows.append(("parameters", ", ".join(f"{k}={v}" for k, v in sorted(params.items()))))
    metrics_file = run_dir / "metrics.json"
    if metrics_file.is_file():
        m = json.loads(metrics_file.read_text())
        rows.append(("metrics.json", ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items())))
    rows.append(("run directory", str(run_dir)))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f'<section id="run"><h2>Run</h2><table class="kv">{body}</table></section>'


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{css}</style></head>
<body>
<header><h1>{title}</h1><p>{summary}; the path from the root reads L (left) / R (right).</p></header>
<div class="layout">
<section id="tree-section"><h2>Tree</h2><div class="tree-scroll">{svg}</div></section>
<aside id="detail"><h2 id="detail-title">Node</h2><div id="detail-body"><p>Click a node of the tree.</p></div></aside>
</div>
{run}
<section id="metrics"><h2>Metrics</h2>{metrics}</section>
<section id="figures"><h2>Pictures</h2>{figures}</section>
<script type="application/json" id="report-data">{data}</script>
<script>{js}</script>
</body></html>
"""

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 1.2em 2em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:.6em 0 .2em}h2{font-size:1.15em;margin:.8em 0 .4em}h3{font-size:1em;margin:.9em 0 .3em}
header p{margin:.2em 0 .6em;color:#555}
.layout{display:flex;gap:1em;align-items:flex-start}
#tree-section{flex:1 1 auto;min-width:0}
.tree-scroll{overflow:auto;max-height:80vh;border:1px solid #ddd;background:#fff;border-radius:4px}
#detail{flex:0 0 380px;position:sticky;top:.5em;max-height:95vh;overflow:auto;background:#fff;border:1px solid #ddd;
 border-radius:4px;padding:.2em .8em .8em}
svg text{font-size:10.5px;text-anchor:middle;fill:#222;font-family:monospace}svg text.n{fill:#666}
svg .edges{fill:none;stroke:#888;stroke-width:1.2}
svg .node{cursor:pointer}svg .node image{image-rendering:pixelated}
svg .frame{fill:none;stroke:transparent;stroke-width:2}
svg .node:hover .frame{stroke:#aaa}svg .node.selected .frame{stroke:#d62728;fill:#fde8e8}
svg rect.empty{fill:#e5e5e5}svg rect.items{fill:#dde8f3}
#detail-samples .item{font-family:monospace;font-size:.85em;border:1px solid #ddd;background:#f4f4f4;padding:1px 4px}
#detail img{image-rendering:pixelated}
#detail .mean{width:96px;height:96px;border:1px solid #ccc}
#detail-samples{display:flex;flex-wrap:wrap;gap:3px}
#detail-samples img{width:56px;height:56px;border:1px solid #ddd;background:#eee}
.compbar{display:flex;height:14px;border:1px solid #ccc;margin:.3em 0}
.compbar span{display:block;height:100%}
.swatch{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
table{border-collapse:collapse;font-size:.9em;background:#fff}
td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}th{background:#f0f0f0}
table.kv th,table.kv td,table.groups td+td,table.groups th{text-align:left}
.scroll{overflow:auto;max-width:100%}
a.goto,a.nav{color:#1f77b4;cursor:pointer;text-decoration:none}a.goto:hover,a.nav:hover{text-decoration:underline}
figure{margin:.5em 0 1.2em}figure img{max-width:100%;border:1px solid #ddd;background:#fff}
figcaption{font-weight:600;margin-bottom:.3em}
@media (max-width:900px){.layout{flex-direction:column}#detail{position:static;flex-basis:auto;width:auto}}
"""

_JS = r"""
(function(){
 const D = JSON.parse(document.getElementById('report-data').textContent);
 const byId = D.nodes;
 const esc = s => String(s).replace(/[&<>"']/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
 const cname = c => D.class_names ? D.class_names[c] : String(c);
 function link(v, text){ return '<a class="nav" data-node="'+v+'">'+esc(text)+'</a>'; }
 function label(n){ return n.name ? n.name : 'root'; }
 function reveal_(g){  // scroll the tree box (not the page) so the node is visible
  const sc = document.querySelector('.tree-scroll'), a = sc.getBoundingClientRect(), b = g.getBoundingClientRect();
  if(b.left < a.left || b.right > a.right) sc.scrollLeft += (b.left + b.right - a.left - a.right) / 2;
  if(b.top < a.top || b.bottom > a.bottom) sc.scrollTop += (b.top + b.bottom - a.top - a.bottom) / 2;
 }
 function select(v, reveal){
  const n = byId[v]; if(!n) return;
  document.querySelectorAll('#tree .node.selected').forEach(e => e.classList.remove('selected'));
  const g = document.getElementById('node-'+v);
  if(g){ g.classList.add('selected'); if(reveal) reveal_(g); }
  document.getElementById('detail-title').textContent = 'Node ' + label(n) + (n.leaf ? ' (leaf, cluster '+n.id+')' : '');
  let h = '<p><b>path from the root:</b> <span id="detail-path">'+esc(n.path)+'</span><br>';
  h += '<b>size:</b> <span id="detail-size">'+n.size.toLocaleString()+'</span> '+(D.kind==='features'?'items':'images')+' ('+(100*n.size/Math.max(D.n_points,1)).toFixed(1)+'%)';
  h += n.leaf ? '' : ', '+n.n_leaves+' leaves below';
  h += '<br><b>level:</b> '+n.level+(n.heap!==null ? ', heap index '+n.heap : '')+'<br>';
  if(n.parent >= 0) h += '<b>parent:</b> '+link(n.parent, label(byId[n.parent]))+' ';
  if(n.children.length) h += '<b>children:</b> '+n.children.map(c => link(c, label(byId[c]))).join(' ');
  h += '</p>';
  const g2 = document.querySelector('#node-'+v+' image');
  if(g2) h += '<p><b>mean image</b><br><img class="mean" alt="mean image" src="'+g2.getAttribute('href')+'"></p>';
  if(n.classes && n.size){
   h += '<p><b>class composition</b></p><div class="compbar">';
   n.classes.forEach(([c,k]) => { h += '<span title="'+esc(cname(c))+': '+k+'" style="width:'+(100*k/n.size)+'%;background:'+D.colors[c]+'"></span>'; });
   h += '</div><table id="detail-classes"><tr><th>class</th><th>'+(D.kind==='features'?'items':'images')+'</th><th>%</th></tr>';
   n.classes.slice(0, 12).forEach(([c,k]) => { h += '<tr><td style="text-align:left"><span class="swatch" style="background:'+D.colors[c]+'"></span>'+esc(cname(c))+'</td><td>'+k+'</td><td>'+(100*k/n.size).toFixed(1)+'</td></tr>'; });
   if(n.classes.length > 12) h += '<tr><td colspan="3">… '+(n.classes.length-12)+' more classes</td></tr>';
   h += '</table>';
  }
  const feats = D.kind === 'features';
  h += '<p><b>'+(feats?'items':'sample images')+'</b> ('+n.samples.length+' shown, '+esc(D.confidence)+(n.leaf?'':', from each leaf in turn')+')</p><div id="detail-samples">';
  n.samples.forEach(s => { const m = D.image_meta[s];
   let t = '#'+m[0]; if(m[1]!==null) t += ' · '+cname(m[1]); if(m[2]!==null) t += ' · p='+m[2];
   if(feats) h += '<span class="item" title="'+esc(t)+'">'+esc(D.images[s])+'</span>';
   else h += '<img alt="image '+m[0]+'" title="'+esc(t)+'" src="data:image/png;base64,'+D.images[s]+'">'; });
  h += '</div>';
  document.getElementById('detail-body').innerHTML = h;
  if(history.replaceState) history.replaceState(null, '', '#node-'+v);
 }
 document.querySelectorAll('#tree .node').forEach(g => {
  g.addEventListener('click', () => select(+g.dataset.node));
  g.addEventListener('keydown', e => { if(e.key==='Enter' || e.key===' '){ e.preventDefault(); select(+g.dataset.node); } });
 });
 document.addEventListener('click', e => {
  const a = e.target.closest('a.nav, a.goto'); if(!a) return;
  e.preventDefault(); select(+a.dataset.node, true);
 });
 const fromHash = () => /^#node-(\d+)$/.exec(location.hash);
 window.addEventListener('hashchange', () => { const h = fromHash(); if(h) select(+h[1], true); });
 const m = fromHash();
 select(m ? +m[1] : D.root, !!m);
})();
"""
