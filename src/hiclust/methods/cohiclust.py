"""CoHiClust: contrastive hierarchical clustering (SPEC.md §1)."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin
from torch import nn

from hiclust import distributed as dist_utils
from hiclust.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint, CheckpointError
from hiclust.losses import cohiloss, leaf_probabilities, nt_xent, tree_balance_loss
from hiclust.methods.base import DeepClustererMixin, default_depth, prepare_data, seed_everything
from hiclust.nn import BACKBONES, ProjectionHead, TreeHead, build_backbone, default_backbone
from hiclust.train import NonFiniteLossError, resolve_device, train_loop

__all__ = ["CoHiClust", "CoHiClustNet"]

MAX_DEPTH = 10
LR_SCHEDULES = (None, "cosine")


class CoHiClustNet(nn.Module):
    """Backbone f, projection head g and tree head π (SPEC.md §1.1)."""

    def __init__(self, backbone: nn.Module, depth: int, projection_dim: int = 128) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection = ProjectionHead(backbone.feature_dim, 512, projection_dim)
        self.tree = TreeHead(backbone.feature_dim, depth)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, ...) → (h (B, d), z (B, projection_dim), decisions (B, 2^T − 1))."""
        h = self.backbone(x)
        return h, self.projection(h), self.tree(h)


class _TrainForward(nn.Module):
    """What DistributedDataParallel wraps: returns only the outputs that enter the loss, (z,) in
    NT-Xent pre-training or (z, decisions) after it, so DDP (find_unused_parameters) sees the tree
    head as unused during pre-training instead of waiting for gradients that never come."""

    def __init__(self, net: CoHiClustNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, with_tree: bool) -> tuple[torch.Tensor, ...]:
        _, z, decisions = self.net(x)
        return (z, decisions) if with_tree else (z,)


class CoHiClust(DeepClustererMixin, ClusterMixin, BaseEstimator):
    """Contrastive Hierarchical Clustering: a representation and a binary tree of clusters.

    Training (SPEC.md §1.4–1.5): ``pretrain_epochs`` of NT-Xent alone, then
    NT-Xent + CoHiLoss + 2^−T·R1; from epoch ``prune_start`` one leaf per epoch (the one with the
    lowest expected mass over that epoch) is pruned until ``n_clusters`` leaves remain.

    Parameters:
        n_clusters: K, the number of leaves kept (≤ 2^depth).
        depth: T, depth of the complete tree (2^T leaves); default ⌈log2 K⌉.
        backbone: "auto" (small CNN for ≤ 28 px grayscale, else ResNet18), one of
            ``hiclust.nn.BACKBONES``, or an ``nn.Module`` with a ``feature_dim`` attribute.
        epochs: total epochs, pre-training included.
        pretrain_epochs: NT-Xent-only epochs; default ``epochs // 3``.
        prune_start: 0-based epoch at whose end pruning starts; default shortly into the
            tree phase (10% of it), leaving room for all 2^T − K prunings.
        batch_size, lr, weight_decay: Adam optimisation (reference: 512, 1e-3, 1e-6).
        lr_schedule: None (constant ``lr``, the reference) or "cosine" (cosine annealing to 0
            over ``epochs``, stepped per epoch; its state is checkpointed).
        temperature: τ of NT-Xent.
        projection_dim: output size of the projection head g.
        image_size: side of the augmented crops; default the images' own size.
        augmentation: "auto" (chosen by dataset, see ``hiclust.data.augment``), a preset
            name, or a module mapping a batch to an augmented float batch.
        cohiloss_form: "reference" (the authors' code) or "paper" (SPEC.md §1.3).
        balance_weight: weight of R1; default 2^−T as in the reference.
        nt_xent_weight: weight of R2 (NT-Xent); 0 reproduces the ablation without it.
        eval_every: with labels, record ACC/NMI/ARI in ``history_`` every this many epochs.
        device: "auto", "cpu", "cuda", "cuda:N".
        seed: seeds python, numpy, torch and the shuffling/augmentation generators.
        verbose: per-epoch log lines (and a progress bar on a terminal).

    Fitted attributes:
        model_, labels_ (N,), history_ (list of per-epoch dicts), pruned_leaves_ (leaf indices
        of the complete tree, in pruning order), leaf_mask_ (2^T,), kept_leaves_ (K,),
        hierarchy_ (``hiclust.Hierarchy``), device_.
    """

    def __init__(
        self,
        n_clusters: int = 10,
        depth: int | None = None,
        backbone: str | nn.Module = "auto",
        epochs: int = 100,
        pretrain_epochs: int | None = None,
        prune_start: int | None = None,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 1e-6,
        lr_schedule: str | None = None,
        temperature: float = 0.5,
        projection_dim: int = 128,
        image_size: int | None = None,
        augmentation: str | nn.Module = "auto",
        cohiloss_form: str = "reference",
        balance_weight: float | None = None,
        nt_xent_weight: float = 1.0,
        eval_every: int = 10,
        device: str = "auto",
        seed: int = 0,
        verbose: bool = True,
    ) -> None:
        self.n_clusters = n_clusters
        self.depth = depth
        self.backbone = backbone
        self.epochs = epochs
        self.pretrain_epochs = pretrain_epochs
        self.prune_start = prune_start
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.temperature = temperature
        self.projection_dim = projection_dim
        self.image_size = image_size
        self.augmentation = augmentation
        self.cohiloss_form = cohiloss_form
        self.balance_weight = balance_weight
        self.nt_xent_weight = nt_xent_weight
        self.eval_every = eval_every
        self.device = device
        self.seed = seed
        self.verbose = verbose

    # ----------------------------------------------------------------------------- configuration
    def _resolved_schedule(self, n_samples: int) -> tuple[int, int, int]:
        """Validates the hyperparameters against the data; returns (depth, pretrain, prune_start)."""
        k = self.n_clusters
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"n_clusters must be a positive integer, got {k!r}")
        if k > n_samples:
            raise ValueError(f"n_clusters={k} is larger than the number of samples ({n_samples}); lower n_clusters")
        depth = default_depth(k) if self.depth is None else self.depth
        if not isinstance(depth, (int, np.integer)) or not 1 <= depth <= MAX_DEPTH:
            raise ValueError(f"depth must be an integer between 1 and {MAX_DEPTH}, got {depth!r}")
        if k > 2**depth:
            raise ValueError(
                f"n_clusters={k} is larger than the 2^depth = {2**depth} leaves of a depth-{depth} tree; "
                f"use depth >= {default_depth(k)}"
            )
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (contrastive losses need pairs), got {self.batch_size}")
        if self.batch_size > n_samples:
            raise ValueError(
                f"batch_size={self.batch_size} is larger than the dataset ({n_samples} samples); "
                f"use batch_size <= {n_samples}"
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; choose one of {LR_SCHEDULES}")
        if not isinstance(self.eval_every, (int, np.integer)) or self.eval_every < 1:
            raise ValueError(f"eval_every must be a positive integer, got {self.eval_every!r}")
        if self.cohiloss_form not in ("reference", "paper"):
            raise ValueError(f"cohiloss_form must be 'reference' or 'paper', got {self.cohiloss_form!r}")
        if isinstance(self.backbone, str) and self.backbone not in ("auto", *BACKBONES):
            raise ValueError(f"unknown backbone {self.backbone!r}; choose 'auto' or one of {', '.join(BACKBONES)}")
        pretrain = self.epochs // 3 if self.pretrain_epochs is None else self.pretrain_epochs
        if not 0 <= pretrain < self.epochs:
            raise ValueError(
                f"pretrain_epochs={pretrain} must be in [0, epochs) so that the tree is trained at all (epochs={self.epochs})"
            )
        n_prune = 2**depth - k
        tree_epochs = self.epochs - pretrain
        if self.prune_start is None:
            prune_start = pretrain + max(0, min(tree_epochs // 10, tree_epochs - n_prune))
        else:
            prune_start = self.prune_start
        if n_prune and (prune_start < pretrain or prune_start + n_prune > self.epochs):
            raise ValueError(
                f"pruning {n_prune} leaves one per epoch from epoch {prune_start} needs "
                f"pretrain_epochs ({pretrain}) <= prune_start and prune_start + {n_prune} <= epochs ({self.epochs}); "
                "raise epochs or lower prune_start/pretrain_epochs"
            )
        return depth, pretrain, prune_start

    def check_params(self, X: Any, y: Any = None) -> None:
        """Validates everything ``fit`` checks before training, without training or writing:
        data, hyperparameters, device, augmentation and backbone (raises ValueError/TypeError)."""
        data = prepare_data(X, y)
        depth, _, _ = self._resolved_schedule(data.x.shape[0])
        resolve_device(self.device)
        size = (self.image_size or int(data.x.shape[-1])) if data.is_image else 0
        self._make_augment(data, size)
        self._build_model(tuple(data.x.shape), depth, size)  # e.g. images too small for the backbone

    def _config(self) -> dict[str, Any]:
        params = self.get_params()
        for key in ("backbone", "augmentation"):
            if isinstance(params[key], nn.Module):
                params[key] = f"custom:{type(params[key]).__name__}"
        return params

    def _build_model(self, data_shape: tuple[int, ...], depth: int, image_size: int) -> CoHiClustNet:
        if isinstance(self.backbone, nn.Module):
            if not hasattr(self.backbone, "feature_dim"):
                raise TypeError("a custom backbone module needs a 'feature_dim' attribute (size of its output)")
            net = self.backbone
        elif len(data_shape) == 2:
            if self.backbone not in ("auto", "mlp"):
                raise ValueError(f"feature matrices use the 'mlp' backbone, not {self.backbone!r}")
            from hiclust.nn import MLP

            net = MLP(data_shape[1])
        else:
            channels = data_shape[1]
            name = default_backbone(channels, image_size) if self.backbone == "auto" else self.backbone
            net = build_backbone(name, channels, image_size)
        return CoHiClustNet(net, depth, self.projection_dim)

    def _eval_input(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.ndim == 2:
            return (batch.float() - self.feature_mean_) / self.feature_std_
        from hiclust.data.augment import to_float

        return to_float(batch, self.image_size_)

    # ----------------------------------------------------------------------------------- fitting
    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        checkpoint: str | Path | None = None,
        checkpoint_every: int = 10,
        resume: bool = False,
        callback: Callable[[dict[str, Any]], None] | None = None,
    ) -> "CoHiClust":
        """Trains on X (an ImageDataset, images or a feature matrix; see ``prepare_data``).

        Args:
            y: optional labels, used only to record metrics in ``history_``.
            checkpoint: file to write atomically every ``checkpoint_every`` epochs and at the end.
            resume: continue from ``checkpoint`` if it exists (same configuration required).
            callback: called with each epoch's history record (on rank 0 only under torchrun).

        Under ``torchrun`` (``hiclust.distributed.init_from_env`` called first), training is data
        parallel with DDP: ``batch_size`` is the global batch, each rank takes a contiguous shard,
        losses are computed over the gathered global batch (gradients equal a single process's,
        up to per-rank BatchNorm statistics), and only rank 0 writes the checkpoint.
        """
        data = prepare_data(X, y)
        n = data.x.shape[0]
        depth, pretrain, prune_start = self._resolved_schedule(n)
        if checkpoint is not None and (not isinstance(checkpoint_every, (int, np.integer)) or checkpoint_every < 1):
            raise ValueError(f"checkpoint_every must be a positive integer (epochs), got {checkpoint_every!r}")
        self.device_ = resolve_device(self.device)
        # Data parallel (torchrun): batch_size is the global batch, split evenly over the ranks.
        world, rank = dist_utils.world_size(), dist_utils.rank()
        if world > 1:
            if self.batch_size % world:
                raise ValueError(
                    f"batch_size={self.batch_size} (the global batch) must be divisible by the {world} processes"
                )
            if self.device_.type == "cuda" and self.device_.index is None:
                self.device_ = torch.device("cuda", torch.cuda.current_device())
        seed_everything(self.seed)
        # Same seed on every rank: all ranks draw the same global batches and take disjoint shards.
        shuffle_gen = torch.Generator().manual_seed(self.seed)
        aug_gen = torch.Generator(device=self.device_).manual_seed(self.seed + 1 + rank)

        x = data.x
        if data.is_image:
            self.image_size_ = self.image_size or int(x.shape[-1])
            self.feature_mean_ = self.feature_std_ = None
        else:
            self.image_size_ = None
            self.feature_mean_ = x.mean(0).to(self.device_)
            self.feature_std_ = x.std(0).clamp_min(1e-6).to(self.device_)
        self.input_shape_ = tuple(int(s) for s in x.shape[1:])
        self.depth_ = depth
        self.model_ = self._build_model(tuple(x.shape), depth, self.image_size_ or 0).to(self.device_)
        augment = self._make_augment(data, self.image_size_ or 0).to(self.device_)
        optimizer = torch.optim.Adam(self.model_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        scheduler = None
        if self.lr_schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.epochs)
        n_leaves = 2**depth
        self.leaf_mask_ = torch.ones(n_leaves, device=self.device_)
        self.pruned_leaves_: list[int] = []
        self.history_: list[dict[str, Any]] = []
        start_epoch = 0
        if resume and checkpoint is not None and Path(checkpoint).exists():
            start_epoch = self._restore_training(checkpoint, optimizer, scheduler, shuffle_gen, aug_gen)
            if world > 1:
                # The checkpoint holds rank 0's augmentation stream; give every rank its own again.
                aug_gen.manual_seed(self.seed + 1 + rank + 1_000_003 * start_epoch)
        saved_epoch = start_epoch  # epoch of the checkpoint on disk (0: none from this run)
        balance_weight = 2.0**-depth if self.balance_weight is None else self.balance_weight
        mass = torch.zeros(n_leaves, device=self.device_)
        x_dev = x.to(self.device_) if data.is_image else ((x.to(self.device_) - self.feature_mean_) / self.feature_std_)
        use_amp = self.device_.type == "cuda"
        train_net: nn.Module = self.model_
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            train_net = DistributedDataParallel(
                _TrainForward(self.model_), device_ids=[self.device_.index] if self.device_.type == "cuda" else None,
                find_unused_parameters=start_epoch < pretrain,  # the tree head idles in pre-training only
            )

        def step(batch: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
            if world > 1:
                per_rank = batch.shape[0] // world  # this rank's contiguous shard of the global batch
                batch = batch[rank * per_rank : (rank + 1) * per_rank]
            b = batch.shape[0]
            with_tree = epoch >= pretrain
            views = torch.cat((augment(batch, generator=aug_gen), augment(batch, generator=aug_gen)))
            with torch.autocast(self.device_.type, dtype=torch.bfloat16, enabled=use_amp):
                outs = train_net(views, with_tree) if world > 1 else self.model_(views)[1:]
            # [z_a, z_b] (+ [d_a, d_b]): row j of each half comes from the same image.
            halves = [half for out in outs for half in (out[:b].float(), out[b:].float())]
            if world > 1:
                # Losses over the GLOBAL batch: gather every rank's rows, keeping gradients (one
                # collective for all four tensors). Gradient scaling: see hiclust.distributed.
                widths = [t.shape[1] for t in halves]
                halves = list(dist_utils.all_gather_with_grad(torch.cat(halves, dim=1)).split(widths, dim=1))
            z_a, z_b = halves[0], halves[1]
            terms = {"nt_xent": nt_xent(z_a, z_b, self.temperature)}
            loss = self.nt_xent_weight * terms["nt_xent"]
            if with_tree:
                d_a, d_b = halves[2], halves[3]
                terms["cohiloss"] = cohiloss(d_a, d_b, self.leaf_mask_, self.cohiloss_form)
                terms["balance"] = tree_balance_loss(d_a, d_b, self.leaf_mask_)
                loss = loss + terms["cohiloss"] + balance_weight * terms["balance"]
                # Gathered rows: the mass is the global batch's on every rank, so all prune alike.
                mass.add_(leaf_probabilities(torch.cat((d_a, d_b)).detach(), self.leaf_mask_).sum(0))
            terms["loss"] = loss
            return terms

        def on_epoch_end(epoch: int, logs: dict[str, float]) -> None:
            nonlocal saved_epoch
            record: dict[str, Any] = {"epoch": epoch + 1, **logs}
            dist_utils.broadcast_buffers(self.model_)  # rank 0's BatchNorm statistics everywhere
            if prune_start <= epoch < prune_start + (n_leaves - self.n_clusters):
                masked = torch.where(self.leaf_mask_ > 0, mass, torch.full_like(mass, math.inf))
                leaf = int(torch.argmin(masked))
                self.leaf_mask_[leaf] = 0
                self.pruned_leaves_.append(leaf)
                record["pruned_leaf"] = leaf
            mass.zero_()
            last = epoch + 1 == self.epochs
            if data.labels is not None and ((epoch + 1) % self.eval_every == 0 or last):
                from hiclust.metrics import evaluate

                pred = self._predict_prepared(data.x)
                record.update({k: v for k, v in evaluate(data.labels.numpy(), pred).items() if k in ("acc", "nmi", "ari")})
            self.history_.append(record)
            if self.verbose and dist_utils.is_main():
                shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
                print(f"[CoHiClust] {shown}", file=sys.stderr, flush=True)
            if callback is not None and dist_utils.is_main():
                callback(record)
            if checkpoint is not None and ((epoch + 1) % checkpoint_every == 0 or last):
                self._save_training(checkpoint, optimizer, scheduler, shuffle_gen, aug_gen, epoch + 1)
                saved_epoch = epoch + 1

        if start_epoch < self.epochs:
            try:
                train_loop(
                    train_net, step, x_dev, optimizer=optimizer, epochs=self.epochs, batch_size=self.batch_size,
                    shuffle_generator=shuffle_gen, start_epoch=start_epoch, scheduler=scheduler,
                    on_epoch_end=on_epoch_end, progress=self.verbose and dist_utils.is_main(), desc="CoHiClust",
                )
            except NonFiniteLossError as exc:
                if checkpoint is None:
                    raise
                # The failing step never reached a checkpoint: say which one is left.
                kept = (
                    f"The last good checkpoint {checkpoint} (epoch {saved_epoch}) was kept."
                    if saved_epoch else "No checkpoint had been written yet."
                )
                raise NonFiniteLossError(f"{exc} {kept}") from None
        self._finish_fit(data.x)
        return self

    def _finish_fit(self, x: torch.Tensor) -> None:
        from hiclust.hierarchy import Hierarchy

        self.kept_leaves_ = torch.nonzero(self.leaf_mask_.cpu() > 0).flatten()
        self.labels_ = self._predict_prepared(x)
        self.hierarchy_ = Hierarchy.from_complete_tree(self.depth_, self.pruned_leaves_)

    # -------------------------------------------------------------------------------- inference
    def _prepare_like_fit(self, X: Any) -> torch.Tensor:
        self._check_is_fitted()
        x = prepare_data(X).x
        if tuple(x.shape[1:]) != self.input_shape_:
            raise ValueError(
                f"this model was fitted on inputs of shape {self.input_shape_} per sample, got {tuple(x.shape[1:])}"
            )
        return x

    def _leaf_probs(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 2^T) masked leaf probabilities (not renormalized)."""
        mask = self.leaf_mask_
        return self._batched_eval(lambda b: leaf_probabilities(self.model_(b)[2].float(), mask), x)

    def _predict_prepared(self, x: torch.Tensor) -> np.ndarray:
        kept = torch.nonzero(self.leaf_mask_.cpu() > 0).flatten()
        probs = self._leaf_probs(x)[:, kept]
        return probs.argmax(1).numpy()

    def decision_function(self, X: Any) -> np.ndarray:
        """Per-node left-probabilities (N, 2^T − 1) in heap order (the tree head's output)."""
        x = self._prepare_like_fit(X)
        return self._batched_eval(lambda b: self.model_(b)[2], x).numpy()

    def predict_proba(self, X: Any) -> np.ndarray:
        """(N, K) probabilities over the kept leaves (cluster ids 0..K−1), renormalized to sum 1."""
        x = self._prepare_like_fit(X)
        probs = self._leaf_probs(x)[:, self.kept_leaves_]
        return (probs / probs.sum(1, keepdim=True).clamp_min(1e-12)).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """(N,) cluster ids 0..K−1: the most probable unpruned leaf, numbered left to right."""
        return self._predict_prepared(self._prepare_like_fit(X))

    def transform(self, X: Any) -> np.ndarray:
        """(N, d) backbone features h."""
        x = self._prepare_like_fit(X)
        return self._batched_eval(lambda b: self.model_(b)[0], x).numpy()

    @property
    def linkage_(self) -> np.ndarray:
        """The pruned tree as a SciPy linkage matrix over the K clusters (leaf j = cluster j)."""
        self._check_is_fitted()
        return self.hierarchy_.to_linkage()

    # ---------------------------------------------------------------------------- persistence
    def _state(self) -> dict[str, Any]:
        return {
            "model": self.model_.state_dict(),
            "leaf_mask": self.leaf_mask_.cpu(),
            "pruned_leaves": list(self.pruned_leaves_),
            "history": self.history_,
            "depth": self.depth_,
            "input_shape": list(self.input_shape_),
            "image_size": self.image_size_,
            "feature_mean": None if self.feature_mean_ is None else self.feature_mean_.cpu(),
            "feature_std": None if self.feature_std_ is None else self.feature_std_.cpu(),
        }

    def _save_training(self, path, optimizer, scheduler, shuffle_gen, aug_gen, epoch: int) -> None:
        state = self._state()
        # Never replace the last good checkpoint with weights that went non-finite.
        bad = [k for k, v in state["model"].items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            raise NonFiniteLossError(
                f"non-finite values in {', '.join(bad[:3])} after epoch {epoch}; the checkpoint {path} was not "
                "overwritten. Lower the learning rate or check the input data."
            )
        state.update(
            optimizer=optimizer.state_dict(), epoch=epoch, rng=capture_rng_state(shuffle_gen),
            aug_rng=aug_gen.get_state(), scheduler=None if scheduler is None else scheduler.state_dict(),
        )
        if dist_utils.is_main():  # every rank checked finiteness above; one writes
            save_checkpoint(path, model_class=type(self).__name__, config=self._config(), state=state)

    def _check_resume_config(self, config: dict[str, Any], path: Any) -> None:
        """Raises CheckpointError naming every parameter in which checkpoint ``config`` differs."""
        mine = self._config()
        # More epochs may be asked for on resume, unless a schedule was planned over the old count.
        free = ("verbose", "epochs") if self.lr_schedule is None else ("verbose",)
        diff = {k: (config.get(k), v) for k, v in mine.items() if k not in free and config.get(k) != v}
        if diff:
            raise CheckpointError(
                f"cannot resume from {path}: its configuration differs in "
                + ", ".join(f"{k} (checkpoint {a!r}, now {b!r})" for k, (a, b) in diff.items())
            )

    def _restore_training(self, path, optimizer, scheduler, shuffle_gen, aug_gen) -> int:
        config, state = load_checkpoint(path, expected_class=type(self).__name__)
        if "epoch" not in state:
            raise CheckpointError(f"{path} is a saved model, not a training checkpoint; it cannot be resumed")
        self._check_resume_config(config, path)
        self._load_state(state, path)
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"], shuffle_gen)
        aug_gen.set_state(state["aug_rng"])
        return int(state["epoch"])

    def _load_state(self, state: dict[str, Any], path) -> None:
        if list(self.input_shape_) != list(state["input_shape"]) or self.depth_ != state["depth"]:
            raise CheckpointError(
                f"{path} was trained on inputs {tuple(state['input_shape'])} with depth {state['depth']}; "
                f"this run has inputs {self.input_shape_} and depth {self.depth_}"
            )
        try:
            self.model_.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"{path} does not fit this model's layers: {exc}") from None
        self.leaf_mask_ = state["leaf_mask"].to(self.device_)
        self.pruned_leaves_ = [int(v) for v in state["pruned_leaves"]]
        self.history_ = list(state["history"])

    def save(self, path: str | Path) -> None:
        """Writes the fitted model (weights, tree, config; no optimizer) atomically."""
        self._check_is_fitted()
        save_checkpoint(path, model_class=type(self).__name__, config=self._config(), state=self._state())

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "CoHiClust":
        """Loads a model written by ``save`` or a training checkpoint (safe: weights_only)."""
        config, state = load_checkpoint(path, expected_class=cls.__name__)
        for key in ("backbone", "augmentation"):
            if str(config.get(key, "")).startswith("custom:"):
                raise CheckpointError(
                    f"{path} used a custom {key} module ({config[key]}); rebuild the estimator with it and "
                    "load the weights from the checkpoint's state['model'] instead"
                )
        config["device"] = device
        est = cls(**config)
        est.device_ = resolve_device(device)
        est.depth_ = int(state["depth"])
        est.input_shape_ = tuple(int(s) for s in state["input_shape"])
        est.image_size_ = state["image_size"]
        fm, fs = state["feature_mean"], state["feature_std"]
        est.feature_mean_ = None if fm is None else fm.to(est.device_)
        est.feature_std_ = None if fs is None else fs.to(est.device_)
        shape = (1, *est.input_shape_)
        est.model_ = est._build_model(shape, est.depth_, est.image_size_ or 0).to(est.device_)
        est._load_state(state, path)
        est.kept_leaves_ = torch.nonzero(est.leaf_mask_.cpu() > 0).flatten()
        from hiclust.hierarchy import Hierarchy

        est.hierarchy_ = Hierarchy.from_complete_tree(est.depth_, est.pruned_leaves_)
        return est
