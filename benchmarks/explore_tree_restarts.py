"""Issue 9, robustness: does the tree's own initialisation decide a weak run? Trains the ``digits``
preset (one torch thread) up to the end of NT-Xent pre-training, keeps that checkpoint, then runs
the tree phase several times from it — the same backbone, optimizer and augmentation stream, only
the tree head drawn afresh (branch 0 keeps the run's own draw) — and prints one JSON line per
branch: ACC/NMI/DP, the largest and smallest leaf mass and the mean CoHiLoss over the tree phase's
last 10 epochs, and ACC every 10 epochs. ``--init bisect``: branches 1.. start from a tree head
whose node splits are 2-means on the representation (bisecting k-means read as hyperplanes).
``--select-after M``: every branch runs only M tree epochs; the one whose largest leaf holds the
least probability mass then runs to the end (one JSON line per seed) — a label-free choice among
tree initialisations, as k-means' n_init chooses among its starts.

    python benchmarks/explore_tree_restarts.py 9 --branches 3 --out /tmp/restarts
    python benchmarks/explore_tree_restarts.py 1 --branches 2 --skip-own --init bisect --out /tmp/bisect
    python benchmarks/explore_tree_restarts.py 9 --branches 3 --select-after 10 --out /tmp/select
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hiclust import interrupt, load_dataset
from hiclust.checkpoint import load_checkpoint, save_checkpoint
from hiclust.methods import make_estimator
from hiclust.metrics import evaluate
from hiclust.runs import load_config_file


def bisecting_tree_init(checkpoint, data, state, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tree head weights (2^T − 1, d), bias (2^T − 1,) whose node j splits the items routed to it
    as 2-means on the representation h does (left = the first center), at the logit spread of the
    checkpoint's own random head on those items."""
    from sklearn.cluster import KMeans

    from hiclust.methods.cohiclust import CoHiClust

    est = CoHiClust.load(checkpoint, device="cpu")
    h = est._batched_eval(est._embed, data.images).double()  # (N, d)
    w0, b0 = state["model"]["tree.linear.weight"].double(), state["model"]["tree.linear.bias"].double()
    n_nodes = w0.shape[0]
    w, b = w0.clone(), b0.clone()
    members = {0: torch.arange(h.shape[0])}
    for j in range(n_nodes):
        idx = members.pop(j, torch.arange(0))
        if idx.numel() >= 2:
            km = KMeans(2, n_init=3, random_state=seed).fit(h[idx].numpy())
            c = torch.from_numpy(km.cluster_centers_)
            direction = c[0] - c[1]
            logits = h[idx] @ direction - direction @ (c[0] + c[1]) / 2
            scale = float((h[idx] @ w0[j] + b0[j]).std() / logits.std().clamp_min(1e-12))
            w[j], b[j] = direction * scale, -(direction @ (c[0] + c[1]) / 2) * scale
            left = torch.from_numpy(km.labels_ == 0)
        else:
            left = torch.zeros(idx.numel(), dtype=torch.bool)
        if 2 * j + 2 < n_nodes:
            members[2 * j + 1], members[2 * j + 2] = idx[left], idx[~left]
    return w.float(), b.float()


def write_branch(path, branch, args, base, data, config, state) -> None:
    """The pre-trained checkpoint with branch ``branch``'s tree head (0: the run's own draw)."""
    if branch and args.init == "bisect":
        w, b = bisecting_tree_init(base, data, state, seed=branch)
        model_state = dict(state["model"], **{"tree.linear.weight": w, "tree.linear.bias": b})
    elif branch:
        fresh = nn.Linear(*state["model"]["tree.linear.weight"].shape[::-1])
        with torch.random.fork_rng():
            torch.manual_seed(10_000 * (args.seed + 1) + branch)
            fresh.reset_parameters()
        model_state = dict(state["model"], **{"tree.linear.weight": fresh.weight.detach().clone(),
                                              "tree.linear.bias": fresh.bias.detach().clone()})
    else:
        model_state = state["model"]
    save_checkpoint(path, model_class="CoHiClust", config=config, state=dict(state, model=model_state))


def select_and_continue(args, params, data, y, base, config, state, pre_seconds: float) -> None:
    """Every branch M tree epochs; the one with the smallest largest-leaf mass runs to the end."""
    stop_at = int(params["pretrain_epochs"]) + args.select_after

    def stop(record):
        if record["epoch"] == stop_at:
            interrupt._stop.set()

    scores, acc_at, started = {}, {}, time.perf_counter()
    for branch in range(args.branches):
        path = Path(args.out) / f"seed{args.seed}_branch{branch}.pt"
        write_branch(path, branch, args, base, data, config, state)
        model = make_estimator("cohiclust", params)
        try:
            model.fit(data, checkpoint=path, checkpoint_every=10_000, resume=True, callback=stop)
        except interrupt.TrainingInterrupted:
            pass
        finally:
            interrupt._stop.clear()
        _, branch_state = load_checkpoint(path)
        last = branch_state["history"][-1]
        assert last["epoch"] == stop_at, last["epoch"]
        scores[branch] = round(max(last["leaf_mass"]), 4)
        acc_at[branch] = last.get("acc")
    search_seconds = time.perf_counter() - started
    chosen = min(scores, key=scores.get)
    model = make_estimator("cohiclust", params)
    started = time.perf_counter()
    model.fit(data, checkpoint=Path(args.out) / f"seed{args.seed}_branch{chosen}.pt", checkpoint_every=10_000,
              resume=True)
    metrics = evaluate(y, model.labels_, linkage=model.hierarchy_.to_linkage())
    print(json.dumps({"seed": args.seed, "select_after": args.select_after, "branches": args.branches,
                      "init": args.init, "overrides": args.set, "max_leaf_mass_at_selection": scores,
                      "acc_at_selection": acc_at,
                      "chosen": chosen, **{k: round(float(v), 4) for k, v in metrics.items()},
                      "pretrain_seconds": round(pre_seconds, 1), "search_seconds": round(search_seconds, 1),
                      "rest_seconds": round(time.perf_counter() - started, 1)}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("seed", type=int)
    p.add_argument("--branches", type=int, default=3)
    p.add_argument("--out", required=True, help="folder for the checkpoints (new files only)")
    p.add_argument("--skip-own", action="store_true", help="do not run branch 0 (the run's own tree head)")
    p.add_argument("--init", choices=("random", "bisect"), default="random",
                   help="branches 1..: a fresh random tree head, or one set from bisecting 2-means on h")
    p.add_argument("--select-after", type=int, default=None, metavar="M",
                   help="run every branch only M epochs into the tree phase, then continue the one whose "
                        "largest leaf holds the least mass (one JSON line for the seed)")
    p.add_argument("--pretrained", default=None, metavar="PATH",
                   help="start from this seed's pre-trained checkpoint written by an earlier run of this script")
    p.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE", help="override a preset parameter")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    overrides = {k: (float(v) if "." in v else int(v)) for k, v in (item.split("=", 1) for item in args.set)}
    params = {**load_config_file("digits")["params"], **overrides, "seed": args.seed, "verbose": False,
              "eval_every": 10}
    data = load_dataset("digits", split="all")
    y = data.labels.numpy()
    base = out / f"seed{args.seed}_pretrained.pt"
    if base.exists():
        raise SystemExit(f"{base} exists; choose another --out")
    pretrain = int(params["pretrain_epochs"])
    if args.pretrained:  # the pre-trained checkpoint of an earlier run of this script (same seed)
        import shutil

        shutil.copyfile(args.pretrained, base)

    def stop_after_pretraining(record):
        if record["epoch"] == pretrain:
            interrupt._stop.set()  # the next checkpoint check writes it and stops

    started = time.perf_counter()
    try:
        if not args.pretrained:
            make_estimator("cohiclust", params).fit(data, checkpoint=base, checkpoint_every=pretrain,
                                                    callback=stop_after_pretraining)
    except interrupt.TrainingInterrupted:
        pass
    finally:
        interrupt._stop.clear()
    pre_seconds = time.perf_counter() - started
    config, state = load_checkpoint(base)
    if args.select_after is not None:
        select_and_continue(args, params, data, y, base, config, state, pre_seconds)
        return
    for branch in range(1 if args.skip_own else 0, args.branches):
        path = out / f"seed{args.seed}_branch{branch}.pt"
        write_branch(path, branch, args, base, data, config, state)
        model = make_estimator("cohiclust", params)
        started = time.perf_counter()
        model.fit(data, checkpoint=path, checkpoint_every=10_000, resume=True)
        tree = [h for h in model.history_ if "leaf_mass" in h]
        masses = [m for m in tree[-1]["leaf_mass"] if m > 0]
        metrics = evaluate(y, model.labels_, linkage=model.hierarchy_.to_linkage())
        print(json.dumps({
            "seed": args.seed, "branch": branch, "init": "own" if branch == 0 else args.init, "overrides": overrides,
            **{k: round(float(v), 4) for k, v in metrics.items()},
            "max_leaf_mass": round(max(masses), 4), "min_leaf_mass": round(min(masses), 4),
            "cohiloss_last10": round(float(np.mean([h["cohiloss"] for h in tree[-10:]])), 5),
            "acc_by_epoch": {h["epoch"]: round(h["acc"], 4) for h in model.history_ if "acc" in h},
            "max_mass_by_epoch": {h["epoch"]: round(max(h["leaf_mass"]), 4) for h in tree if h["epoch"] % 10 == 0},
            "pretrain_seconds": round(pre_seconds, 1), "branch_seconds": round(time.perf_counter() - started, 1),
        }), flush=True)


if __name__ == "__main__":
    main()
