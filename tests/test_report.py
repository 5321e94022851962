"""Tests for hiclust.report: tree pictures, per-level evaluation, the HTML explorer and the
tree / report / predict / evaluate commands. Models are tiny CoHiClusts on scikit-learn digits."""

from __future__ import annotations

import base64
import csv
import io
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from hiclust import CoHiClust, ImageDataset, load_dataset
from hiclust import metrics as M
from hiclust.hierarchy import Hierarchy
from hiclust.report import (
    format_evaluation,
    hierarchy_evaluation,
    plot_contingency,
    plot_level_metrics,
    plot_tree,
    write_report,
)
from hiclust.report.cli import predict_table
from hiclust.report.tree_plot import node_means, route, top_samples, tree_layout


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def digits(digits_every_third):
    return digits_every_third  # 599 images 8x8 (conftest.py)


@pytest.fixture(scope="module")
def model(cohiclust_depth3):
    """Depth 3, two leaves pruned (6 kept); trained once in conftest.py (tests/test_browser.py opens
    a report of the same model)."""
    return cohiclust_depth3


@pytest.fixture(scope="module")
def model6(digits):
    """Depth 6, no pruning (64 leaves), one epoch: only the tree's shape matters."""
    return CoHiClust(n_clusters=64, depth=6, backbone="smallcnn", epochs=1, pretrain_epochs=0, batch_size=128,
                     verbose=False, seed=0).fit(digits)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real run directory trained through the same code path as `hiclust train`."""
    from hiclust.cli import run_training
    from hiclust.runs import RunConfig

    out = tmp_path_factory.mktemp("run") / "digits"
    config = RunConfig(method="cohiclust", dataset="digits", split="all", params={
        "n_clusters": 6, "depth": 3, "backbone": "smallcnn", "epochs": 6, "pretrain_epochs": 2,
        "batch_size": 256, "verbose": False, "seed": 1,
    })
    run_training(out, config)
    return out


def brute_table(leaf, y, n_leaves, n_classes):
    t = np.zeros((n_leaves, n_classes), dtype=np.int64)
    for a, b in zip(leaf, y):
        t[a, b] += 1
    return t


# ------------------------------------------------------------------ plot_tree
@pytest.mark.parametrize("max_depth", [1, 3, 4, 6])
def test_plot_tree_draws_every_node_up_to_depth_6(model6, digits, tmp_path, max_depth):
    out = tmp_path / f"tree{max_depth}.png"
    pred = model6.predict(digits)
    fig = plot_tree(model6, digits, out=out, max_depth=max_depth, predictions=pred)
    h = model6.hierarchy_
    shown = np.flatnonzero(h.level <= max_depth)
    # one image per non-empty drawn node; every drawn node is labelled with its path
    r = route(model6, digits, predictions=pred)
    assert len(fig.axes[0].images) == np.count_nonzero(r.counts[shown] > 0)
    texts = {t.get_text().split("\n")[0] for t in fig.axes[0].texts}
    assert {h.name[v] or "root" for v in shown} <= texts
    with Image.open(out) as im:
        assert im.format == "PNG"
        width = im.size[0]
    # the figure widens with the number of drawn leaves (2^max_depth), 0.45-1.1 inch each
    slot = np.clip(110 / 2**max_depth, 0.45, 1.1)
    assert abs(width - (2**max_depth * slot + 0.4) * 100) <= 1


def test_plot_tree_mean_images_are_node_means(model, digits):
    pred = model.predict(digits)
    fig = plot_tree(model, digits, show="mean", predictions=pred)
    h = model.hierarchy_
    r = route(model, digits, predictions=pred)
    drawn = [v for v in np.flatnonzero(tree_layout(h).shown) if r.counts[v] > 0]
    x = digits.images.numpy().astype(np.float64)
    for art, v in zip(fig.axes[0].images, drawn):
        under = np.isin(pred, h.leaves_under(v))
        expected = np.rint(x[under].mean(0)[0])
        np.testing.assert_array_equal(np.asarray(art.get_array()), expected)


def test_top_samples_are_most_confident_per_node(model, digits):
    r = route(model, digits, need_confidence=True)
    proba = model.predict_proba(digits)
    np.testing.assert_array_equal(r.pred, model.predict(digits))
    np.testing.assert_allclose(r.confidence, proba.max(1))
    k = 5
    top = top_samples(r, k)
    h = r.hierarchy
    for v in range(h.n_nodes):
        under = h.points_of(v)
        best = np.sort(r.confidence[under])[::-1][:k]
        got = top[v][top[v] >= 0]
        assert got.size == min(k, under.size)
        assert set(got) <= set(under)
        np.testing.assert_allclose(np.sort(r.confidence[got])[::-1], best)


def test_plot_tree_samples_grid(model, digits, tmp_path):
    fig = plot_tree(model, digits, show="samples", n_samples=4, out=tmp_path / "s.png")
    r = route(model, digits, need_confidence=True)
    top = top_samples(r, 4)
    drawn = [v for v in np.flatnonzero(tree_layout(model.hierarchy_).shown) if r.counts[v] > 0]
    art = fig.axes[0].images[0]  # first drawn node: 2x2 grid of 8x8 tiles with 1-px gaps
    grid = np.asarray(art.get_array())
    assert grid.shape == (17, 17)
    np.testing.assert_array_equal(grid[:8, :8], digits.images[top[drawn[0], 0], 0].numpy())
    assert (tmp_path / "s.png").stat().st_size > 0


def test_plot_tree_accepts_hierarchy_with_points(digits):
    h = Hierarchy.from_complete_tree(2, pruned_leaves=[3])
    leaf = np.arange(len(digits)) % 3
    h = h.fit_points(leaf)
    fig = plot_tree(h, digits, show="samples", n_samples=1)
    assert len(fig.axes[0].images) == h.n_nodes
    # without probabilities the sample is the image closest to its leaf's mean
    x = digits.images.numpy().reshape(len(digits), -1).astype(np.float64)
    mean0 = x[leaf == 0].mean(0)
    best = np.flatnonzero(leaf == 0)[np.argmin(((x[leaf == 0] - mean0) ** 2).sum(1))]
    leaf_art = fig.axes[0].images[[v for v in np.flatnonzero(tree_layout(h).shown)].index(0)]
    np.testing.assert_array_equal(np.asarray(leaf_art.get_array()), digits.images[best, 0].numpy())


def test_plot_tree_bad_input(model, digits):
    with pytest.raises(ValueError, match="show"):
        plot_tree(model, digits, show="median")
    with pytest.raises(ValueError, match="one leaf id per image"):
        plot_tree(model, digits, predictions=np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="must lie in"):
        plot_tree(model, digits, predictions=np.full(len(digits), 99))
    with pytest.raises(TypeError, match="ImageDataset"):
        plot_tree(model, digits.images.numpy())
    with pytest.raises(TypeError, match="hierarchy_"):
        plot_tree(object(), digits)
    with pytest.raises(ValueError, match="max_depth"):
        plot_tree(model, digits, max_depth=-1)


def test_node_means_match_brute_force(model, digits):
    pred = model.predict(digits)
    r = route(model, digits, predictions=pred)
    means = node_means(r, digits.images, chunk=50)  # several chunks
    x = digits.images.numpy().astype(np.float64)
    for v in range(r.hierarchy.n_nodes):
        under = np.isin(pred, r.hierarchy.leaves_under(v))
        if under.any():
            np.testing.assert_allclose(means[v], x[under].mean(0))
        else:
            assert not means[v].any()


# ------------------------------------------------------------------ contingency / level pictures
def test_plot_contingency_and_level_metrics(model, digits, tmp_path):
    pred = model.predict(digits)
    y = digits.labels.numpy()
    h = model.hierarchy_
    fig = plot_contingency(h, y, digits.class_names, tmp_path / "c.png", leaf_of=pred)
    table = brute_table(pred, y, h.n_leaves, 10)[h.leaf_order][:, np.unique(y)]
    frac = table / np.maximum(table.sum(1, keepdims=True), 1)
    np.testing.assert_allclose(np.asarray(fig.axes[0].images[0].get_array()), frac)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [digits.class_names[c] for c in np.unique(y)]
    lm = [{"level": 1, "n_groups": 2, "acc": 0.5, "nmi": 0.25, "ari": 0.1},
          {"level": 2, "n_groups": 4, "acc": 0.7, "nmi": 0.45, "ari": 0.3}]
    fig2 = plot_level_metrics(lm, tmp_path / "l.png")
    lines = {ln.get_label(): list(ln.get_ydata()) for ln in fig2.axes[0].lines}
    assert lines == {"NMI": [0.25, 0.45], "ACC": [0.5, 0.7], "ARI": [0.1, 0.3]}
    assert (tmp_path / "c.png").stat().st_size > 0 and (tmp_path / "l.png").stat().st_size > 0
    with pytest.raises(ValueError, match="non-empty"):
        plot_level_metrics([])


# ------------------------------------------------------------------ evaluation
def test_hierarchy_evaluation_matches_direct_metrics(model, digits):
    pred = model.predict(digits)
    y = digits.labels.numpy()
    h = model.hierarchy_
    ev = hierarchy_evaluation(h, pred, y, digits.class_names)
    json.dumps(ev)  # JSON-serializable
    attached = Hierarchy.from_complete_tree(model.depth_, model.pruned_leaves_).fit_points(pred, y)
    assert [r["level"] for r in ev["levels"]] == list(range(1, model.depth_ + 1))
    for row in ev["levels"]:
        cut = attached.cut(level=row["level"])
        assert row["n_groups"] == len(np.unique(attached.cut_nodes(level=row["level"])[0]))
        assert row["nmi"] == pytest.approx(M.nmi(y, cut))
        assert row["acc"] == pytest.approx(M.clustering_accuracy(y, cut))
        assert row["ari"] == pytest.approx(M.ari(y, cut))
        assert row["leaf_purity"] == pytest.approx(M.leaf_purity(y, cut))
    assert ev["levels"][-1]["acc"] == pytest.approx(M.clustering_accuracy(y, pred))  # last level = leaves
    assert ev["dp"] == pytest.approx(M.dendrogram_purity(y, h.to_linkage(), leaf_of=pred))
    assert ev["leaf_purity"] == pytest.approx(M.leaf_purity(y, pred))
    # contingency: leaves left to right x classes present, by brute force
    table = brute_table(pred, y, h.n_leaves, 10)
    assert ev["contingency"]["table"] == table[h.leaf_order][:, np.unique(y)].tolist()
    assert [c["name"] for c in ev["contingency"]["classes"]] == [digits.class_names[c] for c in np.unique(y)]
    assert h.leaf_of is None  # the model's own tree was not modified


def test_hierarchy_evaluation_known_answer():
    # depth-2 tree, 4 leaves; classes: leaves 0,1 hold "cat", leaves 2,3 hold "dog"/"fox"
    h = Hierarchy.from_complete_tree(2)
    pred = np.array([0, 0, 1, 2, 2, 3, 3, 3])
    y = np.array([0, 0, 0, 1, 1, 2, 2, 1])
    ev = hierarchy_evaluation(h, pred, y, ["cat", "dog", "fox"])
    lv1, lv2 = ev["levels"]
    assert (lv1["n_groups"], lv2["n_groups"]) == (2, 4)
    assert lv1["acc"] == pytest.approx(6 / 8)  # L = all cats (3), R = dog x3 + fox x2
    assert lv2["acc"] == pytest.approx((2 + 2 + 2) / 8)  # cat→leaf 0, dog→leaf 2, fox→leaf 3; leaf 1 unmatched
    assert lv2["leaf_purity"] == pytest.approx(7 / 8)  # every leaf's majority except the dog in leaf 3
    groups1 = ev["super_groups"][0]["groups"]
    assert [(g["name"], g["size"], g["majority"]) for g in groups1] == [("L", 3, "cat"), ("R", 5, "dog")]
    assert groups1[1]["majority_fraction"] == pytest.approx(3 / 5)
    assert [t["name"] for t in groups1[1]["top"]] == ["dog", "fox"]
    text = format_evaluation({"dataset": "toy", "split": "all", "n_samples": 8,
                              "metrics": {"nmi": 0.5, "acc": 0.875, "ari": 0.4}, **ev})
    assert "toy" in text and "ACC=0.8750" in text
    assert re.search(r"^\s+1\s+2\s+\S+\s+0\.7500", text, re.M)  # level-1 row
    assert "R (n=5: dog 60%, fox 40%)" in text
    assert re.search(r"^\s+3: RR\s+0\s+1\s+2\s+3$", text, re.M)  # contingency row of leaf 3


def test_hierarchy_evaluation_bad_input():
    h = Hierarchy.from_complete_tree(2)
    with pytest.raises(ValueError, match="leaf ids"):
        hierarchy_evaluation(h, [0, 4], [0, 1])
    with pytest.raises(ValueError, match="same length"):
        hierarchy_evaluation(h, [0, 1, 2], [0, 1])
    with pytest.raises(TypeError):
        hierarchy_evaluation("tree", [0], [0])


# ------------------------------------------------------------------ HTML report
def _report_data(text: str) -> dict:
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.S)
    return json.loads(m.group(1))


def _decode_png(b64: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
        return np.asarray(im)


def test_report_contains_every_node_and_is_self_contained(model6, digits, tmp_path):
    out = write_report(model6, digits, tmp_path / "r.html", max_images_per_node=6)
    text = out.read_text(encoding="utf-8")
    h = model6.hierarchy_
    for v in range(h.n_nodes):
        assert f'id="node-{v}"' in text and f'data-node="{v}"' in text
    assert len(re.findall(r'<g class="node', text)) == h.n_nodes
    # nothing outside the file: no URLs at all, every src is an embedded PNG
    assert not re.search(r"https?://", text)
    assert not re.search(r"<link\b|<iframe\b|<script[^>]*\bsrc=|@import|url\(", text)
    markup = re.sub(r"<script\b.*?</script>", "", text, flags=re.S)  # the JS builds its src from these
    srcs = re.findall(r'\b(?:src|href)="([^"]*)"', markup)
    assert srcs and all(s.startswith("data:image/png;base64,") or s.startswith("#node-") for s in srcs)
    data = _report_data(text)
    assert [n["id"] for n in data["nodes"]] == list(range(h.n_nodes))


def test_report_node_data_is_correct(model, digits, tmp_path):
    out = write_report(model, digits, tmp_path / "r.html", max_images_per_node=7, figures=False)
    data = _report_data(out.read_text(encoding="utf-8"))
    h = model.hierarchy_
    pred = model.predict(digits)
    y = digits.labels.numpy()
    for node in data["nodes"]:
        v = node["id"]
        under = np.isin(pred, h.leaves_under(v))
        assert node["size"] == under.sum()
        assert node["path"] == (" ".join(h.name[v]) if h.name[v] else "(root)")
        counts = dict(node["classes"])
        assert counts == {int(c): int(n) for c, n in zip(*np.unique(y[under], return_counts=True))}
        assert len(node["samples"]) == min(7, under.sum())
        for s in node["samples"]:  # each sample is an image of this node, embedded exactly (8x8: no resizing)
            i, label, _ = data["image_meta"][s]
            assert under[i] and label == y[i]
            np.testing.assert_array_equal(_decode_png(data["images"][s]), digits.images[i, 0].numpy())
    # internal nodes take the most confident image of each leaf first
    conf = model.predict_proba(digits).max(1)
    root = data["nodes"][h.root]
    firsts = {data["image_meta"][s][0] for s in root["samples"][: np.count_nonzero(np.bincount(pred))]}
    best_per_leaf = {int(np.flatnonzero(pred == k)[np.argmax(conf[pred == k])]) for k in np.unique(pred)}
    assert firsts == best_per_leaf


def test_report_respects_byte_budget(digits, tmp_path):
    h = Hierarchy.from_complete_tree(6).fit_points(np.arange(len(digits)) % 64)  # every node holds images
    big = write_report(h, digits, tmp_path / "big.html", max_images_per_node=20, figures=False)
    small = write_report(h, digits, tmp_path / "small.html", max_images_per_node=20, max_bytes=60_000,
                         figures=False)
    d_big, d_small = (_report_data(p.read_text()) for p in (big, small))
    n_big = max(len(n["samples"]) for n in d_big["nodes"])
    n_small = max(len(n["samples"]) for n in d_small["nodes"])
    assert n_big == 20 and 0 < n_small < 20
    assert sum(len(s) for s in d_small["images"]) <= 60_000
    assert big.stat().st_size > small.stat().st_size
    with pytest.raises(ValueError, match="max_images_per_node"):
        write_report(h, digits, tmp_path / "x.html", max_images_per_node=-1)


def test_report_without_labels(model, digits, tmp_path):
    from hiclust.data import ImageDataset

    unlabeled = ImageDataset(digits.images, None, None, "nolabels")
    out = write_report(model, unlabeled, tmp_path / "u.html", max_images_per_node=3)
    text = out.read_text()
    data = _report_data(text)
    assert data["class_names"] is None and all(n["classes"] is None for n in data["nodes"])
    assert all(f'id="node-{v}"' in text for v in range(model.hierarchy_.n_nodes))


# ------------------------------------------------------------------ predict paths
def _walk(decisions_row: np.ndarray, path: str) -> list[float]:
    """Brute force: follow the path from the root, probability of each branch taken."""
    u, probs = 0, []
    for step in path.split():
        d = float(decisions_row[u])
        probs.append(d if step == "L" else 1.0 - d)
        u = 2 * u + 1 if step == "L" else 2 * u + 2
    return probs


def test_predict_table_paths_and_probabilities(model, digits):
    t = predict_table(model, digits)
    h = model.hierarchy_
    np.testing.assert_array_equal(t["cluster"], model.predict(digits))
    np.testing.assert_allclose(t["leaf_probability"], model.predict_proba(digits)[np.arange(len(digits)), t["cluster"]],
                               rtol=1e-5)
    dec = model.decision_function(digits)
    name_to_node = {n: v for v, n in enumerate(h.name)}
    for i in range(0, len(digits), 37):
        path = t["path"][i]
        assert name_to_node[path.replace(" ", "")] == t["cluster"][i]  # the path leads to the cluster's leaf
        np.testing.assert_allclose(t["step_probabilities"][i], _walk(dec[i], path), rtol=1e-6)
    steps = t["step_probabilities"]
    assert steps.shape == (len(digits), model.depth_)
    assert np.all((steps >= 0) & (steps <= 1))
    np.testing.assert_allclose(t["path_probability"], steps.prod(1), rtol=1e-12)
    # pruning: leaf probability = path probability renormalized over the kept leaves
    assert len(model.pruned_leaves_) == 2
    assert np.all(t["leaf_probability"] >= t["path_probability"] - 1e-7)


def test_predict_table_without_pruning_leaf_prob_is_path_product(digits):
    m = CoHiClust(n_clusters=8, depth=3, backbone="smallcnn", epochs=2, pretrain_epochs=1, batch_size=128,
                  verbose=False).fit(digits)
    t = predict_table(m, digits)
    assert m.pruned_leaves_ == []
    np.testing.assert_allclose(t["leaf_probability"], t["path_probability"], atol=1e-5)
    np.testing.assert_allclose(t["leaf_probability"], m.predict_proba(digits).max(1), atol=1e-6)


# ------------------------------------------------------------------ command line
def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_cli_tree_and_report(run_dir, tmp_path):
    from hiclust.cli import load_run_model, main

    assert (run_dir / "tree.png").stat().st_size > 0  # drawn by run_training via plot_tree
    out = tmp_path / "t.png"
    assert main(["tree", str(run_dir), "--out", str(out), "--show", "samples", "--max-depth", "2"]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG"
    html_out = tmp_path / "report.html"
    assert main(["report", str(run_dir), "--out", str(html_out), "--max-images-per-node", "4"]) == 0
    text = html_out.read_text()
    model, _ = load_run_model(run_dir, "cpu")
    assert all(f'id="node-{v}"' in text for v in range(model.hierarchy_.n_nodes))
    assert "cohiclust" in text  # the run section shows run.json


def test_cli_predict_npy_and_folder(run_dir, tmp_path, capsys):
    from hiclust.cli import load_run_model, main

    model, _ = load_run_model(run_dir, "cpu")
    data = load_dataset("digits", split="all").subset(np.arange(40))
    arr = data.images[:, 0].numpy()  # (40, 8, 8) uint8
    np.save(tmp_path / "x.npy", arr)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(run_dir), "--input", str(tmp_path / "x.npy"), "--out", str(out), "--device", "cpu"]) == 0
    rows = _read_csv(out)
    assert [r["input"] for r in rows] == [str(i) for i in range(40)]
    expected = model.predict(data)
    assert [int(r["cluster"]) for r in rows] == expected.tolist()
    names = model.hierarchy_.name
    dec = model.decision_function(data)
    for i, r in enumerate(rows):
        assert r["path"].replace(" ", "") == names[int(r["cluster"])]
        steps = [float(r[f"p_step_{s}"]) for s in range(1, model.depth_ + 1)]
        assert all(0 <= p <= 1 for p in steps) and 0 <= float(r["leaf_probability"]) <= 1
        np.testing.assert_allclose(steps, _walk(dec[i], r["path"]), rtol=1e-4)
        assert float(r["path_probability"]) == pytest.approx(np.prod(steps), rel=1e-4)

    # a folder with class sub-folders: file names and labels in the CSV, same clusters
    for i in range(12):
        cls = tmp_path / "imgs" / data.class_names[int(data.labels[i])]
        cls.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr[i]).save(cls / f"img{i:02d}.png")
    out2 = tmp_path / "pred2.csv"
    assert main(["predict", str(run_dir), "--input", str(tmp_path / "imgs"), "--out", str(out2)]) == 0
    rows2 = _read_csv(out2)
    assert len(rows2) == 12
    for r in rows2:
        i = int(re.search(r"img(\d+)\.png", r["input"]).group(1))
        assert r["input"] == f"{r['label']}/img{i:02d}.png"
        assert r["label"] == data.class_names[int(data.labels[i])]
        assert int(r["cluster"]) == expected[i]

    # an unreadable file: skipped with a warning naming it (as train does), the other rows intact;
    # --strict refuses the folder and writes nothing
    (tmp_path / "imgs" / data.class_names[int(data.labels[0])] / "broken.png").write_bytes(b"not a png")
    capsys.readouterr()
    out3 = tmp_path / "pred3.csv"
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image file\(s\) of 13 .*broken\.png"):
        assert main(["predict", str(run_dir), "--input", str(tmp_path / "imgs"), "--out", str(out3)]) == 0
    assert _read_csv(out3) == rows2
    out4 = tmp_path / "pred4.csv"
    assert main(["predict", str(run_dir), "--input", str(tmp_path / "imgs"), "--out", str(out4), "--strict"]) == 2
    assert "1 of 13 image files" in capsys.readouterr().err and not out4.exists()

    # wrong image size: clear error naming the fix; --image-size resizes
    np.save(tmp_path / "big.npy", np.zeros((3, 10, 10), dtype=np.uint8))
    capsys.readouterr()
    assert main(["predict", str(run_dir), "--input", str(tmp_path / "big.npy"), "--out", str(tmp_path / "b.csv")]) == 2
    err = capsys.readouterr().err
    assert "1x10x10" in err and "1x8x8" in err and "--image-size 8" in err
    assert main(["predict", str(run_dir), "--input", str(tmp_path / "big.npy"), "--out", str(tmp_path / "b.csv"),
                 "--image-size", "8"]) == 0
    assert len(_read_csv(tmp_path / "b.csv")) == 3
    # not an image source
    (tmp_path / "x.txt").write_text("hi")
    assert main(["predict", str(run_dir), "--input", str(tmp_path / "x.txt"), "--out", str(tmp_path / "c.csv")]) == 2
    assert "folder of images, an image file or a .npy" in capsys.readouterr().err


def test_cli_predict_one_image_file(run_dir, tmp_path, capsys):
    """--input may name one image file: one CSV row, its name in 'input', the cluster predict gives;
    an unreadable or missing file is one line, exit 2, nothing written."""
    from hiclust.cli import load_run_model, main

    model, _ = load_run_model(run_dir, "cpu")
    data = load_dataset("digits", split="all").subset(np.arange(5))
    arr = data.images[:, 0].numpy()
    Image.fromarray(arr[3]).save(tmp_path / "three.png")
    out = tmp_path / "one.csv"
    assert main(["predict", str(run_dir), "--input", str(tmp_path / "three.png"), "--out", str(out)]) == 0
    rows = _read_csv(out)
    assert len(rows) == 1 and rows[0]["input"] == "three.png"
    assert int(rows[0]["cluster"]) == int(model.predict(data)[3])

    (tmp_path / "bad.png").write_bytes(b"not a png")
    capsys.readouterr()
    for name in ("bad.png", "missing.png"):
        out2 = tmp_path / f"{name}.csv"
        assert main(["predict", str(run_dir), "--input", str(tmp_path / name), "--out", str(out2)]) == 2
        err = capsys.readouterr().err
        assert name in err and len(err.strip().splitlines()) == 1 and not out2.exists()


def test_cli_predict_on_a_mixed_size_folder_names_the_trained_size(run_dir, tmp_path, capsys):
    """A folder of images of two sizes cannot be stacked: the one line says which --image-size
    (the model's own, 8 for digits) makes it work, and following it does."""
    from hiclust.cli import main

    arr = load_dataset("digits", split="all").subset(np.arange(3)).images[:, 0].numpy()
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(arr[0]).save(folder / "a.png")
    Image.fromarray(arr[1]).save(folder / "b.png")
    Image.fromarray(arr[2]).resize((12, 12)).save(folder / "c.png")
    out = tmp_path / "p.csv"
    capsys.readouterr()
    assert main(["predict", str(run_dir), "--input", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--image-size 8 " in err and "the size this model was trained at" in err
    assert not out.exists()
    assert main(["predict", str(run_dir), "--input", str(folder), "--out", str(out), "--image-size", "8"]) == 0
    assert len(_read_csv(out)) == 3


def test_cli_predict_resizes_as_the_run_did_when_it_trained_with_image_size(run_dir, tmp_path, capsys):
    """A run that resized its training images on load (run.json's image_size, i.e. --image-size)
    resizes predict's input the same way without being told, and says so on stderr; an explicit
    --image-size still wins."""
    import json
    import shutil

    from hiclust.cli import main

    resized = tmp_path / "resized_run"
    shutil.copytree(run_dir, resized)
    cfg = json.loads((resized / "run.json").read_text())
    cfg["image_size"] = 8  # as if trained with --image-size 8 (the digits are 8x8 already)
    (resized / "run.json").write_text(json.dumps(cfg))
    arr = load_dataset("digits", split="all").subset(np.arange(2)).images[:, 0].numpy()
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(arr[0]).save(folder / "a.png")
    Image.fromarray(arr[1]).resize((12, 12)).save(folder / "b.png")
    out = tmp_path / "p.csv"
    capsys.readouterr()
    assert main(["predict", str(resized), "--input", str(folder), "--out", str(out)]) == 0
    assert len(_read_csv(out)) == 2
    assert "resizing the input images to 8x8" in capsys.readouterr().err
    out2 = tmp_path / "p2.csv"
    assert main(["predict", str(resized), "--input", str(folder), "--out", str(out2), "--image-size", "12"]) == 2
    err = capsys.readouterr().err
    assert "12x12" in err and "expects 1x8x8" in err and not out2.exists()  # the explicit size is used
    assert main(["predict", str(resized), "--input", str(folder), "--out", str(out2), "--image-size", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "hiclust predict: error: --image-size must be a positive number of pixels, got 0 (leave it out to keep the run's size)"


def test_cli_predict_converts_colour_images_for_a_grayscale_run_when_asked(run_dir, tmp_path, capsys):
    """RGB files for a run trained on grayscale digits: one line that names --channels 1, exit 2,
    nothing written; with --channels 1 the clusters equal those of the gray files (Pillow's luma
    formula, so gray pixels saved as RGB come back exactly). Converting a streamed collection is
    refused (convert the files instead)."""
    from hiclust.cli import load_run_model, main

    data = load_dataset("digits", split="all").subset(np.arange(6))
    arr = data.images[:, 0].numpy()
    colour = tmp_path / "colour"
    colour.mkdir()
    rng = np.random.default_rng(0)
    for i, a in enumerate(arr):
        rgb = np.stack([a, a, a], -1)
        if i == 0:  # one truly coloured image: converted exactly as Pillow's convert("L") does
            rgb = rng.integers(0, 256, a.shape + (3,), dtype=np.uint8)
        Image.fromarray(rgb).save(colour / f"{i}.png")
    out = tmp_path / "p.csv"
    capsys.readouterr()
    assert main(["predict", str(run_dir), "--input", str(colour), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "3x8x8" in err and "pass --channels 1 to convert them to grayscale" in err
    assert not out.exists()
    assert main(["predict", str(run_dir), "--input", str(colour), "--out", str(out), "--channels", "1"]) == 0
    rows = _read_csv(out)
    model, _ = load_run_model(run_dir, "cpu")
    gray = np.stack([np.asarray(Image.open(colour / f"{i}.png").convert("L")) for i in range(6)])
    expected = model.predict(ImageDataset.from_numpy(gray[:, None]))
    assert [int(r["cluster"]) for r in sorted(rows, key=lambda r: r["input"])] == expected.tolist()
    assert np.array_equal(gray[1:], arr[1:])  # gray pixels saved as RGB come back exactly
    converted = load_dataset(f"folder:{colour}", split="all").with_channels(1)
    assert converted.images.shape == (6, 1, 8, 8)
    assert np.array_equal(converted.images[:, 0].numpy(), gray[[int(n.split(".")[0]) for n in converted.ids()]])
    # and back: 1 → 3 repeats the channel
    assert torch.equal(converted.with_channels(3).images, converted.images.expand(-1, 3, -1, -1))
    # a conversion that makes the shape wrong is named as the cause, not the files
    capsys.readouterr()
    assert main(["predict", str(run_dir), "--input", str(colour), "--out", str(out), "--overwrite",
                 "--channels", "3"]) == 2
    assert "(converted by --channels 3) are 3x8x8" in capsys.readouterr().err
    streamed = load_dataset(f"folder:{colour}", split="all", max_memory=0)
    with pytest.raises(ValueError, match="streamed from disk; convert the image files themselves"):
        streamed.with_channels(1)


def test_cli_evaluate_prints_levels(run_dir, capsys):
    from hiclust.cli import main

    assert main(["evaluate", str(run_dir), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    result = json.loads((run_dir / "evaluation.json").read_text())
    assert len(result["levels"]) == 3 and result["n_samples"] == 1797
    for row in result["levels"]:
        assert re.search(rf"^\s+{row['level']}\s+{row['n_groups']}\s+{row['nmi']:.4f}\s+{row['acc']:.4f}", text, re.M)
    assert "Super-groups" in text and "Contingency" in text


def test_cli_help_texts(capsys):
    from hiclust.cli import build_parser

    parser = build_parser()
    for cmd, words in (("predict", ["p_step_1", "--image-size", "L R R L"]), ("report", ["self-contained", "--max-mb"]),
                       ("tree", ["--show", "samples"])):
        with pytest.raises(SystemExit):
            parser.parse_args([cmd, "--help"])
        out = capsys.readouterr().out
        assert all(w in out for w in words), (cmd, out)


def test_generic_tree_gets_structural_paths(digits, tmp_path):
    from scipy.cluster.hierarchy import linkage

    from hiclust.report.tree_plot import node_names

    rng = np.random.default_rng(0)
    h = Hierarchy.from_linkage(linkage(rng.normal(size=(7, 3)), "average"))  # no node names
    leaf = np.arange(len(digits)) % 7
    h = h.fit_points(leaf)
    names = node_names(h)
    for v in range(h.n_nodes):  # following each path from the root reaches the node
        u = h.root
        for step in names[v]:
            u = int(h.children_array[u, 0 if step == "L" else 1])
        assert u == v
    out = write_report(h, digits, tmp_path / "g.html", max_images_per_node=2, figures=False)
    data = _report_data(out.read_text())
    assert [n["path"] for n in data["nodes"]] == [" ".join(s) if s else "(root)" for s in names]
    ev = hierarchy_evaluation(h, leaf, digits.labels.numpy(), digits.class_names)
    assert [lf["name"] for lf in ev["contingency"]["leaves"]] == [names[i] for i in h.leaf_order]
    fig = plot_tree(h, digits)
    assert len(fig.axes[0].images) == h.n_nodes
