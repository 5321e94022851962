"""DEC/IDEC: the lecture's loss formulas transcribed term by term, and the estimators on digits."""

import math

import numpy as np
import pytest
import torch

from hiclust.losses import (
    alpha_schedule,
    balance_kl,
    combine_losses,
    kl_divergence,
    kmeans_loss,
    knn_graph,
    locality_loss,
    self_augmentation_loss,
    student_t_assignment,
    target_distribution,
    zipf_prior,
)
from hiclust.methods.dec import DEC, IDEC, ConvAutoEncoder

G = torch.Generator().manual_seed(0)


def _rand(*shape):
    return torch.randn(*shape, generator=G, dtype=torch.float64)


def _stochastic(n, k):
    return torch.softmax(_rand(n, k) * 2, 1)


# ----------------------------------------------------------------------------- formulas
@pytest.mark.parametrize("nu", [1.0, 2.5])
def test_student_t_equals_formula(nu):
    z, mu = _rand(7, 3), _rand(4, 3)
    expected = torch.empty(7, 4, dtype=torch.float64)
    for i in range(7):
        kernel = [(1 + float(((z[i] - mu[j]) ** 2).sum()) / nu) ** (-(nu + 1) / 2) for j in range(4)]
        for j in range(4):
            expected[i, j] = kernel[j] / sum(kernel)
    torch.testing.assert_close(student_t_assignment(z, mu, nu), expected)


def test_student_t_is_finite_far_away_and_prefers_the_nearest_centroid():
    z = torch.tensor([[1e6, 0.0], [0.1, 0.0]])
    mu = torch.tensor([[0.0, 0.0], [1e6 + 1, 0.0]])
    q = student_t_assignment(z, mu)
    assert torch.isfinite(q).all()
    assert q.argmax(1).tolist() == [1, 0]


def test_target_distribution_equals_formula():
    q = _stochastic(6, 3)
    f = [float(q[:, j].sum()) for j in range(3)]
    expected = torch.empty_like(q)
    for i in range(6):
        denom = sum(float(q[i, j]) ** 2 / f[j] for j in range(3))
        for j in range(3):
            expected[i, j] = (float(q[i, j]) ** 2 / f[j]) / denom
    p = target_distribution(q)
    torch.testing.assert_close(p, expected)
    assert not p.requires_grad
    # sharper than Q: the confident assignments get more confident
    assert (p.max(1).values >= q.max(1).values - 1e-12).float().mean() > 0.5


def test_kl_equals_formula_nonnegative_and_zero_iff_equal():
    p, q = _stochastic(5, 4), _stochastic(5, 4)
    expected = sum(float(p[i, j]) * math.log(float(p[i, j]) / float(q[i, j])) for i in range(5) for j in range(4))
    assert kl_divergence(p, q, reduction="sum").item() == pytest.approx(expected)
    assert kl_divergence(p, q).item() == pytest.approx(expected / 5)
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        a = torch.softmax(torch.randn(8, 5, generator=g) * 3, 1)
        b = torch.softmax(torch.randn(8, 5, generator=g) * 3, 1)
        assert kl_divergence(a, b).item() >= 0
    assert kl_divergence(p, p).item() == pytest.approx(0.0, abs=1e-12)
    # zeros in P contribute nothing (0·log 0 = 0)
    hard = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert kl_divergence(hard, hard).item() == 0.0


def test_kmeans_loss_hard_and_soft():
    z, mu = _rand(6, 2), _rand(3, 2)
    d2 = torch.tensor([[float(((z[i] - mu[k]) ** 2).sum()) for k in range(3)] for i in range(6)], dtype=torch.float64)
    assert kmeans_loss(z, mu, reduction="sum").item() == pytest.approx(float(d2.min(1).values.sum()))
    s = _stochastic(6, 3)
    assert kmeans_loss(z, mu, s).item() == pytest.approx(float((s * d2).sum(1).mean()))


def test_zipf_prior_and_balance_kl():
    f = zipf_prior(4, s=1.0)
    assert f.sum().item() == pytest.approx(1.0)
    assert (f[0] / f[1]).item() == pytest.approx(2.0) and (f[0] / f[2]).item() == pytest.approx(3.0)
    torch.testing.assert_close(zipf_prior(3, s=0.0), torch.full((3,), 1 / 3))
    # uniform: 0 for balanced use, KL(G‖U) by the formula otherwise
    balanced = torch.full((6, 3), 1 / 3, dtype=torch.float64)
    assert balance_kl(balanced).item() == pytest.approx(0.0, abs=1e-12)
    q = _stochastic(6, 3)
    g = q.mean(0)
    expected = sum(float(g[k]) * math.log(float(g[k]) * 3) for k in range(3))
    assert balance_kl(q).item() == pytest.approx(expected)
    # zipf: compares sizes by rank, so any permutation of the Zipf sizes scores 0
    zipf_sizes = zipf_prior(3, s=1.0).double()
    q_zipf = zipf_sizes[[2, 0, 1]].repeat(5, 1)
    assert balance_kl(q_zipf, "zipf", zipf_s=1.0).item() == pytest.approx(0.0, abs=1e-7)
    assert balance_kl(q_zipf, "uniform").item() > 0.05
    with pytest.raises(ValueError, match="prior"):
        balance_kl(q, "normal")


def test_knn_graph_and_locality_loss_match_brute_force():
    x = torch.randn(30, 4, generator=G)
    idx, w = knn_graph(x, 3)
    d2 = torch.cdist(x, x) ** 2
    d2.fill_diagonal_(float("inf"))
    expected_idx = d2.argsort(1)[:, :3]
    assert torch.equal(idx.sort(1).values, expected_idx.sort(1).values)
    nd2 = torch.gather(d2, 1, idx)
    sigma2 = nd2.mean()
    torch.testing.assert_close(w, torch.exp(-nd2 / sigma2), rtol=1e-4, atol=1e-5)
    z = torch.randn(30, 2, generator=G, dtype=torch.float64)
    loss = locality_loss(z, z[idx], w.double())
    brute = sum(float(w[i, a]) * float(((z[i] - z[int(idx[i, a])]) ** 2).sum()) for i in range(30) for a in range(3)) / 30
    assert loss.item() == pytest.approx(brute)


def test_self_augmentation_loss():
    z = _rand(5, 3)
    assert self_augmentation_loss(z, 2 * z).item() == pytest.approx(-1.0)
    assert self_augmentation_loss(z, -z).item() == pytest.approx(1.0)
    other = _rand(5, 3)
    cos = [float(z[i] @ other[i]) / float(z[i].norm() * other[i].norm()) for i in range(5)]
    assert self_augmentation_loss(z, other).item() == pytest.approx(-sum(cos) / 5)


def test_alpha_schedules():
    assert alpha_schedule("pretrain_finetune", -1.0) == 0.0
    assert alpha_schedule("pretrain_finetune", 0.3) == 1.0
    assert alpha_schedule("joint", 0.7, alpha=0.25) == 0.25
    assert alpha_schedule("rising", 0.0, alpha_start=0.2, alpha_end=1.0) == pytest.approx(0.2)
    assert alpha_schedule("rising", 0.5, alpha_start=0.2, alpha_end=1.0) == pytest.approx(0.6)
    assert alpha_schedule("rising", 2.0, alpha_start=0.2, alpha_end=1.0) == pytest.approx(1.0)
    assert combine_losses(torch.tensor(2.0), torch.tensor(4.0), 0.25).item() == pytest.approx(3.5)
    with pytest.raises(ValueError, match="schedule"):
        alpha_schedule("cosine", 0.5)


def test_conv_autoencoder_round_trips_shapes():
    for size in (8, 28, 32):
        ae = ConvAutoEncoder(1, size, (4, 8, 8), embedding_dim=5)
        z, x_hat = ae(torch.rand(2, 1, size, size))
        assert z.shape == (2, 5) and x_hat.shape == (2, 1, size, size)


# ----------------------------------------------------------------------------- estimators
@pytest.fixture(scope="module")
def digits():
    from hiclust.data import load_dataset

    return load_dataset("digits")


SMALL = dict(hidden_dims=(256, 256, 512), batch_size=128, update_interval=20, verbose=False, device="cpu", n_init=5)


@pytest.fixture(scope="module")
def fitted_dec(digits):
    return DEC(n_clusters=10, pretrain_epochs=30, epochs=40, tol=0.01, **SMALL).fit(digits)


def test_dec_reaches_accuracy_on_digits_and_stops_on_tol(fitted_dec, digits):
    from hiclust.metrics import clustering_accuracy

    m = fitted_dec
    acc = clustering_accuracy(digits.labels.numpy(), m.labels_)
    assert acc >= 0.75, acc
    refreshes = [h for h in m.history_ if h["phase"] == "cluster"]
    total_steps = 40 * (len(digits) // 128)
    assert m.converged_ and m.n_iter_ < total_steps
    assert refreshes[-1]["stopped"] == "tol" and refreshes[-1]["delta_label"] < 0.01
    assert all(h["delta_label"] >= 0.01 for h in refreshes[1:-1])
    # refreshes happen every update_interval steps
    assert [h["step"] for h in refreshes] == [20 * i for i in range(len(refreshes))]
    q = m.predict_proba(digits)
    assert q.shape == (len(digits), 10)
    np.testing.assert_allclose(q.sum(1), 1.0, rtol=1e-5)
    assert np.array_equal(m.predict(digits), m.labels_)
    assert m.transform(digits).shape == (len(digits), 10)


def test_dec_with_tol_zero_runs_every_step(digits):
    sub = digits.subset(np.arange(300))
    m = DEC(n_clusters=5, pretrain_epochs=1, epochs=3, tol=0.0, **{**SMALL, "hidden_dims": (32, 32, 64)}).fit(sub)
    assert m.n_iter_ == 3 * (300 // 128) and not m.converged_
    assert m.history_[-1]["stopped"] == "epochs"


def test_idec_reaches_accuracy_on_digits(digits):
    from hiclust.metrics import clustering_accuracy

    m = IDEC(n_clusters=10, pretrain_epochs=30, epochs=10, tol=0.002, **SMALL).fit(digits)
    assert clustering_accuracy(digits.labels.numpy(), m.labels_) >= 0.75
    # IDEC keeps the decoder: the reconstruction term is trained in the clustering phase
    assert any("reconstruction" in h for h in m.history_ if h["phase"] == "cluster")


def test_loss_components_enter_the_objective(digits):
    sub = digits.subset(np.arange(256))
    m = DEC(
        n_clusters=4, pretrain_epochs=1, epochs=1, schedule="rising", alpha_start=0.2, kmeans_weight=0.1,
        balance_weight=0.1, balance_prior="zipf", locality_weight=0.01, n_neighbors=3, augmentation="digits",
        self_augmentation_weight=0.5, **{**SMALL, "hidden_dims": (16, 16, 16), "update_interval": 1},
    ).fit(sub)
    pre = [h for h in m.history_ if h["phase"] == "pretrain"][0]
    clu = [h for h in m.history_ if h["phase"] == "cluster" and "kl" in h]
    assert {"reconstruction", "locality", "self_augmentation"} <= set(pre)
    assert {"kl", "kmeans", "balance", "reconstruction", "locality"} <= set(clu[0])
    # rising α: the first step weighs L_c by 0.2 and L_n by 0.8
    first = clu[0]
    l_c = first["kl"] + 0.1 * first["kmeans"] + 0.1 * first["balance"]
    l_n = first["reconstruction"] + 0.01 * first["locality"] + 0.5 * first["self_augmentation"]
    assert first["loss"] == pytest.approx(0.2 * l_c + 0.8 * l_n, rel=1e-4)


def test_save_load_and_resume(tmp_path, digits):
    sub = digits.subset(np.arange(400))
    params = dict(n_clusters=5, pretrain_epochs=3, epochs=4, tol=0.0, **{**SMALL, "hidden_dims": (32, 32, 64), "update_interval": 2})
    full = DEC(**params).fit(sub)
    ck = tmp_path / "ck.pt"
    seen = []

    def interrupt(record):
        seen.append(record)
        if record["phase"] == "cluster" and record.get("refresh") == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        DEC(**params).fit(sub, checkpoint=ck, checkpoint_every=1, callback=interrupt)
    resumed = DEC(**params).fit(sub, checkpoint=ck, checkpoint_every=1, resume=True)
    assert np.array_equal(resumed.labels_, full.labels_)
    np.testing.assert_allclose(resumed.cluster_centers_, full.cluster_centers_, rtol=1e-5, atol=1e-6)
    assert [h.get("refresh") for h in resumed.history_] == [h.get("refresh") for h in full.history_]
    full.save(tmp_path / "model.pt")
    loaded = DEC.load(tmp_path / "model.pt", device="cpu")
    assert np.array_equal(loaded.predict(sub), full.predict(sub))
    with pytest.raises(Exception, match="DEC"):
        IDEC.load(tmp_path / "model.pt")


def test_check_params_rejects_bad_settings(digits):
    sub = digits.subset(np.arange(50))
    with pytest.raises(ValueError, match="n_clusters"):
        DEC(n_clusters=60).check_params(sub)
    with pytest.raises(ValueError, match="batch_size"):
        DEC(batch_size=64).check_params(sub)
    with pytest.raises(ValueError, match="augmentation"):
        DEC(batch_size=10, self_augmentation_weight=1.0).check_params(sub)
    with pytest.raises(ValueError, match="alpha"):
        DEC(batch_size=10, alpha=0.5).check_params(sub)
    with pytest.raises(ValueError, match="conv"):
        DEC(batch_size=10, backbone="conv").check_params(np.random.rand(50, 8).astype(np.float32))
    with pytest.raises(ValueError, match="tol"):
        IDEC(batch_size=10, tol=2.0).check_params(sub)


def test_resume_with_more_epochs_continues_the_clustering_phase(digits, tmp_path):
    sub = digits.subset(np.arange(256))
    params = dict(n_clusters=4, pretrain_epochs=1, tol=0.0, **{**SMALL, "hidden_dims": (16, 16), "update_interval": 2})
    ck = tmp_path / "ck.pt"
    short = DEC(epochs=2, **params).fit(sub, checkpoint=ck)
    assert short.n_iter_ == 4 and short.history_[-1]["stopped"] == "epochs"
    longer = DEC(epochs=4, **params).fit(sub, checkpoint=ck, resume=True)
    assert longer.n_iter_ == 8 and longer.history_[-1]["stopped"] == "epochs"
    steps = [h["step"] for h in longer.history_ if h["phase"] == "cluster"]
    assert steps == [0, 2, 4, 6, 8]
    # a run that already reached its epochs is not trained further when resumed unchanged
    again = DEC(epochs=4, **params).fit(sub, checkpoint=ck, resume=True)
    assert again.n_iter_ == 8 and np.array_equal(again.labels_, longer.labels_)


def test_pretrained_autoencoder_is_reused(digits, tmp_path):
    sub = digits.subset(np.arange(300))
    params = dict(n_clusters=5, **{**SMALL, "hidden_dims": (32, 32), "update_interval": 2})
    ae = DEC(pretrain_epochs=3, epochs=0, **params).fit(sub)
    assert ae.n_iter_ == 0
    ae.save(tmp_path / "ae.pt")
    # same architecture: no pre-training, the k-means start equals the saved model's
    reuse = IDEC(pretrained=str(tmp_path / "ae.pt"), pretrain_epochs=50, epochs=0, **params).fit(sub)
    assert not any(h["phase"] == "pretrain" for h in reuse.history_)
    assert reuse.history_[0]["phase"] == "pretrained" and reuse.history_[0]["pretrain_epochs"] == 3
    assert np.array_equal(reuse.init_labels_, ae.init_labels_)
    np.testing.assert_allclose(reuse.transform(sub), ae.transform(sub), rtol=1e-5, atol=1e-6)
    with pytest.raises(Exception, match="hidden_dims"):
        DEC(pretrained=str(tmp_path / "ae.pt"), epochs=0, **{**params, "hidden_dims": (16, 16)}).fit(sub)
    with pytest.raises(FileNotFoundError):
        DEC(pretrained=str(tmp_path / "missing.pt"), **params).check_params(sub)
