"""The loss modules of hiclust.losses.modules: bit-identical to the pure-function expressions the
methods compute, hyperparameter checks, and the distributed gather (2 CPU processes, gloo).

The distributed case forks 2 ranks (``torch.multiprocessing.start_processes``, start method "fork",
so the ranks reuse the already imported torch and hiclust instead of starting up again) that join a
gloo process group over TCP on localhost. Each rank feeds its half of a global batch to every
module with ``gather_distributed=True`` and saves its loss terms and input gradients; the test
process compares them with the single-process module on the whole batch.
"""

from __future__ import annotations

import math
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from hiclust.losses import (
    CCLoss,
    CoHiClustLoss,
    DECLoss,
    NTXentLoss,
    balance_kl,
    cluster_contrastive_loss,
    cluster_entropy,
    cohiloss,
    kl_divergence,
    kmeans_loss,
    nt_xent,
    student_t_assignment,
    target_distribution,
    tree_balance_loss,
)

WORLD = 2
COLLECTIVE_TIMEOUT_S = 60


def _leaves(*shapes: tuple[int, ...], seed: int = 0, kind: str = "randn") -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for shape in shapes:
        if kind == "randn":
            t = torch.randn(*shape, generator=gen)
        elif kind == "decisions":  # strictly inside (0, 1)
            t = 0.05 + 0.9 * torch.rand(*shape, generator=gen)
        else:  # "softmax": rows of a soft assignment
            t = torch.softmax(2.0 * torch.randn(*shape, generator=gen), dim=1)
        out.append(t.requires_grad_(True))
    return out


def _assert_identical(module_terms: dict, expected_terms: dict, inputs: list[torch.Tensor]) -> None:
    """Same keys, torch.equal values, and torch.equal gradients of "loss" w.r.t. every input."""
    assert sorted(module_terms) == sorted(expected_terms)
    for key, value in expected_terms.items():
        assert module_terms[key].ndim == 0, key
        assert torch.equal(module_terms[key], value), (key, module_terms[key], value)
    got = torch.autograd.grad(module_terms["loss"], inputs, retain_graph=True, allow_unused=True)
    want = torch.autograd.grad(expected_terms["loss"], inputs, retain_graph=True, allow_unused=True)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g is not None and w is not None, i
        assert g.abs().max() > 0, i  # the comparison is not between zeros
        assert torch.equal(g, w), i


# ------------------------------------------------------------------------------ single process
@pytest.mark.parametrize("temperature", [0.5, 0.1])
def test_nt_xent_module_equals_function(temperature):
    z_a, z_b = _leaves((9, 6), (9, 6), seed=1)
    terms = NTXentLoss(temperature=temperature)(z_a, z_b)
    t = nt_xent(z_a, z_b, temperature)
    _assert_identical(terms, {"nt_xent": t, "loss": t}, [z_a, z_b])


def _cohiclust_expected(z_a, z_b, d_a, d_b, mask, temperature, form, balance_weight, nt_xent_weight):
    terms = {"nt_xent": nt_xent(z_a, z_b, temperature)}
    loss = nt_xent_weight * terms["nt_xent"]
    if d_a is not None:
        terms["cohiloss"] = cohiloss(d_a, d_b, mask, form)
        terms["balance"] = tree_balance_loss(d_a, d_b, mask)
        loss = loss + terms["cohiloss"] + balance_weight * terms["balance"]
    terms["loss"] = loss
    return terms


@pytest.mark.parametrize("form", ["reference", "paper"])
@pytest.mark.parametrize("balance_weight", [None, 0.3])
@pytest.mark.parametrize("masked", [False, True])
def test_cohiclust_module_equals_expression(form, balance_weight, masked):
    z_a, z_b = _leaves((10, 5), (10, 5), seed=2)
    d_a, d_b = _leaves((10, 7), (10, 7), seed=3, kind="decisions")  # depth 3
    mask = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0]) if masked else None
    module = CoHiClustLoss(temperature=0.4, form=form, balance_weight=balance_weight, nt_xent_weight=0.7)
    weight = 2.0**-3 if balance_weight is None else balance_weight
    expected = _cohiclust_expected(z_a, z_b, d_a, d_b, mask, 0.4, form, weight, 0.7)
    _assert_identical(module(z_a, z_b, d_a, d_b, mask), expected, [z_a, z_b, d_a, d_b])


def test_cohiclust_module_without_decisions_is_weighted_nt_xent():
    z_a, z_b = _leaves((6, 4), (6, 4), seed=4)
    terms = CoHiClustLoss(nt_xent_weight=0.5)(z_a, z_b, leaf_mask=torch.ones(4))
    expected = _cohiclust_expected(z_a, z_b, None, None, None, 0.5, "reference", None, 0.5)
    _assert_identical(terms, expected, [z_a, z_b])
    assert sorted(terms) == ["loss", "nt_xent"]


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_cohiclust_default_balance_weight_is_two_to_minus_depth(depth):
    z_a, z_b = _leaves((8, 3), (8, 3), seed=5)
    d_a, d_b = _leaves((8, 2**depth - 1), (8, 2**depth - 1), seed=6, kind="decisions")
    default = CoHiClustLoss()(z_a, z_b, d_a, d_b)
    explicit = CoHiClustLoss(balance_weight=2.0**-depth)(z_a, z_b, d_a, d_b)
    assert torch.equal(default["loss"], explicit["loss"])
    assert default["balance"] > 0
    other = CoHiClustLoss(balance_weight=2.0 ** -(depth + 1))(z_a, z_b, d_a, d_b)
    assert not torch.equal(default["loss"], other["loss"])  # the weight really enters the total
    manual = default["nt_xent"] + default["cohiloss"] + 2.0**-depth * default["balance"]
    assert torch.equal(default["loss"], manual)


def test_cohiclust_module_needs_both_decisions():
    z_a, z_b = _leaves((4, 3), (4, 3))
    (d_a,) = _leaves((4, 3), kind="decisions")
    with pytest.raises(ValueError, match="both views"):
        CoHiClustLoss()(z_a, z_b, d_a, None)


@pytest.mark.parametrize("entropy_weight", [1.0, 0.25])
def test_cc_module_equals_expression(entropy_weight):
    z_a, z_b = _leaves((12, 6), (12, 6), seed=7)
    y_a, y_b = _leaves((12, 4), (12, 4), seed=8, kind="softmax")
    module = CCLoss(4, instance_temperature=0.3, cluster_temperature=0.8, entropy_weight=entropy_weight)
    expected = {
        "instance": nt_xent(z_a, z_b, 0.3),
        "cluster": cluster_contrastive_loss(y_a, y_b, 0.8),
        "entropy": cluster_entropy(y_a, y_b),
    }
    log_m = math.log(4)
    expected["loss"] = expected["instance"] + expected["cluster"] + entropy_weight * (2 * log_m - expected["entropy"])
    _assert_identical(module(z_a, z_b, y_a, y_b), expected, [z_a, z_b, y_a, y_b])


def test_cc_module_checks_assignment_width():
    z_a, z_b = _leaves((5, 3), (5, 3))
    y_a, y_b = _leaves((5, 4), (5, 4), kind="softmax")
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        CCLoss(3)(z_a, z_b, y_a, y_b)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"kmeans_weight": 0.2},
        {"balance_weight": 0.5},
        {"nu": 2.0, "kmeans_weight": 0.1, "balance_weight": 1.5, "balance_prior": "zipf", "zipf_s": 0.7},
    ],
)
def test_dec_module_equals_expression(kwargs):
    z, centroids = _leaves((11, 3), (4, 3), seed=9)
    target = target_distribution(student_t_assignment(z, centroids)).detach()
    module = DECLoss(**kwargs)
    nu = kwargs.get("nu", 1.0)
    q = student_t_assignment(z, centroids, nu)
    expected = {"kl": kl_divergence(target, q)}
    l_c = expected["kl"]
    if kwargs.get("kmeans_weight", 0.0) > 0:
        expected["kmeans"] = kmeans_loss(z, centroids)
        l_c = l_c + kwargs["kmeans_weight"] * expected["kmeans"]
    if kwargs.get("balance_weight", 0.0) > 0:
        expected["balance"] = balance_kl(q, kwargs.get("balance_prior", "uniform"), kwargs.get("zipf_s", 1.0))
        l_c = l_c + kwargs["balance_weight"] * expected["balance"]
    expected["loss"] = l_c
    _assert_identical(module(z, centroids, target), expected, [z, centroids])


def test_gather_distributed_is_a_no_op_for_one_process():
    z_a, z_b = _leaves((6, 4), (6, 4), seed=10, kind="randn")
    z_a64, z_b64 = z_a.detach().double(), z_b.detach().double()
    # float64 stays float64: nothing is cast or concatenated without a process group.
    out = NTXentLoss(gather_distributed=True)(z_a64, z_b64)["loss"]
    assert out.dtype == torch.float64
    assert torch.equal(out, nt_xent(z_a64, z_b64, 0.5))
    d_a, d_b = _leaves((6, 3), (6, 3), seed=11, kind="decisions")
    a = CoHiClustLoss(gather_distributed=True)(z_a, z_b, d_a, d_b)
    b = CoHiClustLoss(gather_distributed=False)(z_a, z_b, d_a, d_b)
    assert all(torch.equal(a[k], b[k]) for k in b)


@pytest.mark.parametrize(
    "factory, match",
    [
        (lambda: NTXentLoss(temperature=0.0), "temperature"),
        (lambda: NTXentLoss(temperature=-1.0), "temperature"),
        (lambda: NTXentLoss(temperature=float("nan")), "temperature"),
        (lambda: NTXentLoss(gather_distributed="yes"), "gather_distributed"),
        (lambda: CoHiClustLoss(temperature=0.0), "temperature"),
        (lambda: CoHiClustLoss(form="tree"), "form"),
        (lambda: CoHiClustLoss(balance_weight=-0.1), "balance_weight"),
        (lambda: CoHiClustLoss(nt_xent_weight=-1.0), "nt_xent_weight"),
        (lambda: CoHiClustLoss(nt_xent_weight=float("inf")), "nt_xent_weight"),
        (lambda: CCLoss(1), "n_clusters"),
        (lambda: CCLoss(2.5), "n_clusters"),
        (lambda: CCLoss(3, instance_temperature=0.0), "instance_temperature"),
        (lambda: CCLoss(3, cluster_temperature=-0.5), "cluster_temperature"),
        (lambda: CCLoss(3, entropy_weight=-1.0), "entropy_weight"),
        (lambda: DECLoss(nu=0.0), "nu"),
        (lambda: DECLoss(kmeans_weight=-0.1), "kmeans_weight"),
        (lambda: DECLoss(balance_weight=-0.1), "balance_weight"),
        (lambda: DECLoss(balance_prior="normal"), "balance_prior"),
        (lambda: DECLoss(zipf_s=-1.0), "zipf_s"),
    ],
)
def test_invalid_hyperparameters_raise(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_valid_edge_hyperparameters_accepted():
    assert CoHiClustLoss(balance_weight=0.0, nt_xent_weight=0.0, form="paper").form == "paper"
    assert CCLoss(2, entropy_weight=0.0).n_clusters == 2
    assert DECLoss(balance_prior="zipf", zipf_s=0.0).balance_prior == "zipf"


# ------------------------------------------------------------------------------ distributed
_GLOBAL_ROWS = 8
_MASK = [1.0, 0.0, 1.0, 1.0]  # depth 2, leaf 1 pruned


def _global_inputs() -> dict[str, list[torch.Tensor]]:
    """The whole batch of every case (float32, the dtype the gather works in)."""
    gen = torch.Generator().manual_seed(2024)
    n = _GLOBAL_ROWS
    z = [torch.randn(n, 5, generator=gen) for _ in range(2)]
    d = [0.05 + 0.9 * torch.rand(n, 3, generator=gen) for _ in range(2)]
    y = [torch.softmax(2.0 * torch.randn(n, 3, generator=gen), dim=1) for _ in range(2)]
    return {"ntxent": z, "cohiclust": z + d, "cohiclust_pretrain": z, "cc": z + y}


def _modules(gather: bool) -> dict[str, torch.nn.Module]:
    return {
        "ntxent": NTXentLoss(temperature=0.5, gather_distributed=gather),
        "cohiclust": CoHiClustLoss(temperature=0.5, gather_distributed=gather),
        "cohiclust_pretrain": CoHiClustLoss(temperature=0.5, nt_xent_weight=0.5, gather_distributed=gather),
        "cc": CCLoss(3, gather_distributed=gather),
    }


def _call(name: str, module: torch.nn.Module, inputs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    if name == "cohiclust":
        return module(*inputs, torch.tensor(_MASK))
    return module(*inputs)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from hiclust import distributed as D

    torch.set_num_threads(1)
    dist.init_process_group(
        backend="gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
        timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S),  # a hung collective fails instead of hanging
    )
    try:
        assert D.is_distributed() and D.rank() == rank and D.world_size() == world
        per = _GLOBAL_ROWS // world
        rows = slice(rank * per, (rank + 1) * per)
        result: dict = {"rank": rank, "world": world}
        for name, module in _modules(gather=True).items():
            local = [t[rows].clone().requires_grad_(True) for t in _global_inputs()[name]]
            terms = _call(name, module, local)
            grads = torch.autograd.grad(terms["loss"], local)
            result[name] = {
                "terms": {k: v.detach() for k, v in terms.items()},
                "grads": [g.detach() for g in grads],
            }
            # Without gather_distributed a rank sees only its own rows, even inside a process group.
            plain = _call(name, _modules(gather=False)[name], [t.detach() for t in local])
            result[name]["local_loss"] = plain["loss"].detach()
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("loss_modules_ddp")
    # Forked ranks inherit the imported modules: no second start-up of torch and hiclust. Once
    # CUDA is initialized here (an earlier GPU test), autograd refuses to run in forked children.
    method = "spawn" if torch.cuda.is_initialized() else "fork"
    torch.multiprocessing.start_processes(
        _worker, args=(WORLD, _free_port(), str(out)), nprocs=WORLD, join=True, start_method=method
    )
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.parametrize("name", ["ntxent", "cohiclust", "cohiclust_pretrain", "cc"])
def test_gathered_loss_and_gradients_equal_single_process(rank_results, name):
    full = [t.clone().requires_grad_(True) for t in _global_inputs()[name]]
    ref = _call(name, _modules(gather=False)[name], full)
    ref_grads = torch.autograd.grad(ref["loss"], full)
    per = _GLOBAL_ROWS // WORLD
    for res in rank_results:
        assert res["world"] == WORLD
        got = res[name]
        # Every rank computes the global batch's loss, term by term.
        assert sorted(got["terms"]) == sorted(ref)
        for key in ref:
            torch.testing.assert_close(got["terms"][key], ref[key].detach(), rtol=0, atol=1e-6, msg=key)
        # Rank r receives G·∂L/∂(its rows); DDP's averaging divides by G.
        rows = slice(res["rank"] * per, (res["rank"] + 1) * per)
        for i, (g, g_ref) in enumerate(zip(got["grads"], ref_grads)):
            assert g_ref[rows].abs().max() > 1e-3, i  # the comparison is not between zeros
            torch.testing.assert_close(g / WORLD, g_ref[rows], rtol=0, atol=1e-5, msg=f"input {i}")
        # Sanity: the local-only loss differs from the global one (the gather did something).
        assert abs(float(got["local_loss"]) - float(ref["loss"].detach())) > 1e-4

