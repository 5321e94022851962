"""CoHiClust on feature matrices: input-space mode (no network, neighbour + noise views), its
views, its choice under backbone='auto', its refusals and its persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hiclust import CoHiClust
from hiclust.data.features import NeighbourViews
from hiclust.methods.base import prepare_data
from hiclust.metrics import clustering_accuracy


def _blobs(seed: int = 0, sizes: tuple[int, ...] = (60, 100, 40), dim: int = 5, spread: float = 0.6):
    """Unequal Gaussian blobs 4 apart along different axes: (N, dim) float32 and labels."""
    rng = np.random.default_rng(seed)
    centres = 4.0 * np.eye(len(sizes), dim)
    x = np.concatenate([c + spread * rng.standard_normal((n, dim)) for c, n in zip(centres, sizes)])
    y = np.repeat(np.arange(len(sizes)), sizes)
    return x.astype(np.float32), y


def test_neighbour_views_shape_rows_and_per_sample_neighbours():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50, 4)
    neighbours = torch.stack([(torch.arange(50) + s) % 50 for s in (1, 2, 3)], dim=1)  # (50, 3)
    views = NeighbourViews(x, neighbours, noise=0.0)
    idx = torch.arange(50).repeat(20)  # each sample 20 times
    out = views(idx, generator=gen)
    assert out.shape == (2000, 4) and out.dtype == torch.float32
    torch.testing.assert_close(out[:1000], x[idx])  # first view: the row itself
    # Second view: one of the row's own neighbours, drawn per sample (all three occur).
    second = out[1000:]
    match = (second[:, None, :] == x[neighbours[idx]]).all(-1)  # (1000, 3)
    assert bool(match.any(1).all())
    assert set(match.float().argmax(1).tolist()) == {0, 1, 2}
    # Noise: zero-mean, standard deviation as asked, independent per coordinate.
    noisy = NeighbourViews(x, neighbours, noise=0.5)(torch.zeros(4000, dtype=torch.long), generator=gen)[:4000]
    eps = noisy - x[0]
    assert abs(float(eps.mean())) < 0.02 and abs(float(eps.std()) - 0.5) < 0.02
    with pytest.raises(ValueError, match="noise"):
        NeighbourViews(x, neighbours, noise=-1.0)
    with pytest.raises(ValueError, match="neighbours"):
        NeighbourViews(x, neighbours[:10])


def test_auto_backbone_is_the_input_space_below_1000_rows_only():
    model = CoHiClust(n_clusters=3)
    small, _ = _blobs()
    assert model._input_space(prepare_data(small))
    big = np.random.default_rng(0).standard_normal((1000, 5)).astype(np.float32)
    assert not model._input_space(prepare_data(big))
    assert CoHiClust(n_clusters=3, backbone="input")._input_space(prepare_data(big))
    assert not CoHiClust(n_clusters=3, backbone="mlp")._input_space(prepare_data(small))
    with pytest.raises(ValueError, match="feature matrices"):
        CoHiClust(n_clusters=3, backbone="input")._input_space(prepare_data(np.zeros((8, 1, 8, 8), np.uint8)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_input_space_mode_learns_unequal_blobs_on_every_seed(seed):
    x, y = _blobs(seed)
    # Only n_clusters and a short schedule: batch_size stays at its default 256 > N = 200.
    model = CoHiClust(n_clusters=3, epochs=30, random_state=seed, verbose=False, device="cpu").fit(x)
    assert model.backbone_ == "input"
    assert clustering_accuracy(y, model.labels_) >= 0.97
    assert model.hierarchy_.to_linkage().shape == (2, 4)
    first = model.history_[0]  # R1 is recorded but weighted 0; no NT-Xent in input-space mode
    assert first["balance"] > 0 and "nt_xent" not in first
    assert first["loss"] == pytest.approx(first["cohiloss"], abs=1e-6)


def test_mlp_mode_default_epochs_aim_at_about_600_steps():
    def epochs(n: int, k: int = 10, **kw) -> int:
        model = CoHiClust(n_clusters=k, **kw)
        data = prepare_data(np.zeros((n, 2), np.float32))
        resolved = model._epochs(data, model._input_space(data))
        model._schedule(model._input_space(data), resolved)  # a schedule that fits
        return resolved

    assert epochs(1797) == 86  # 7 steps of 256 per epoch: ceil(600 / 7)
    assert epochs(10_000) == 16  # 39 steps per epoch: ceil(600 / 39)
    assert epochs(70_000) == 16 == CoHiClust(n_clusters=10).feature_epochs(70_000)  # 273 steps per epoch: the floor
    model = CoHiClust(n_clusters=10)
    assert model._schedule(False, 16) == (4, 5, 6)  # a third pre-training; 1 tree epoch, 6 prunings, 4 after
    assert model._schedule(False, 8) == (4, 1, 1)  # 8 epochs: pre-training shortened to 1 for the 6 prunings + 1
    assert epochs(70_000, k=100) == 30  # 1 epoch of pre-training, 28 prunings, 1 epoch after them
    assert epochs(70_000, pretrain_epochs=12) == 19  # 12 + 6 prunings + 1, above the floor
    assert epochs(500) == 100 and epochs(70_000, epochs=7, k=4) == 7  # input-space mode; given value
    assert CoHiClust()._epochs(prepare_data(np.zeros((70_000, 1, 8, 8), np.uint8))) == 100  # images


def test_mlp_mode_learns_from_neighbour_views_and_names_the_feature_augmentations():
    x, y = _blobs(0, sizes=(300, 500, 400), dim=8, spread=1.2)
    model = CoHiClust(n_clusters=3, epochs=15, batch_size=64, random_state=0, verbose=False, device="cpu").fit(x)
    assert model.backbone_ == "mlp" and model._neighbour_views(prepare_data(x))
    assert clustering_accuracy(y, model.labels_) >= 0.97
    noise = CoHiClust(n_clusters=3, augmentation="noise")
    assert not noise._neighbour_views(prepare_data(x))
    with pytest.raises(ValueError, match="for a feature matrix use one of 'auto', 'neighbours', 'noise'"):
        CoHiClust(n_clusters=3, augmentation="simclr")._neighbour_views(prepare_data(x))
    with pytest.raises(ValueError, match="input-space mode"):
        CoHiClust(n_clusters=3, augmentation="noise", backbone="input")._neighbour_views(prepare_data(x))


def test_input_space_model_saves_loads_and_resumes(tmp_path):
    x, _ = _blobs(3, sizes=(40, 40, 40))
    params = dict(n_clusters=3, epochs=6, prune_start=2, verbose=False, device="cpu")
    full = CoHiClust(**params).fit(x)
    full.save(tmp_path / "m.pt")
    loaded = CoHiClust.load(tmp_path / "m.pt")
    assert loaded.backbone_ == "input" and not any(p.numel() for p in loaded.model_.backbone.parameters())
    np.testing.assert_array_equal(loaded.predict(x), full.predict(x))

    ck = tmp_path / "ck.pt"

    def stop_after_three(record):
        if record["epoch"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        CoHiClust(**params).fit(x, checkpoint=ck, checkpoint_every=1, callback=stop_after_three)
    resumed = CoHiClust(**params).fit(x, checkpoint=ck, checkpoint_every=1, resume=True)
    assert [h["epoch"] for h in resumed.history_] == list(range(1, 7))
    np.testing.assert_allclose(resumed.predict_proba(x), full.predict_proba(x), rtol=1e-4, atol=1e-5)


def test_feature_matrices_that_cannot_be_clustered_get_one_clear_error():
    x, _ = _blobs()
    with pytest.raises(ValueError, match=r"at least 2·K = 8 rows, got 7"):
        CoHiClust(n_clusters=4, verbose=False).fit(x[:7])
    with pytest.raises(ValueError, match="every column of the feature matrix is constant"):
        CoHiClust(n_clusters=2, verbose=False).fit(np.ones((20, 3), np.float32))
    bad = x.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values \(row 5 \(0-based\)\)"):
        CoHiClust(n_clusters=3, verbose=False).fit(bad)


def test_cohiclust_loss_without_projections_is_the_tree_terms_only():
    from hiclust.losses import cohiloss, tree_balance_loss
    from hiclust.losses.modules import CoHiClustLoss

    gen = torch.Generator().manual_seed(0)
    d_a, d_b = torch.rand(16, 3, generator=gen), torch.rand(16, 3, generator=gen)
    mask = torch.tensor([1.0, 1.0, 0.0, 1.0])
    terms = CoHiClustLoss(balance_weight=0.3)(None, None, d_a, d_b, leaf_mask=mask)
    assert set(terms) == {"cohiloss", "balance", "loss"}
    expected = cohiloss(d_a, d_b, mask) + 0.3 * tree_balance_loss(d_a, d_b, mask)
    torch.testing.assert_close(terms["loss"], expected)
    with pytest.raises(ValueError, match="projections"):
        CoHiClustLoss()(None, None)


def test_cli_refuses_backbone_input_on_images_in_one_line(tmp_path, capsys):
    from hiclust import cli

    rc = cli.main(["train", "--dataset", "digits", "--backbone", "input", "--n-clusters", "10",
                   "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--backbone input is for feature matrices" in err[0]
    assert not (tmp_path / "run").exists()


def test_neighbours_are_found_in_the_matrix_as_given_and_mixed_units_warn(monkeypatch):
    import hiclust.losses.dec as dec

    x, _ = _blobs(1)
    x[:, 0] *= 200.0  # one column in larger units: it should dominate the distances, as in k-means
    seen = []
    real = dec.knn_graph
    monkeypatch.setattr(dec, "knn_graph", lambda a, k: (seen.append(a.detach().cpu().clone()), real(a, k))[1])
    with pytest.warns(UserWarning, match=r"column 0 \(0-based\) \(sd [0-9.e+-]+, [0-9,]+× the median\) spreads more than 100 times as widely as the median .*pass neighbour_scale='standardized'") as caught:
        CoHiClust(n_clusters=3, epochs=2, verbose=False, device="cpu").fit(x)
    assert caught[0].filename == __file__  # the warning names the user's fit call, not library code
    centred = x - x.mean(0)
    torch.testing.assert_close(seen[0], torch.from_numpy(centred), rtol=1e-4, atol=1e-3)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # comparable columns: no warning
        model = CoHiClust(n_clusters=3, epochs=2, verbose=False, device="cpu").fit(_blobs(1)[0])
    with pytest.raises(ValueError, match=r"one row of shape \(\d+,\); pass X.reshape\(1, -1\)"):
        model.predict(_blobs(1)[0][0])
    assert model.predict(_blobs(1)[0][:1]).shape == (1,)


def test_neighbour_scale_standardized_finds_neighbours_in_unit_variance_columns(monkeypatch, tmp_path):
    """Columns in different units: with neighbour_scale='standardized' the neighbours are found
    in the standardized rows (no warning), so a wide noise column no longer decides them."""
    import warnings

    import hiclust.losses.dec as dec

    x, y = _blobs(1)
    rng = np.random.default_rng(3)
    x = np.hstack([x, 1000.0 * rng.normal(size=(len(x), 1))]).astype(np.float32)  # pure noise, wide units
    seen = []
    real = dec.knn_graph
    monkeypatch.setattr(dec, "knn_graph", lambda a, k: (seen.append(real(a, k)[0].cpu()), real(a, k))[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CoHiClust(n_clusters=3, epochs=2, verbose=False, device="cpu", neighbour_scale="standardized").fit(x)
    standardized = seen[0]  # the first search (later ones run in the whitened coordinates)
    seen.clear()
    with pytest.warns(UserWarning, match="neighbour_scale"):
        CoHiClust(n_clusters=3, epochs=2, verbose=False, device="cpu").fit(x)
    given = seen[0]
    agree = lambda nb: float((y[nb.numpy()] == y[:, None]).mean())  # neighbours of the row's own class
    # given: the noise column alone orders the distances, so about the classes' own shares agree
    assert agree(standardized) > 0.95 and agree(given) < 0.6
    expected, _ = real(torch.from_numpy((x - x.mean(0)) / x.std(0)), 10)
    assert (standardized == expected).float().mean() > 0.99  # the same up to ties of float rounding
    with pytest.raises(ValueError, match="neighbour_scale='standardized' has no neighbours to find"):
        CoHiClust(n_clusters=3, epochs=2, verbose=False, backbone="mlp", augmentation="noise", batch_size=32,
                  neighbour_scale="standardized").fit(x)
    with pytest.raises(ValueError, match="neighbour_scale='standardized' is for feature matrices"):
        CoHiClust(n_clusters=3, epochs=2, verbose=False, batch_size=4, neighbour_scale="standardized").fit(
            np.zeros((8, 1, 8, 8), dtype=np.uint8))
    # the command line names the flag (a fresh process: pytest records warnings instead of printing them)
    import os
    import subprocess
    import sys
    from pathlib import Path

    np.save(tmp_path / "x.npy", x)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "hiclust", "train", "--dataset", f"features:{tmp_path / 'x.npy'}",
                           "--n-clusters", "3", "--epochs", "2", "--tree-draws", "1", "--threads", "1",
                           "--out", str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=300)
    warned = [line for line in proc.stderr.splitlines() if "warning:" in line]
    assert proc.returncode == 0 and len(warned) == 1, proc.stderr
    assert warned[0].startswith("hiclust train: warning: feature column 5 (0-based)")  # the noise column
    assert warned[0].endswith("for columns in different units pass --neighbour-scale 'standardized'")


def test_the_scale_warning_lists_every_wide_column_against_the_true_median():
    """Five columns in larger units: the warning counts them, names the three widest (widest
    first) and compares with the true median sd (the mean of the two middle values of an even
    count, not the lower one)."""
    x, _ = _blobs(1)
    d = x.shape[1]
    x = np.hstack([x, np.random.default_rng(0).normal(size=(x.shape[0], 11))])  # an even count of columns
    x = x * np.array([1.0] * (d + 6) + [1000.0, 2000.0, 3000.0, 4000.0, 5000.0])
    d += 6
    with pytest.warns(UserWarning) as caught:
        CoHiClust(n_clusters=3, epochs=2, verbose=False, device="cpu").fit(x)
    message = str(next(w.message for w in caught if "feature columns" in str(w.message)))
    sd = (x - x.mean(0)).std(0)
    median = float(np.median(sd))
    assert message.startswith("5 feature columns spread more than 100 times")
    assert f"(sd {median:.3g})" in message
    widest = [message.index(f"{j} (0-based)") for j in (d + 4, d + 3, d + 2)]
    assert widest == sorted(widest)
    assert "and 2 more" in message and f"{d + 1} (0-based)" not in message


def test_train_says_the_epochs_steps_and_pre_training_it_fitted_to_a_feature_matrix(tmp_path, capsys):
    """A feature matrix of 1,100 rows (MLP mode) with no --epochs: the 'fitted to the data' line
    gives the epochs CoHiClust chose, the optimizer steps they make and the pre-training in them,
    and the run trains exactly that many epochs."""
    from hiclust import cli

    x, _ = _blobs(0, sizes=(400, 400, 300), dim=4, spread=1.0)
    np.save(tmp_path / "m.npy", x.astype(np.float32))
    assert cli.main(["train", "--dataset", f"features:{tmp_path / 'm.npy'}", "--n-clusters", "3", "--out",
                     str(tmp_path / "run"), "--device", "cpu", "--threads", "1"]) == 0
    err = capsys.readouterr().err
    # 4 batches of 256 per epoch: ceil(600 / 4) = 150, capped at 100 epochs; a third pre-training
    assert "--epochs 100 (400 optimizer steps, 33 of them pre-training)" in err
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert max(h["epoch"] for h in history) == 100


# ----------------------------------------------------------------------- whitened input space
def test_neighbour_whitening_matches_the_pairwise_covariance_computed_by_hand():
    from hiclust.data.features import neighbour_whitening

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((30, 4)) @ rng.standard_normal((4, 4))).float()
    neighbours = torch.from_numpy(rng.integers(0, 30, size=(30, 3)))
    for shrinkage in (0.0, 0.3):
        w, w_inv = neighbour_whitening(x, neighbours, shrinkage)
        assert w.shape == w_inv.shape == (4, 4) and w.dtype == torch.float32
        # Brute force: one outer product per (row, neighbour) pair.
        c = np.zeros((4, 4))
        for i in range(30):
            for j in neighbours[i].tolist():
                d = (x[i] - x[j]).double().numpy()
                c += np.outer(d, d)
        c /= 90
        c = (1 - shrinkage) * c + shrinkage * np.trace(c) / 4 * np.eye(4)
        # Whitened differences have identity covariance: Wᵀ C' W = I; and W⁻¹ inverts W.
        np.testing.assert_allclose(w.double().numpy().T @ c @ w.double().numpy(), np.eye(4), atol=1e-4)
        np.testing.assert_allclose((w @ w_inv).numpy(), np.eye(4), atol=1e-4)
    with pytest.raises(ValueError, match="shrinkage"):
        neighbour_whitening(x, neighbours, 1.5)


def test_neighbour_views_noise_follows_the_basis():
    basis = torch.tensor([[2.0, 0.0], [1.0, 0.5]])  # noise = g @ basis: covariance basisᵀ basis
    x = torch.zeros(3, 2)
    views = NeighbourViews(x, torch.tensor([[1], [2], [0]]), noise=0.5, noise_basis=basis)
    out = views(torch.zeros(20000, dtype=torch.long), generator=torch.Generator().manual_seed(0))
    assert out.shape == (40000, 2) and out.dtype == torch.float32
    cov = torch.cov(out.T)
    torch.testing.assert_close(cov, 0.25 * basis.T @ basis, atol=0.03, rtol=0.03)
    assert not torch.equal(out[0], out[1])  # drawn per sample
    with pytest.raises(ValueError, match="noise_basis"):
        NeighbourViews(x, torch.tensor([[1], [2], [0]]), noise_basis=torch.eye(3))


def test_input_space_fit_whitens_and_keeps_the_draw_of_least_within_cluster_spread():
    x, y = _blobs(1, sizes=(50, 80, 30))
    model = CoHiClust(n_clusters=3, epochs=20, tree_draws=3, random_state=1, verbose=False, device="cpu").fit(x)
    assert model.input_whitening_ and model.model_.backbone.whiten
    assert clustering_accuracy(y, model.labels_) >= 0.97
    w = model.model_.backbone.transform
    assert not torch.allclose(w, torch.eye(5))  # a real map, not the identity it starts as
    # The criterion recorded for the kept draw is k-means' criterion of the final partition in
    # the whitened coordinates, computed here by hand; and it is the smallest of the draws.
    z = ((torch.from_numpy(x) - model.feature_mean_) / model.feature_std_) @ w
    z, labels = z.double().numpy(), model.labels_
    by_hand = sum(((z[labels == c] - z[labels == c].mean(0)) ** 2).sum() for c in np.unique(labels)) / len(z)
    assert model.tree_draw_within_ss_[model.tree_draw_] == pytest.approx(by_hand, rel=1e-4)
    assert model.tree_draw_ == int(np.argmin(model.tree_draw_within_ss_))
    assert len(model.tree_draw_masses_) == 3


def test_input_space_models_saved_before_whitening_still_load(tmp_path):
    from hiclust.checkpoint import load_checkpoint, save_checkpoint

    x, _ = _blobs(3, sizes=(40, 40, 40))
    model = CoHiClust(n_clusters=3, epochs=6, prune_start=2, tree_draws=1, verbose=False, device="cpu").fit(x)
    model.save(tmp_path / "new.pt")
    whitened, w = model.predict_proba(x), model.model_.backbone.transform.clone()
    config, state = load_checkpoint(tmp_path / "new.pt", expected_class="CoHiClust")
    # What the same fit saved before: no whitening flag, no transform buffer (identity map).
    del state["input_whitening"]
    state["model"] = {k: v for k, v in state["model"].items() if k != "backbone.transform"}
    model.model_.backbone.set_transform(torch.eye(5))
    save_checkpoint(tmp_path / "old.pt", model_class="CoHiClust", config=config, state=state)
    old = CoHiClust.load(tmp_path / "old.pt")
    assert not old.input_whitening_ and not old.model_.backbone.whiten
    np.testing.assert_allclose(old.predict_proba(x), model.predict_proba(x), rtol=1e-5, atol=1e-6)
    new = CoHiClust.load(tmp_path / "new.pt")
    assert new.input_whitening_
    torch.testing.assert_close(new.model_.backbone.transform, w)
    np.testing.assert_array_equal(new.predict_proba(x), whitened)


def test_wide_matrices_keep_the_standardized_coordinates(monkeypatch):
    import hiclust.methods.cohiclust as cohiclust_module

    monkeypatch.setattr(cohiclust_module, "INPUT_SPACE_MAX_WHITEN_DIM", 4)  # the blobs have 5 columns
    x, y = _blobs(2)
    model = CoHiClust(n_clusters=3, epochs=30, tree_draws=1, random_state=2, verbose=False, device="cpu").fit(x)
    assert model.backbone_ == "input" and not model.input_whitening_
    assert not model.model_.backbone.whiten and not hasattr(model.model_.backbone, "transform")
    assert clustering_accuracy(y, model.labels_) >= 0.97
