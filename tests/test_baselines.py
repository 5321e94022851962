"""Classical baselines (hiclust.baselines) against scikit-learn / SciPy, and ``hiclust bench``."""

import csv
import json

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.metrics import adjusted_rand_score

from hiclust import baselines as B
from hiclust.metrics import dendrogram_purity


@pytest.fixture(scope="module")
def digits():
    from hiclust.data import load_dataset

    return load_dataset("digits")


def _same_partition(a, b):
    return adjusted_rand_score(a, b) == pytest.approx(1.0)


def test_as_features_scales_images_and_keeps_features(digits):
    x = B.as_features(digits)
    assert x.shape == (len(digits), 64)
    np.testing.assert_allclose(x[0], digits.images[0].flatten().numpy() / 255.0)
    f = np.random.default_rng(0).normal(size=(10, 3))
    np.testing.assert_array_equal(B.as_features(f.astype(np.float32)), f.astype(np.float32))


@pytest.mark.parametrize("k", [1, 2, 5, 9])
def test_truncate_linkage_cuts_the_top_merges(k):
    x = np.random.default_rng(k).normal(size=(40, 3))
    z = linkage(x, "average")
    labels, top = B.truncate_linkage(z, k)
    assert np.unique(labels).size == k and top.shape == (k - 1, 4)
    assert _same_partition(labels, fcluster(z, k, criterion="maxclust"))
    # the heights of the top tree are the heights of the k−1 last merges; counts add up
    np.testing.assert_allclose(np.sort(top[:, 2]), np.sort(z[len(z) - (k - 1):, 2]))
    if k > 1:
        assert top[-1, 3] == 40
        assert np.array_equal(np.bincount(labels), np.bincount(labels, minlength=k))


@pytest.mark.parametrize("method", ["ward", "average", "complete"])
def test_agglomerative_matches_sklearn(digits, method):
    from sklearn.cluster import AgglomerativeClustering

    sub = digits.subset(np.arange(300))
    res = B.agglomerative(sub, 10, linkage=method)
    ref = AgglomerativeClustering(n_clusters=10, linkage=method).fit(B.as_features(sub))
    assert _same_partition(res.labels, ref.labels_)
    assert res.hierarchy.n_leaves == 10 and res.linkage.shape == (299, 4)
    y = sub.labels.numpy()
    # DP over the tree of clusters = DP of the point tree in which each cluster is collapsed to a leaf
    dp = res.hierarchy.dendrogram_purity(y)
    assert dp == pytest.approx(dendrogram_purity(y, res.hierarchy.to_linkage(), leaf_of=res.labels))
    assert 0 < dp <= 1


def test_flat_baselines_match_sklearn(digits):
    from sklearn.cluster import KMeans

    x = B.as_features(digits)
    km = B.kmeans(digits, 10, random_state=3)
    assert np.array_equal(km.labels, KMeans(10, n_init=10, random_state=3).fit(x).labels_)
    assert km.hierarchy is None
    labels, hierarchy = km  # tuple-style unpacking
    assert labels is km.labels and hierarchy is None
    sp = B.spectral(digits, 10)
    assert np.unique(sp.labels).size == 10
    nm = B.nmf(digits, 10)
    assert nm.labels.shape == (len(digits),) and nm.labels.max() < 10
    with pytest.raises(ValueError, match="non-negative"):
        B.nmf(np.random.default_rng(0).normal(size=(20, 4)), 2)


def test_baselines_on_digits_reach_known_accuracy(digits):
    from hiclust.metrics import clustering_accuracy

    y = digits.labels.numpy()
    # scikit-learn's documented k-means/agglomerative quality on raw digits pixels (~0.79 / ~0.84 ACC)
    assert clustering_accuracy(y, B.kmeans(digits, 10).labels) >= 0.75
    assert clustering_accuracy(y, B.agglomerative(digits, 10).labels) >= 0.8
    bk = B.bisecting_kmeans(digits, 10)
    assert bk.hierarchy.n_leaves == 10 and clustering_accuracy(y, bk.labels) >= 0.6


def test_run_baseline_names_and_errors(digits):
    sub = digits.subset(np.arange(100))
    assert set(B.BASELINES) >= {"kmeans", "spectral", "nmf", "agglomerative_ward", "agglomerative_average",
                                "agglomerative_complete", "bisecting_kmeans"}
    res = B.run_baseline("agglomerative_complete", sub, 4)
    assert res.method == "agglomerative_complete" and np.unique(res.labels).size == 4
    with pytest.raises(ValueError, match="unknown baseline"):
        B.run_baseline("dbscan", sub, 4)
    with pytest.raises(ValueError, match="n_clusters"):
        B.kmeans(sub, 101)


def test_autoencoder_baseline_uses_pretraining_only(digits):
    sub = digits.subset(np.arange(256))
    res = B.run_baseline("ae_kmeans", sub, 5, feature_params=dict(
        pretrain_epochs=2, hidden_dims=(16, 16), batch_size=64, n_init=2, verbose=False, device="cpu"))
    assert res.labels.shape == (256,) and res.extra["feature_seconds"] > 0
    feats, model = B.autoencoder_features(sub, n_clusters=5, pretrain_epochs=2, hidden_dims=(16, 16), batch_size=64,
                                          n_init=2, verbose=False, device="cpu")
    assert feats.shape == (256, 10) and model.n_iter_ == 0
    assert not any(h["phase"] == "cluster" and "kl" in h for h in model.history_)


def test_bench_cli_writes_tables(tmp_path, capsys):
    from hiclust.cli import main

    out = tmp_path / "bench"
    rc = main(["bench", "--dataset", "digits", "--methods", "kmeans,agglomerative_ward,dec", "--out", str(out),
               "--device", "cpu", "--set", "dec.pretrain_epochs=2", "--set", "dec.epochs=1",
               "--set", "dec.hidden_dims=[32, 32]", "--set", "dec.n_init=2"])
    assert rc == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["method"] for r in rows] == ["kmeans", "agglomerative_ward", "dec"]
    assert rows[0]["dp"] is None and 0 < rows[1]["dp"] <= 1
    assert rows[2]["params"]["pretrain_epochs"] == 2 and rows[2]["params"]["hidden_dims"] == [32, 32]
    md = (out / "table.md").read_text()
    assert "| Method | NMI | ACC | ARI | DP | Time (s) |" in md and "| k-means |" in md and "| DEC |" in md
    table = list(csv.DictReader((out / "table.csv").open()))
    assert len(table) == 3 and float(table[1]["acc"]) == pytest.approx(rows[1]["acc"], rel=1e-5)
    assert main(["bench", "--dataset", "digits", "--methods", "dbscan", "--out", str(out)]) == 2
    assert "unknown method" in capsys.readouterr().err
