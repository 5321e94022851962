"""Data-parallel training (hiclust.distributed + DDP) on 2 CPU processes with the gloo backend.

The processes are started with torchrun (``python -m torch.distributed.run``) running this very
file as a script (see the ``__main__`` block). One launch (torch start-up dominates the time) runs
``hiclust train`` through ``hiclust.cli.main`` (which joins the process group itself), then the
unit cases (gather, gradients) in the same process group. Each rank writes its results under an
output directory that the tests then compare. A timeout makes a hung collective fail the test.
The runs train on 600 labeled digits (the ``digits_folder`` fixture): the tests compare the ranks
with each other, which does not need the whole set.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORLD = 2
LAUNCH_TIMEOUT_S = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(case: str, out: Path, data: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    env.pop("HICLUST_DEBUG", None)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={WORLD}", "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}", str(Path(__file__).resolve()), case, str(out), str(data),
    ]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"torchrun {case} did not finish in {LAUNCH_TIMEOUT_S} s (hung collective?): {exc.stderr}")
    assert proc.returncode == 0, f"torchrun {case} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


# ------------------------------------------------------------------------------ worker side
def _tree_model_loss(out_a: torch.Tensor, out_b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """NT-Xent + CoHiLoss + 2^−T·R1 on (B, P + 3) outputs: P projection dims, 3 depth-2 decisions."""
    from hiclust.losses import cohiloss, nt_xent, tree_balance_loss

    z_a, z_b = out_a[:, :-3], out_b[:, :-3]
    d_a, d_b = torch.sigmoid(out_a[:, -3:]), torch.sigmoid(out_b[:, -3:])
    return nt_xent(z_a, z_b, 0.5) + cohiloss(d_a, d_b, mask) + 0.25 * tree_balance_loss(d_a, d_b, mask)


def _unit_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.nn.Module]:
    gen = torch.Generator().manual_seed(123)
    x_a, x_b = torch.randn(8, 5, generator=gen, dtype=torch.float64), torch.randn(8, 5, generator=gen, dtype=torch.float64)
    mask = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)  # one pruned leaf
    torch.manual_seed(7)
    model = torch.nn.Linear(5, 4 + 3).double()
    return x_a, x_b, mask, model


def _worker_unit(out: Path) -> None:
    """Runs inside the process group that ``hiclust.cli.main`` initialized."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from hiclust import distributed as D

    assert D.init_from_env() and D.is_distributed()  # already initialized: init_from_env says so
    rank, world = D.rank(), D.world_size()
    result: dict = {"rank": rank, "world": world, "backend": dist.get_backend()}

    # (1) all_gather_with_grad: values and gradients of a non-linear function of the gathered tensor.
    full = torch.arange(world * 3 * 2, dtype=torch.float64).reshape(world * 3, 2) / 7.0
    weight = torch.linspace(-1.0, 2.0, world * 3 * 2, dtype=torch.float64).reshape(world * 3, 2)
    local = full[rank * 3 : (rank + 1) * 3].clone().requires_grad_(True)
    gathered = D.all_gather_with_grad(local)
    (gathered.square() * weight).sum().backward()
    result["gathered"] = gathered.detach().tolist()
    result["local_grad"] = local.grad.tolist()

    # (2) DDP + gathered global loss == single-process gradient of the same global batch.
    x_a, x_b, mask, model = _unit_inputs()
    ref = _tree_model_loss(model(x_a), model(x_b), mask)
    ref_grads = torch.autograd.grad(ref, list(model.parameters()))
    net = DistributedDataParallel(model)
    per = x_a.shape[0] // world
    rows = slice(rank * per, (rank + 1) * per)
    outs = net(torch.cat((x_a[rows], x_b[rows])))
    both = D.all_gather_with_grad(torch.cat((outs[:per], outs[per:]), dim=1))
    loss = _tree_model_loss(both[:, : outs.shape[1]], both[:, outs.shape[1] :], mask)
    loss.backward()
    result["loss"], result["ref_loss"] = float(loss), float(ref)
    result["grad_err"] = max(float((p.grad - g).abs().max()) for p, g in zip(model.parameters(), ref_grads))
    result["grad_scale"] = max(float(g.abs().max()) for g in ref_grads)

    # (3) The loss modules of CC and SimCLR gather their negatives: DDP over the two ranks' halves
    # gives the parameter gradients of one process on the whole batch.
    from hiclust.losses import CCLoss, NTXentLoss

    torch.manual_seed(11)
    proj = torch.nn.Linear(5, 6).double()
    cases = {  # (the loss as one process computes it, the gathering loss, how outputs split into views)
        "cc": (CCLoss(3), CCLoss(3, gather_distributed=True),
               lambda o, b: (o[:b, :3], o[b:, :3], o[:b, 3:].softmax(1), o[b:, 3:].softmax(1))),
        "simclr": (NTXentLoss(0.5), NTXentLoss(0.5, gather_distributed=True), lambda o, b: (o[:b], o[b:])),
    }
    for name, (single_fn, loss_fn, split) in cases.items():
        n = x_a.shape[0]
        ref = single_fn(*split(proj(torch.cat((x_a, x_b))), n))["loss"]
        ref_grads = torch.autograd.grad(ref, list(proj.parameters()))
        ddp = DistributedDataParallel(proj)
        local = ddp(torch.cat((x_a[rows], x_b[rows])))
        loss = loss_fn(*split(local, per))["loss"]
        loss.backward()
        result[f"{name}_loss_err"] = abs(float(loss) - float(ref))
        result[f"{name}_grad_err"] = max(float((p.grad - g).abs().max()) for p, g in zip(proj.parameters(), ref_grads))
        result[f"{name}_grad_scale"] = max(float(g.abs().max()) for g in ref_grads)
        proj.zero_grad(set_to_none=True)
    (out / f"unit{rank}.json").write_text(json.dumps(result))


def _worker_train(out: Path, data: str) -> None:
    import hiclust.cli as cli

    rank = int(os.environ["RANK"])
    run_dir = str((out / "run").resolve())
    writes: list[str] = []
    recording = [True]

    def audit(event: str, args: tuple) -> None:
        # Every file created, opened for writing, renamed or removed inside the run directory.
        if not recording[0]:
            return
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path, mode, flags = os.fsdecode(args[0]), args[1], args[2]
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            )
            if writing and path.startswith(run_dir):
                writes.append(path)
        elif event in ("os.rename", "os.mkdir", "os.remove", "shutil.rmtree"):
            paths = [os.fsdecode(a) for a in args if isinstance(a, (str, bytes, os.PathLike))]
            writes.extend(p for p in paths if p.startswith(run_dir))

    sys.addaudithook(audit)
    captured = {}
    original = cli.run_training

    def run_training(*a, **k):
        model, metrics = original(*a, **k)
        captured.setdefault("models", []).append(model)
        if "model" not in captured:
            captured["model"] = model
            recording[0] = False
            _worker_unit(out)
        return model, metrics

    cli.run_training = run_training
    from hiclust import distributed as D

    # One process group for the three runs below (cli.main joins it instead of starting its own).
    assert D.init_from_env()
    code = cli.main([
        "train", "--dataset", f"folder:{data}", "--out", run_dir, "--n-clusters", "2", "--depth", "2",
        "--epochs", "3", "--pretrain-epochs", "1", "--prune-start", "1", "--batch-size", "64",
        "--backbone", "smallcnn", "--checkpoint-every", "1", "--threads", "1",
    ])
    recording[0] = False
    # The other contrastive methods train under torchrun too (their losses gather the negatives).
    others = {}
    for method in ("cc", "simclr"):
        others[f"{method}_code"] = cli.main([
            "train", "--dataset", f"folder:{data}", "--method", method, "--out", str((out / method).resolve()),
            "--n-clusters", "3", "--epochs", "2", "--batch-size", "128", "--backbone", "smallcnn", "--threads", "1",
        ])
        trained = captured["models"][-1]
        others[f"{method}_state"] = {k: v.detach().clone() for k, v in trained.model_.state_dict().items()}
        others[f"{method}_epochs"] = [r["epoch"] for r in trained.history_]
    # CC's STL-10 schedule under DDP: an instance-only pass (cluster head idle) before every epoch.
    from hiclust import ContrastiveClustering
    from hiclust.data import load_dataset

    digits = load_dataset(f"folder:{data}")
    cc = ContrastiveClustering(n_clusters=3, epochs=2, batch_size=128, backbone="smallcnn", device="cpu",
                               verbose=False).fit(digits, instance_data=digits.images[:512])
    others["cc_instance_state"] = {k: v.detach().clone() for k, v in cc.model_.state_dict().items()}
    others["cc_instance_terms"] = sorted(cc.history_[-1])
    model = captured["model"]
    torch.save(
        {
            "code": code,
            "state": {k: v.detach().clone() for k, v in model.model_.state_dict().items()},
            "pruned": list(model.pruned_leaves_),
            "labels": torch.as_tensor(model.labels_),
            "history_epochs": [r["epoch"] for r in model.history_],
            "writes": writes,
            **others,
        },
        out / f"train{rank}.pt",
    )


# ------------------------------------------------------------------------------ test side
@pytest.fixture(scope="module")
def ddp_out(tmp_path_factory, digits_folder) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    _launch("train", out, digits_folder)
    return out


@pytest.fixture(scope="module")
def unit_results(ddp_out) -> list[dict]:
    return [json.loads((ddp_out / f"unit{r}.json").read_text()) for r in range(WORLD)]


@pytest.fixture(scope="module")
def train_results(ddp_out) -> tuple[Path, list[dict]]:
    return ddp_out / "run", [torch.load(ddp_out / f"train{r}.pt", weights_only=True) for r in range(WORLD)]


def test_all_gather_with_grad_values_and_gradients(unit_results):
    full = torch.arange(WORLD * 3 * 2, dtype=torch.float64).reshape(WORLD * 3, 2) / 7.0
    weight = torch.linspace(-1.0, 2.0, WORLD * 3 * 2, dtype=torch.float64).reshape(WORLD * 3, 2)
    for res in unit_results:
        assert res["world"] == WORLD and res["backend"] == "gloo"
        torch.testing.assert_close(torch.tensor(res["gathered"], dtype=torch.float64), full)
        # Every rank's loss uses this rank's rows: the backward sums WORLD identical gradients.
        rows = slice(res["rank"] * 3, (res["rank"] + 1) * 3)
        expected = WORLD * 2 * full[rows] * weight[rows]
        torch.testing.assert_close(torch.tensor(res["local_grad"], dtype=torch.float64), expected)


def test_ddp_gathered_loss_gradient_equals_single_process(unit_results):
    for res in unit_results:
        assert abs(res["loss"] - res["ref_loss"]) < 1e-10
        assert res["grad_scale"] > 1e-3  # the comparison is not between zeros
        assert res["grad_err"] < 1e-5, res


def test_cohiclust_trains_under_two_ranks(train_results):
    run_dir, results = train_results
    r0, r1 = results
    assert r0["code"] == 0 and r1["code"] == 0
    assert r0["state"].keys() == r1["state"].keys()
    for key in r0["state"]:  # parameters and (broadcast) BatchNorm statistics agree
        torch.testing.assert_close(r0["state"][key], r1["state"][key], rtol=0, atol=0, msg=key)
    assert len(r0["pruned"]) == 2 and r0["pruned"] == r1["pruned"]
    assert torch.equal(r0["labels"], r1["labels"])
    assert r0["history_epochs"] == r1["history_epochs"] == [1, 2, 3]
    # Only rank 0 touched the run directory.
    assert r1["writes"] == []
    written = {Path(p).name for p in r0["writes"]}
    assert {"checkpoint.pt", "model.pt", "history.jsonl", "metrics.json"} <= written
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [h.get("pruned_leaf") for h in history[1:]] == r0["pruned"]


@pytest.mark.parametrize("method", ["cc", "simclr"])
def test_contrastive_methods_gather_negatives_under_two_ranks(unit_results, train_results, method):
    for res in unit_results:  # gradients of the gathered loss through DDP == one process on the whole batch
        assert res[f"{method}_loss_err"] < 1e-5  # the gather works in float32
        assert res[f"{method}_grad_scale"] > 1e-3
        assert res[f"{method}_grad_err"] < 1e-5, res
    _, (r0, r1) = train_results
    assert r0[f"{method}_code"] == 0 and r1[f"{method}_code"] == 0
    assert r0[f"{method}_epochs"] == r1[f"{method}_epochs"] == [1, 2]
    for key in r0[f"{method}_state"]:  # both ranks hold the same model after data-parallel training
        torch.testing.assert_close(r0[f"{method}_state"][key], r1[f"{method}_state"][key], rtol=0, atol=0, msg=key)


def test_cc_instance_only_pass_trains_under_two_ranks(train_results):
    _, (r0, r1) = train_results
    assert "instance_only_loss" in r0["cc_instance_terms"] and "cluster" in r0["cc_instance_terms"]
    for key in r0["cc_instance_state"]:  # the idle cluster head does not stall DDP, and both ranks agree
        torch.testing.assert_close(r0["cc_instance_state"][key], r1["cc_instance_state"][key], rtol=0, atol=0, msg=key)


def test_shutdown_leaves_the_group_and_is_a_no_op_without_one(tmp_path):
    import torch.distributed as dist

    from hiclust import distributed as D

    D.shutdown()  # nothing initialized: nothing to do, no error
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    assert dist.is_initialized()
    # A DDP wrapper alive only through a reference cycle is freed before the group goes, not at
    # interpreter exit after it (where its teardown could abort the process).
    import gc
    import weakref

    from torch.nn.parallel import DistributedDataParallel

    gc.disable()
    try:
        ddp = DistributedDataParallel(torch.nn.Linear(3, 2))
        ddp.cycle = ddp
        alive = weakref.ref(ddp)
        del ddp
        assert alive() is not None
        D.shutdown()
        assert alive() is None
    finally:
        gc.enable()
    assert not dist.is_initialized()
    D.shutdown()  # a second call is harmless


if __name__ == "__main__":  # torchrun worker: test_distributed.py CASE OUT_DIR DATA_DIR
    _case, _out = sys.argv[1], Path(sys.argv[2])
    {"train": _worker_train}[_case](_out, sys.argv[3])
    from hiclust import distributed as _D

    _D.shutdown()  # both ranks done: leave the group before exit (see hiclust.distributed.shutdown)
