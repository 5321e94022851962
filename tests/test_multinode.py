"""Multi-node data parallelism: two torchrun launches (``--nnodes 2``) as two "nodes" on one host.

Each launch runs one process (``--nproc_per_node 1``) of this file as a script (the ``__main__``
block), so the two ranks live under different torchrun agents and meet only through the
rendezvous, as on two machines; gloo on the CPU. The uninterrupted run is also the reference of
the kill-and-resume test: a second two-node run of the same configuration loses rank 0 to SIGKILL
after its first checkpoint, both nodes are restarted with ``hiclust train --resume``, and the final
model must equal the uninterrupted one bit for bit.

Every launch runs in its own session with a deadline; on failure or timeout the process groups
are killed, so a hung collective fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

NODES = 2
LAUNCH_TIMEOUT_S = 180
TESTS = Path(__file__).resolve().parent
# The configuration of both two-node runs: CoHiClust with a pretraining phase, a depth-2 tree and
# two prunings on 600 labeled digits (the ``digits_folder`` fixture), a checkpoint after every epoch.
TRAIN_ARGS = [
    "--n-clusters", "2", "--depth", "2", "--epochs", "3", "--pretrain-epochs", "1",
    "--prune-start", "1", "--batch-size", "64", "--backbone", "smallcnn", "--checkpoint-every", "1",
    "--threads", "1",
]


def _train_args(data: Path) -> list[str]:
    return ["--dataset", f"folder:{data}", *TRAIN_ARGS]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_nodes(case: str, out: Path, cli_args: list[str], rendezvous: str) -> list[subprocess.Popen]:
    """Starts the two torchrun launches (node ranks 0 and 1), each in a new session.

    ``rendezvous``: "static" (``--master_addr``/``--master_port``, ranks from ``--node_rank``) or
    "c10d" (``--rdzv_backend c10d --rdzv_endpoint``, the form for machines that find each other).
    """
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(TESTS.parent / "src"))
    env.pop("HICLUST_DEBUG", None)
    port = _free_port()
    procs = []
    for node in range(NODES):
        if rendezvous == "static":
            rdzv = [f"--node_rank={node}", "--master_addr=127.0.0.1", f"--master_port={port}"]
        else:  # c10d assigns the node ranks in order of arrival
            rdzv = ["--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", f"--rdzv_id=hiclust-{port}"]
        cmd = [
            sys.executable, "-m", "torch.distributed.run", f"--nnodes={NODES}", "--nproc_per_node=1",
            "--max_restarts=0", *rdzv, str(Path(__file__).resolve()), case, str(out), *cli_args,
        ]
        log = open(out / f"{case}.node{node}.log", "w")  # noqa: SIM115 (closed with the process)
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        log.close()  # the child holds its own descriptor
    return procs


def _kill_groups(procs: list[subprocess.Popen]) -> None:
    """SIGKILLs each launch's whole process group (torchrun agent and its worker)."""
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def _logs(out: Path, case: str) -> str:
    return "\n".join(f"--- node {n}:\n" + (out / f"{case}.node{n}.log").read_text()[-4000:] for n in range(NODES))


def _wait_nodes(procs: list[subprocess.Popen], out: Path, case: str, timeout: float = LAUNCH_TIMEOUT_S) -> list[int]:
    """Waits for both launches; kills both process groups and fails the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill_groups(procs)
        pytest.fail(f"two-node {case} did not finish in {timeout:.0f} s (hung collective?):\n{_logs(out, case)}")
    return [p.returncode for p in procs]


def _run_nodes(case: str, out: Path, cli_args: list[str], rendezvous: str) -> None:
    procs = _start_nodes(case, out, cli_args, rendezvous)
    codes = _wait_nodes(procs, out, case)
    assert codes == [0, 0], f"two-node {case} failed ({codes}):\n{_logs(out, case)}"


# ------------------------------------------------------------------------------ worker side
def _worker(case: str, out: Path, cli_args: list[str]) -> None:
    """One rank: ``hiclust train CLI_ARGS`` through ``hiclust.cli.main``; records what it wrote into
    the run directory, then (case "train+unit") the gradient cases of tests/test_distributed.py."""
    import hiclust.cli as cli

    rank = int(os.environ["RANK"])
    (out / f"{case}.pid{rank}").write_text(str(os.getpid()))  # the kill-and-resume test kills one rank
    run_dir = str(Path(cli_args[cli_args.index("--out") + 1] if "--out" in cli_args
                       else cli_args[cli_args.index("--resume") + 1]).resolve())
    writes: list[tuple[str, str]] = []

    def audit(event: str, args: tuple) -> None:
        # Files opened for writing, created, renamed or removed inside the run directory.
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            mode, flags = args[1], args[2]
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if writing and os.fsdecode(args[0]).startswith(run_dir):
                writes.append((event, os.fsdecode(args[0])))
        elif event in ("os.rename", "os.replace", "os.mkdir", "os.remove", "shutil.rmtree"):
            paths = [os.fsdecode(a) for a in args if isinstance(a, (str, bytes, os.PathLike))]
            writes.extend((event, p) for p in paths if p.startswith(run_dir))

    sys.addaudithook(audit)
    captured: dict = {}
    original = cli.run_training

    def run_training(*a, **k):
        model, metrics = original(*a, **k)
        captured["model"] = model
        return model, metrics

    cli.run_training = run_training
    if case == "train+unit":
        from hiclust import distributed as D

        # Joined here, the process group outlives cli.main (which joins it instead of starting and
        # ending its own) for the gradient cases below. Case "train" leaves it all to the CLI.
        assert D.init_from_env()
    code = cli.main(["train", *cli_args])
    writes_during_train = list(writes)
    model = captured["model"]
    torch.save(
        {
            "code": code,
            "rank": rank,
            "node": int(os.environ["GROUP_RANK"]),  # torchrun's node rank
            "world": int(os.environ["WORLD_SIZE"]),
            "state": {k: v.detach().clone() for k, v in model.model_.state_dict().items()},
            "pruned": list(model.pruned_leaves_),
            "labels": torch.as_tensor(model.labels_),
            "writes": writes_during_train,
        },
        out / f"{case}.rank{rank}.pt",
    )
    if case == "train+unit":
        # The gradient cases of the one-host test, now across two torchrun agents.
        sys.path.insert(0, str(TESTS))
        from test_distributed import _worker_unit

        _worker_unit(out)


# ------------------------------------------------------------------------------ test side
@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory, digits_folder) -> Path:
    """The uninterrupted two-node run (c10d rendezvous), then the gradient cases in its group."""
    out = tmp_path_factory.mktemp("nodes")
    _run_nodes("train+unit", out, [*_train_args(digits_folder), "--out", str(out / "run")], rendezvous="c10d")
    return out


def _results(out: Path, case: str) -> list[dict]:
    return [torch.load(out / f"{case}.rank{r}.pt", weights_only=True) for r in range(NODES)]


def _assert_same_model(a: dict, b: dict) -> None:
    assert a["state"].keys() == b["state"].keys()
    for key in a["state"]:  # parameters and (broadcast) BatchNorm statistics, bit for bit
        torch.testing.assert_close(a["state"][key], b["state"][key], rtol=0, atol=0, msg=key)
    assert a["pruned"] == b["pruned"]
    assert torch.equal(a["labels"], b["labels"])


def test_two_nodes_train_the_same_model_and_only_rank0_writes(two_nodes):
    r0, r1 = _results(two_nodes, "train+unit")
    assert r0["code"] == r1["code"] == 0
    assert (r0["rank"], r1["rank"]) == (0, 1) and r0["world"] == r1["world"] == NODES
    assert {r0["node"], r1["node"]} == {0, 1}  # one rank per torchrun launch
    _assert_same_model(r0, r1)
    assert len(r0["pruned"]) == 2
    # One writer: rank 1 never touched the run directory; rank 0 renamed each checkpoint into place
    # (one per epoch with --checkpoint-every 1), and one checkpoint.pt is left.
    assert r1["writes"] == []
    run = two_nodes / "run"
    onto_checkpoint = [p for e, p in r0["writes"] if e in ("os.rename", "os.replace") and Path(p) == run / "checkpoint.pt"]
    assert len(onto_checkpoint) == 3, r0["writes"]
    assert sorted(p.name for p in run.iterdir() if "checkpoint" in p.name) == ["checkpoint.pt"]
    assert {"model.pt", "history.jsonl", "metrics.json", "run.json"} <= {p.name for p in run.iterdir()}


def test_two_nodes_gathered_loss_gradient_equals_single_process(two_nodes):
    for rank in range(NODES):
        res = json.loads((two_nodes / f"unit{rank}.json").read_text())
        assert res["world"] == NODES and res["backend"] == "gloo"
        # NT-Xent + CoHiLoss + R1 over the gathered global batch, through DDP across the two nodes.
        assert abs(res["loss"] - res["ref_loss"]) < 1e-10
        assert res["grad_scale"] > 1e-3  # the comparison is not between zeros
        assert res["grad_err"] < 1e-5, res
        for method in ("cc", "simclr"):  # the loss modules that gather their negatives
            assert res[f"{method}_grad_scale"] > 1e-3
            assert res[f"{method}_grad_err"] < 1e-5, res


def _history(run: Path) -> list[dict]:
    """history.jsonl without the wall-clock field."""
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "elapsed")} for r in rows]


def test_sigkill_one_rank_then_resume_both_matches_uninterrupted(two_nodes, digits_folder, tmp_path):
    from hiclust.checkpoint import load_checkpoint

    run = tmp_path / "run"
    procs = _start_nodes("train", tmp_path, [*_train_args(digits_folder), "--out", str(run)], rendezvous="static")
    # SIGKILL rank 0 (the writer) as soon as its first checkpoint is in place.
    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    try:
        while not (run / "checkpoint.pt").exists():
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                pytest.fail(f"no checkpoint appeared (or a node ended first):\n{_logs(tmp_path, 'train')}")
            time.sleep(0.02)
        os.kill(int((tmp_path / "train.pid0").read_text()), signal.SIGKILL)
        # Rank 1's next collective fails (its peer is gone); both agents then stop.
        codes = _wait_nodes(procs, tmp_path, "train", timeout=60)
    finally:
        _kill_groups(procs)
    assert codes[0] != 0 and codes[1] != 0, codes
    assert not (run / "model.pt").exists()  # the run was cut short
    _, state = load_checkpoint(run / "checkpoint.pt")
    assert state["progress"] != {"phase": "train", "epoch": 3}, state["progress"]

    _run_nodes("train", tmp_path, ["--resume", str(run)], rendezvous="static")
    resumed = _results(tmp_path, "train")
    reference = _results(two_nodes, "train+unit")
    assert [r["code"] for r in resumed] == [0, 0]
    _assert_same_model(resumed[0], resumed[1])
    _assert_same_model(resumed[0], reference[0])
    # Every epoch's loss terms too (the resumed epochs drew the augmentations the others drew).
    assert _history(run) == _history(two_nodes / "run")


def test_epoch_seed_depends_on_each_of_seed_rank_phase_and_epoch():
    from hiclust.distributed import epoch_seed

    seeds = {epoch_seed(s, r, ph, e) for s in (0, 1) for r in range(4) for ph in ("train", "pretrain") for e in range(50)}
    assert len(seeds) == 2 * 4 * 2 * 50  # no two streams share a seed
    assert all(0 <= x < 2**63 for x in seeds)  # torch.Generator.manual_seed accepts it
    assert epoch_seed(3, 1, "train", 7) == epoch_seed(3, 1, "train", 7)  # a function of its arguments only


if __name__ == "__main__":  # torchrun worker: test_multinode.py CASE OUT_DIR CLI_ARGS...
    _worker(sys.argv[1], Path(sys.argv[2]), sys.argv[3:])
    from hiclust import distributed as _D

    _D.shutdown()  # a no-op where cli.main already left its own group
