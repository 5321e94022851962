"""``hiclust bench --table hierarchical``: the rows of CoHiClust's hierarchical table (DeepECT,
DeepECT + Aug, IDEC (agglomerative complete*), AE + k-means (bisecting*), CoHiClust, CC + L2H),
the exact complete-linkage distance between clusters, and the mean ± std table over seeds."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import linkage as scipy_linkage

from hiclust import bench
from hiclust.baselines import complete_linkage_between_clusters, complete_linkage_cluster_tree
from hiclust.hierarchy import Hierarchy
from hiclust.metrics import dendrogram_purity, evaluate, leaf_purity


def _brute_force_complete(z: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """The definition, one point pair at a time."""
    d = np.full((k, k), -np.inf)
    for i in range(len(z)):
        for j in range(len(z)):
            a, b = labels[i], labels[j]
            if a != b:
                d[a, b] = max(d[a, b], float(np.sqrt(((z[i] - z[j]) ** 2).sum())))
    np.fill_diagonal(d, 0.0)
    return d


# ----------------------------------------------------------------------------------------------
# complete linkage between clusters
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_complete_linkage_distance_equals_brute_force_and_chunking_changes_nothing(seed):
    rng = np.random.default_rng(seed)
    n, k = 57, 5
    z = rng.normal(size=(n, 4)) * rng.uniform(0.5, 3.0, size=4)
    labels = rng.permutation(np.arange(n) % k)  # every cluster non-empty, points interleaved
    ref = _brute_force_complete(z, labels, k)
    whole = complete_linkage_between_clusters(z, labels, chunk_size=n)  # one block: unchunked
    np.testing.assert_allclose(whole, ref, rtol=1e-12, atol=1e-12)
    for chunk in (1, 4, 13, None):
        np.testing.assert_allclose(complete_linkage_between_clusters(z, labels, chunk_size=chunk), whole,
                                   rtol=1e-12, atol=1e-12)
    # torch input (float32) gives the same matrix up to float32 rounding of the inputs
    t = complete_linkage_between_clusters(torch.as_tensor(z, dtype=torch.float32), torch.as_tensor(labels))
    np.testing.assert_allclose(t, ref, rtol=1e-5)
    assert np.array_equal(whole, whole.T) and np.all(np.diag(whole) == 0)


def test_complete_linkage_blocks_respect_the_memory_bound(monkeypatch):
    rng = np.random.default_rng(3)
    z, labels = rng.normal(size=(120, 3)), rng.integers(0, 4, 120)
    seen = []
    real = torch.cdist

    def spy(a, b, *args, **kwargs):
        seen.append((a.shape[0], b.shape[0], a.dtype))
        return real(a, b, *args, **kwargs)

    monkeypatch.setattr(torch, "cdist", spy)
    d = complete_linkage_between_clusters(z, labels, max_block_bytes=8 * 120 * 10)  # 10 rows × 120 float64
    assert seen and all(rows * cols * 8 <= 8 * 120 * 10 for rows, cols, _ in seen)
    assert len(seen) == 12 and sum(r for r, _, _ in seen) == 120  # every row once, in chunks of 10
    np.testing.assert_allclose(d, _brute_force_complete(z, labels, 4), rtol=1e-12)


def test_complete_linkage_rejects_an_empty_cluster_and_the_tree_compacts_ids():
    rng = np.random.default_rng(4)
    z = rng.normal(size=(30, 2))
    labels = np.repeat([0, 2, 5], 10)
    with pytest.raises(ValueError, match="no points"):
        complete_linkage_between_clusters(z, labels)
    res = complete_linkage_cluster_tree(z, labels)
    assert res.extra["cluster_ids"].tolist() == [0, 2, 5]
    assert res.labels.tolist() == np.repeat([0, 1, 2], 10).tolist()
    h = res.hierarchy
    assert h.n_leaves == 3 and h.leaf_of is not None and np.array_equal(h.leaf_of, res.labels)
    # complete linkage over the clusters: the first merge is the closest pair (in max distance),
    # the root's height is the largest cross-cluster distance (= diameter across clusters)
    d = _brute_force_complete(z, res.labels, 3)
    z_tree = h.to_linkage()
    off = d + np.diag([np.inf] * 3)
    assert z_tree[0, 2] == pytest.approx(off.min()) and z_tree[-1, 2] == pytest.approx(d.max())
    assert sorted(z_tree[0, :2].astype(int).tolist()) == sorted(np.unravel_index(off.argmin(), d.shape))
    assert np.all(np.diff(z_tree[:, 2]) >= 0)


def test_cluster_tree_is_the_top_of_point_level_complete_linkage_for_separated_clusters():
    from hiclust.baselines import truncate_linkage

    rng = np.random.default_rng(5)
    centers = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 15.0], [40.0, 40.0]])
    labels = np.repeat(np.arange(4), 15)
    z = centers[labels] + rng.normal(scale=0.3, size=(60, 2))
    point_labels, top = truncate_linkage(scipy_linkage(z, "complete"), 4)  # recovers the blobs
    res = complete_linkage_cluster_tree(z, labels)
    assert np.array_equal(np.unique(np.stack([point_labels, res.labels]), axis=1).shape, (2, 4))
    np.testing.assert_allclose(res.hierarchy.to_linkage()[:, 2], np.sort(top[:, 2]), rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# metrics of a DeepECT-like model
# ----------------------------------------------------------------------------------------------
def test_metrics_of_a_model_with_leaf_labels_use_the_leaves():
    # 4 leaves: {0, 1} under one node, {2, 3} under the other. Each leaf is pure; the flat
    # partition into 2 (the tree cut at 2 clusters) mixes the classes.
    h = Hierarchy.from_linkage([[0, 1, 1.0, 2], [2, 3, 1.0, 2], [4, 5, 2.0, 4]])
    leaves = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    y = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    flat = h.cut(n_clusters=2)[leaves]
    model = SimpleNamespace(labels_=flat, leaf_labels_=leaves, hierarchy_=h)
    m = bench._model_metrics(y, model)
    dp_leaves = dendrogram_purity(y, h.to_linkage(), leaf_of=leaves)
    dp_labels = dendrogram_purity(y, h.to_linkage(), leaf_of=flat)  # what treating labels_ as leaves gives
    assert dp_leaves == pytest.approx(8 / 12) and dp_labels == pytest.approx(0.5)
    assert m["dp"] == pytest.approx(dp_leaves) and m["dp"] != pytest.approx(dp_labels)
    assert m["leaf_purity"] == 1.0 and leaf_purity(y, flat) == 0.5
    assert m["n_leaves"] == 4
    ref = evaluate(y, flat)
    assert (m["nmi"], m["acc"], m["ari"]) == (ref["nmi"], ref["acc"], ref["ari"])  # flat metrics on labels_
    # a model without leaf_labels_ keeps the old behaviour: leaves = its clusters
    flat_model = SimpleNamespace(labels_=leaves, hierarchy_=h)
    m2 = bench._model_metrics(y, flat_model)
    assert m2["dp"] == pytest.approx(dp_leaves) and "leaf_purity" not in m2


# ----------------------------------------------------------------------------------------------
# CC + L2H
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits200():
    from hiclust.data import load_dataset

    return load_dataset("digits", split="all").subset(np.arange(200))


def test_cc_l2h_tree_has_cc_clusters_as_leaves(digits200, tmp_path):
    cache: dict = {}
    kw = dict(seed=0, device="cpu", verbose=False, out=tmp_path, cache=cache,
              overrides={"cc": {"epochs": 6, "batch_size": 64}})
    cc = bench._run_one("cc", digits200, 10, **kw)
    row = bench._run_one("cc+l2h", digits200, 10, **kw)
    assert row["method"] == "cc_l2h" and row["name"] == "CC + L2H"
    assert row["reused_model"] is True and row["params"] == cc["params"]  # CC trained once for both rows
    assert row["seconds"] >= cc["seconds"] and row["posthoc_seconds"] > 0
    (model, _), = [v for k, v in cache.items() if k.startswith("model:")]
    y = digits200.labels.numpy()
    proba = model.predict_proba(digits200)
    h = Hierarchy.from_logits(np.log(np.clip(proba, 1e-12, None)))
    assert h.n_leaves == 10 and h.source == "l2h"  # leaves = CC's K clusters
    assert np.unique(model.labels_).size > 2  # a non-trivial partition, so the tree matters
    assert np.array_equal(proba.argmax(1), model.labels_)
    assert row["dp"] == pytest.approx(dendrogram_purity(y, h.to_linkage(), leaf_of=model.labels_), abs=1e-12)
    assert row["dp"] == pytest.approx(h.with_points(model.labels_, y).dendrogram_purity(), abs=1e-12)
    ref = evaluate(y, model.labels_)
    assert (row["nmi"], row["acc"]) == (cc["nmi"], cc["acc"]) == (ref["nmi"], ref["acc"])


# ----------------------------------------------------------------------------------------------
# the hierarchical table
# ----------------------------------------------------------------------------------------------
def _records() -> list[dict]:
    rows = []
    values = {  # method: [(dp, nmi, acc, seconds) for seed 0, seed 1]
        "deepect": [(0.80, 0.81, 0.84, 100.0), (0.84, 0.79, 0.80, 110.0)],
        "idec_complete": [(0.41, 0.85, 0.86, 50.0), (0.38, 0.87, 0.83, 70.0)],
        "cc_l2h": [(0.90, 0.91, 0.95, 30.0), (0.92, 0.93, 0.96, 31.0)],
        "kmeans": [(None, 0.50, 0.55, 2.0), (None, 0.52, 0.54, 2.0)],
    }
    for seed in (0, 1):
        for method, per_seed in values.items():
            dp, nmi, acc, seconds = per_seed[seed]
            rows.append({"method": method, "name": bench.DISPLAY_NAMES[method], "dataset": "mnist", "seed": seed,
                         "dp": dp, "nmi": nmi, "acc": acc, "ari": 0.5, "seconds": seconds})
    return rows


def _md_rows(md: str) -> dict[str, list[str]]:
    out = {}
    for line in md.splitlines():
        if line.startswith("| ") and not line.startswith("| Method") and not line.startswith("| ---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out[cells[0].replace("\\*", "*")] = cells[1:]
    return out


def test_hierarchical_table_means_stds_and_published_numbers(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _records()))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    md = bench.format_hierarchical_markdown(rows, "mnist", title="**mnist**")
    assert "| Method | DP | NMI | ACC | Time (s) | DP (paper) | NMI (paper) | ACC (paper) |" in md
    cells = _md_rows(md)
    assert list(cells) == ["DeepECT", "IDEC (agglomerative complete*)", "CC + L2H", "k-means"]  # first-seen order
    for method, name in (("deepect", "DeepECT"), ("idec_complete", "IDEC (agglomerative complete*)"),
                         ("cc_l2h", "CC + L2H")):
        mine = [r for r in rows if r["method"] == method]
        for col, key, digits in ((0, "dp", 3), (1, "nmi", 3), (2, "acc", 3), (3, "seconds", 1)):
            v = np.array([r[key] for r in mine])
            assert cells[name][col] == f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"
    assert cells["DeepECT"][:4] == ["0.820 ± 0.028", "0.800 ± 0.014", "0.820 ± 0.028", "105.0 ± 7.1"]
    assert cells["DeepECT"][4:] == ["0.82", "0.83", "0.85"]  # published MNIST numbers beside
    assert cells["IDEC (agglomerative complete*)"][4:] == ["0.40", "0.86", "0.85"]
    assert cells["CC + L2H"][4:] == ["–", "–", "–"]  # not in the paper
    assert cells["k-means"][0] == "–"  # flat: no DP
    # one seed: the value alone
    one = _md_rows(bench.format_hierarchical_markdown([r for r in rows if r["seed"] == 1], "mnist"))
    assert one["DeepECT"][:4] == ["0.840", "0.790", "0.800", "110.0"]
    # Fashion-MNIST has its own published numbers; other datasets none
    fm = _md_rows(bench.format_hierarchical_markdown(rows, "fashion-mnist"))
    assert fm["DeepECT"][4:] == ["0.47", "0.60", "0.52"]
    assert _md_rows(bench.format_hierarchical_markdown(rows, "digits"))["DeepECT"][4:] == ["–", "–", "–"]
    # CSV: separate mean and std columns
    table = {r["method"]: r for r in csv.DictReader(bench.format_hierarchical_csv(rows, "mnist").splitlines())}
    assert float(table["idec_complete"]["dp_mean"]) == pytest.approx(0.395)
    assert float(table["idec_complete"]["dp_std"]) == pytest.approx(np.std([0.41, 0.38], ddof=1), rel=1e-5)
    assert float(table["idec_complete"]["seconds_mean"]) == pytest.approx(60.0)
    assert table["idec_complete"]["paper_dp"] == "0.4" and table["cc_l2h"]["paper_dp"] == ""
    assert table["kmeans"]["dp_mean"] == "" and table["deepect"]["n_seeds"] == "2"
    assert table["deepect"]["seeds"] == "0 1"


# ----------------------------------------------------------------------------------------------
# end to end
# ----------------------------------------------------------------------------------------------
_TINY = {
    "deepect": ["pretrain_epochs=1", "epochs=2", "grow_interval=1", "max_leaves=12", "hidden_dims=[16]", "n_init=1"],
    "deepect_aug": ["pretrain_epochs=1", "epochs=2", "grow_interval=1", "max_leaves=12", "hidden_dims=[16]",
                    "n_init=1"],
    "dec": ["pretrain_epochs=1", "hidden_dims=[16]", "n_init=1"],  # the shared autoencoder (ae_bisecting)
    "idec": ["pretrain_epochs=1", "hidden_dims=[16]", "n_init=1", "epochs=1"],
    "cohiclust": ["epochs=6", "pretrain_epochs=0", "prune_start=0", "batch_size=512"],
    "cc": ["epochs=1", "batch_size=256"],
    "cc+l2h": ["batch_size=512"],  # the row's own override wins over cc's
}


def test_bench_cli_hierarchical_table_end_to_end(tmp_path, capsys):
    from hiclust.cli import main

    out = tmp_path / "hier"
    sets = [arg for method, kvs in _TINY.items() for kv in kvs for arg in ("--set", f"{method}.{kv}")]
    rc = main(["bench", "--table", "hierarchical", "--dataset", "digits", "--seeds", "0,1", "--out", str(out),
               "--device", "cpu", *sets])
    assert rc == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    methods = list(bench.HIERARCHICAL_METHODS)
    assert [(r["method"], r["seed"]) for r in rows] == [(m, s) for s in (0, 1) for m in methods]
    by = {(r["method"], r["seed"]): r for r in rows}
    for r in rows:
        assert 0 < r["dp"] <= 1 and 0 <= r["acc"] <= 1 and r["seconds"] > 0 and r["n_samples"] == 1797
    assert by[("deepect_aug", 0)]["params"]["augmentation"] == "affine"
    assert by[("deepect", 0)]["params"].get("augmentation") is None
    assert "leaf_purity" in by[("deepect", 0)] and by[("deepect", 0)]["n_leaves"] >= 2
    assert by[("idec_complete", 1)]["seconds"] >= by[("idec_complete", 1)]["pretrain_seconds"] > 0
    assert by[("ae_bisecting", 0)]["seconds"] >= by[("ae_bisecting", 0)]["pretrain_seconds"] > 0
    assert by[("cc_l2h", 0)]["params"]["batch_size"] == 512 and by[("cc_l2h", 0)]["params"]["epochs"] == 1
    assert by[("deepect", 0)]["acc"] != by[("deepect", 1)]["acc"]  # the seeds differ
    assert (out / "autoencoder_seed0.pt").is_file() and (out / "autoencoder_seed1.pt").is_file()

    md = (out / "table.md").read_text()
    title = md.splitlines()[0]
    assert "digits" in title and "N = 1797" in title and "seeds 0, 1" in title and "device cpu" in title
    assert "same images" in title and "train+test" in title
    cells = _md_rows(md)
    assert list(cells) == [bench.DISPLAY_NAMES[m] for m in methods]
    for name, row in cells.items():
        assert all(" ± " in c for c in row[:4]), (name, row)
        assert row[4:] == ["–", "–", "–"]  # no published numbers for digits
    dp = [by[("cohiclust", s)]["dp"] for s in (0, 1)]
    assert cells["CoHiClust"][0] == f"{np.mean(dp):.3f} ± {np.std(dp, ddof=1):.3f}"
    table = list(csv.DictReader((out / "table.csv").open()))
    assert [r["method"] for r in table] == methods and all(r["n_seeds"] == "2" for r in table)
    assert float(table[2]["acc_mean"]) == pytest.approx(np.mean([by[("idec_complete", s)]["acc"] for s in (0, 1)]),
                                                        rel=1e-5)


def test_bench_flat_table_with_seeds_and_bad_arguments(tmp_path, capsys):
    from hiclust.cli import main

    out = tmp_path / "flat"
    assert main(["bench", "--dataset", "digits", "--methods", "kmeans", "--seeds", "0,1", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["seed"] for r in rows] == [0, 1]
    # several seeds: one summary line per method (mean ± std, worst seed), then every run
    table = list(csv.DictReader((out / "table.csv").open()))
    assert [(r["method"], r["n_seeds"], r["seeds"]) for r in table] == [("kmeans", "2", "0 1")]
    accs = [r["acc"] for r in rows]
    assert float(table[0]["acc_mean"]) == pytest.approx(np.mean(accs), abs=1e-5)
    assert float(table[0]["acc_std"]) == pytest.approx(np.std(accs, ddof=1), abs=1e-5)
    assert int(table[0]["worst_seed"]) == rows[int(np.argmin(accs))]["seed"]
    md = (out / "table.md").read_text()
    assert f"| k-means | {np.mean([r['nmi'] for r in rows]):.3f} ± " in md
    assert "| k-means (seed 0) |" in md and "| k-means (seed 1) |" in md and "Incomplete" not in md
    capsys.readouterr()
    assert main(["bench", "--dataset", "digits", "--seeds", "0,x", "--out", str(out)]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert bench._parse_overrides(["cc+l2h.epochs=3"]) == {"cc_l2h": {"epochs": 3}}
    with pytest.raises(ValueError, match="unknown method"):
        bench.run_bench("digits", ["cc-l2h"], Path(tmp_path / "x"))
