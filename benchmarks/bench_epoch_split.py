"""Where a CoHiClust training epoch goes: the network's own forward + backward against everything
else (batch gathering, augmentation, losses, gradient norm, optimizer, pruning bookkeeping,
evaluation). Prints one JSON line per epoch of a real ``fit``; the first epoch (NT-Xent only)
the second (the full loss with the tree) and the third (the same, with a pruning) are
reported separately.

    python benchmarks/bench_epoch_split.py --threads 2 --n 10240 --backbone smallcnn --image-size 16
    python benchmarks/bench_epoch_split.py --threads 2 --n 2560 --backbone resnet18 --channels 3 --size 32 --batch-size 128
    python benchmarks/bench_epoch_split.py --threads 1 --n 10240 --image-size 16 --mnist-root DIR --precision bfloat16

How it measures: the estimator's parts are wrapped with wall-clock timers (synchronizing the GPU
when there is one): the training forward of the network (backbone + projection and tree heads),
``Tensor.backward`` (the loss's backward pass, almost all of it the network's), the augmentation
(``_views``), the loss's forward, the gradient-norm check, the optimizer step and the epoch's end
(pruning and evaluation). "other" is the epoch's wall time minus all of these (batch gathering,
logging, the progress bar). Random uint8 images unless ``--mnist-root`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import defaultdict
from typing import Any, Callable

import torch

from hiclust import CoHiClust


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=10240, help="images per epoch")
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--size", type=int, default=28, help="side of the stored images")
    p.add_argument("--image-size", type=int, default=None, help="crop size the network sees")
    p.add_argument("--backbone", default="smallcnn")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--mnist-root", default=None, help="use the first --n MNIST images instead of random pixels")
    p.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"),
                   help="CoHiClust's precision (bfloat16: autocast of the training forward)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.mnist_root:
        from hiclust.data import load_dataset

        data = load_dataset("mnist", root=args.mnist_root, split="all")
        x, y = data.images[: args.n], data.labels[: args.n].numpy()
    else:
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (args.n, args.channels, args.size, args.size), dtype=torch.uint8, generator=g)
        y = None

    # Three epochs: NT-Xent pre-training, then the full loss with the tree, the last of them
    # pruning one of the 16 leaves (n_clusters 15), so every kind of epoch is measured.
    model = CoHiClust(n_clusters=15, depth=4, backbone=args.backbone, image_size=args.image_size, epochs=3,
                      pretrain_epochs=1, prune_start=2, batch_size=args.batch_size, device=args.device,
                      precision=args.precision, verbose=False, eval_every=1)
    spent: dict[str, float] = defaultdict(float)
    device_is_cuda = [False]

    def sync() -> None:
        if device_is_cuda[0]:
            torch.cuda.synchronize()

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **k: Any) -> Any:
            sync()
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                sync()
                spent[name] += time.perf_counter() - t
        return wrapper

    # fit trains a private working copy of the estimator, so the hooks go on the class.
    cls = type(model)
    saved = {name: cls.__dict__.get(name) for name in
             ("_train_module", "_make_optimizer", "_init_fit_state", "_views", "_on_epoch_end", "_evaluate_record")}
    orig = {name: getattr(cls, name) for name in saved}

    def train_module(self: Any) -> torch.nn.Module:
        module = orig["_train_module"](self)
        module.forward = timed("network_forward", module.forward)
        return module

    def make_optimizer(self: Any, phase: Any) -> torch.optim.Optimizer:
        opt = orig["_make_optimizer"](self, phase)
        opt.step = timed("optimizer", opt.step)
        return opt

    def init_fit_state(self: Any, data: Any) -> None:
        orig["_init_fit_state"](self, data)
        device_is_cuda[0] = self.device_.type == "cuda"
        self._loss.forward = timed("loss_forward", self._loss.forward)

    cls._train_module = train_module
    cls._make_optimizer = make_optimizer
    cls._init_fit_state = init_fit_state
    for name, part in (("_views", "augmentation"), ("_on_epoch_end", "epoch_end"), ("_evaluate_record", "evaluation")):
        setattr(cls, name, timed(part, orig[name]))
    orig_backward, orig_clip = torch.Tensor.backward, torch.nn.utils.clip_grad_norm_
    torch.Tensor.backward = timed("backward", orig_backward)  # type: ignore[method-assign]
    torch.nn.utils.clip_grad_norm_ = timed("grad_norm", orig_clip)

    epoch_start = [time.perf_counter()]
    rows: list[dict[str, Any]] = []

    def on_epoch(record: dict[str, Any]) -> None:
        sync()
        now = time.perf_counter()
        wall = now - epoch_start[0]
        parts = {k: round(v, 4) for k, v in spent.items()}
        network = spent["network_forward"] + spent["backward"]
        rest = wall - network
        rows.append({"epoch": record["epoch"], "wall_s": round(wall, 3), "network_s": round(network, 3),
                     "rest_s": round(rest, 3), "rest_fraction": round(rest / wall, 4), "parts_s": parts,
                     "pruned_leaf": record.get("pruned_leaf")})
        spent.clear()
        epoch_start[0] = time.perf_counter()

    try:
        model.fit(x, y, callback=on_epoch) if y is not None else model.fit(x, callback=on_epoch)
    finally:
        torch.Tensor.backward, torch.nn.utils.clip_grad_norm_ = orig_backward, orig_clip  # type: ignore[method-assign]
        for name, value in saved.items():
            if value is None:
                delattr(cls, name)
            else:
                setattr(cls, name, value)
    machine = {"nproc": os.cpu_count(), "cpu": platform.processor() or platform.machine(), "device": str(model.device_),
               "threads": torch.get_num_threads(), "torch": torch.__version__}
    if model.device_.type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(model.device_)
    for row in rows:
        print(json.dumps({"bench": "epoch_split", "backbone": args.backbone, "n": args.n, "batch_size": args.batch_size,
                          "precision": args.precision,
                          "image_size": model.image_size_, **row, **machine}), flush=True)


if __name__ == "__main__":
    main()
