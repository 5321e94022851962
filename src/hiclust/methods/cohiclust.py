"""CoHiClust: contrastive hierarchical clustering (docs/methods.md, "CoHiClust")."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from hiclust import distributed as dist_utils
from hiclust.losses import leaf_probabilities
from hiclust.losses.modules import CoHiClustLoss
from hiclust.methods.base import DeepClusterer, Phase, PreparedData, common, default_depth
from hiclust.methods.params import Integral, Interval, Param, Real, StrOptions
from hiclust.nn import ProjectionHead, TreeHead

__all__ = ["CoHiClust", "CoHiClustNet", "DecisionPath"]

MAX_DEPTH = 10


class CoHiClustNet(nn.Module):
    """Backbone f, projection head g and tree head π."""

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
    """What training calls (and DistributedDataParallel wraps): only the outputs that enter the
    loss, (z,) in NT-Xent pre-training or (z, decisions) after it, so that DDP
    (find_unused_parameters) sees the tree head as unused during pre-training instead of waiting
    for gradients that never come."""

    def __init__(self, net: CoHiClustNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, with_tree: bool) -> tuple[torch.Tensor, ...]:
        _, z, decisions = self.net(x)
        return (z, decisions) if with_tree else (z,)


class DecisionPath(NamedTuple):
    """Root-to-leaf paths of N samples through a tree of depth T (``CoHiClust.decision_path``).

    cluster (N,) int64: the predicted cluster (= ``predict``). nodes (N, T) int64: heap indices of
    the internal nodes passed. went_left (N, T) bool. step_probabilities (N, T): probability of the
    branch taken at each step (d_u going left, 1 − d_u going right). path_probability (N,): their
    product, the unnormalized leaf probability. leaf_probability (N,): that probability
    renormalized over the kept leaves (= the row of ``predict_proba`` at ``cluster``).
    """

    cluster: np.ndarray
    nodes: np.ndarray
    went_left: np.ndarray
    step_probabilities: np.ndarray
    path_probability: np.ndarray
    leaf_probability: np.ndarray


def heap_steps(heap: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """For level-``depth`` heap nodes (K,): the heap indices (K, depth) of the nodes on the path
    from the root and whether each step goes left (K, depth). The bits of heap + 1 after the
    leading 1 spell the path (0 = left).

    >>> nodes, left = heap_steps(np.array([3, 6]), 2)
    >>> nodes.tolist(), left.tolist()
    ([[0, 1], [0, 2]], [[True, True], [False, False]])
    """
    s = np.arange(depth)
    code = (np.asarray(heap) + 1)[:, None]
    nodes = (code >> (depth - s)) - 1
    left = ((code >> (depth - 1 - s)) & 1) == 0
    return nodes, left


class CoHiClust(DeepClusterer):
    """Contrastive Hierarchical Clustering: a representation and a binary tree of clusters.

    Training: ``pretrain_epochs`` of NT-Xent alone, then NT-Xent + CoHiLoss + R1 (the tree
    balance term); from epoch ``prune_start`` one leaf per epoch (the one with the lowest expected
    mass over that epoch) is pruned until ``n_clusters`` leaves remain.

    {parameters}

    Attributes
    ----------
    model_ : CoHiClustNet
    labels_ : ndarray of shape (N,)
        Cluster of each training sample.
    history_ : list of dict
        One record per epoch (loss terms, seconds, pruned_leaf, acc/nmi/ari with labels).
    depth_ : int
    pruned_leaves_ : list of int
        Leaf indices of the complete tree, in pruning order.
    leaf_mask_ : tensor of shape (2^T,)
    kept_leaves_ : tensor of shape (K,)
    hierarchy_ : hiclust.Hierarchy
    device_ : torch.device

    Examples
    --------
    >>> from hiclust import CoHiClust, load_dataset
    >>> data = load_dataset("digits", split="all")
    >>> model = CoHiClust(n_clusters=10, epochs=100).fit(data)   # doctest: +SKIP
    >>> model.hierarchy_.to_linkage().shape                       # doctest: +SKIP
    (9, 4)
    """

    _LOG_NAME = "CoHiClust"
    _params = common(
        "n_clusters", "backbone", "epochs", "batch_size", "lr", "weight_decay", "temperature", "projection_dim",
        "image_size", "augmentation", "eval_every", "device", "seed", "random_state", "verbose",
        n_clusters=Param(Interval(Integral, 1, None, closed="left"), "K, the number of leaves kept (at most 2^depth)."),
        depth=Param([Interval(Integral, 1, MAX_DEPTH, closed="both"), None],
                    "T, depth of the complete tree (2^T leaves before pruning); None: ceil(log2 K)."),
        epochs=Param(Interval(Integral, 1, None, closed="left"), "Total epochs, pre-training included.",
                     resume="free"),
        pretrain_epochs=Param([Interval(Integral, 0, None, closed="left"), None],
                              "Epochs of NT-Xent alone before the tree terms; None: epochs // 3."),
        prune_start=Param([Interval(Integral, 0, None, closed="left"), None],
                          "0-based epoch at whose end pruning starts (one leaf per epoch); None: 10% into the "
                          "tree phase, leaving room for all 2^T − K prunings."),
        lr_schedule=Param([StrOptions({"cosine"}), None],
                          "None (constant lr, the reference) or 'cosine' (annealed to 0 over epochs, "
                          "stepped per epoch)."),
        cohiloss_form=Param(StrOptions({"reference", "paper"}),
                            "'reference' (the authors' code) or 'paper' (the published formula)."),
        balance_weight=Param([Interval(Real, 0, None, closed="left"), None],
                             "Weight of the balance term R1; None: 2^−T as in the reference."),
        nt_xent_weight=Param(Interval(Real, 0, None, closed="left"),
                             "Weight of NT-Xent; 0 reproduces the ablation without it."),
    )

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
        random_state: int | None = None,
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
        self.random_state = random_state
        self.verbose = verbose

    # ----------------------------------------------------------------------------- configuration
    def _schedule(self) -> tuple[int, int, int]:
        """(depth, pretrain_epochs, prune_start) resolved from the parameters (and checked)."""
        k = self.n_clusters
        depth = default_depth(k) if self.depth is None else int(self.depth)
        if k > 2**depth:
            raise ValueError(
                f"n_clusters={k} is larger than the 2^depth = {2**depth} leaves of a depth-{depth} tree; "
                f"use depth >= {default_depth(k)}"
            )
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

    def _check_params_vs_input(self, data: PreparedData) -> None:
        super()._check_params_vs_input(data)
        self._schedule()

    def _resume_free_params(self) -> frozenset[str]:
        # More epochs may be asked for on resume, unless a schedule was planned over the old count.
        return self._resume_free if self.lr_schedule is None else self._resume_free - {"epochs"}

    def _build_model(self) -> CoHiClustNet:
        backbone = self._backbone_for(self.input_shape_, self.image_size_ or 0)
        return CoHiClustNet(backbone, self.depth_, self.projection_dim)

    # ----------------------------------------------------------------------------------- training
    def _init_fit_state(self, data: PreparedData) -> None:
        self.depth_, self._pretrain, self._prune_start = self._schedule()
        device = getattr(self, "device_", torch.device("cpu"))
        self.leaf_mask_ = torch.ones(2**self.depth_, device=device)
        self.pruned_leaves_: list[int] = []
        self._mass = torch.zeros(2**self.depth_, device=device)
        self._loss = CoHiClustLoss(self.temperature, self.cohiloss_form, self.balance_weight, self.nt_xent_weight,
                                   gather_distributed=True)

    def _phases(self, data: PreparedData) -> list[Phase]:
        return [Phase("train", epochs=self.epochs, lr=self.lr, schedule=self.lr_schedule)]

    def _train_module(self) -> nn.Module:
        return _TrainForward(self.model_)

    def _find_unused_parameters(self, phase: Phase, start_epoch: int) -> bool:
        return start_epoch < self._pretrain  # the tree head idles in pre-training only

    def _training_step(self, phase: Phase, batch: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        b = batch.shape[0]
        with_tree = epoch >= self._pretrain
        with self._autocast():
            outs = self._net(self._views(batch), with_tree)
        # [z_a, z_b] (+ [d_a, d_b]): row j of each half comes from the same image.
        halves = [half for out in outs for half in (out[:b].float(), out[b:].float())]
        terms = self._loss(*halves, leaf_mask=self.leaf_mask_ if with_tree else None)
        if with_tree:
            # Local rows; summed over the ranks at the epoch's end, so all ranks prune alike.
            self._mass.add_(leaf_probabilities(torch.cat(halves[2:]).detach(), self.leaf_mask_).sum(0))
        return terms

    def _on_epoch_end(self, phase: Phase, epoch: int, record: dict[str, Any]) -> None:
        dist_utils.all_reduce_sum(self._mass)
        n_prune = 2**self.depth_ - self.n_clusters
        if self._prune_start <= epoch < self._prune_start + n_prune:
            masked = torch.where(self.leaf_mask_ > 0, self._mass, torch.full_like(self._mass, math.inf))
            leaf = int(torch.argmin(masked))
            self.leaf_mask_[leaf] = 0
            self.pruned_leaves_.append(leaf)
            record["pruned_leaf"] = leaf
        self._mass.zero_()

    def _finish_fit(self, data: PreparedData) -> None:
        self._after_load({})
        super()._finish_fit(data)

    def _after_load(self, state: dict[str, Any]) -> None:
        from hiclust.hierarchy import Hierarchy

        self.kept_leaves_ = torch.nonzero(self.leaf_mask_.cpu() > 0).flatten()
        self.hierarchy_ = Hierarchy.from_complete_tree(self.depth_, self.pruned_leaves_)

    # -------------------------------------------------------------------------------- inference
    def _embed(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model_(batch)[0]

    def _masked_leaf_probs(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, K) leaf probabilities of the kept leaves (masked, not renormalized)."""
        kept = torch.nonzero(self.leaf_mask_ > 0).flatten()
        return leaf_probabilities(self.model_(batch)[2].float(), self.leaf_mask_)[:, kept]

    def _proba(self, batch: torch.Tensor) -> torch.Tensor:
        probs = self._masked_leaf_probs(batch)
        return probs / probs.sum(1, keepdim=True).clamp_min(1e-12)

    def _predict_raw(self, x: torch.Tensor) -> np.ndarray:
        # argmax of the unnormalized probabilities: renormalizing cannot change it, and skipping
        # it keeps predictions bit-identical to the tree's own P_T.
        return self._batched_eval(self._masked_leaf_probs, x).argmax(1).numpy()

    def decision_function(self, X: Any) -> np.ndarray:
        """(N, 2^T − 1) per-node left-probabilities in heap order (the tree head's output)."""
        return self._batched_eval(lambda b: self.model_(b)[2], self._prepare_like_fit(X)).numpy()

    def decision_path(self, X: Any) -> DecisionPath:
        """Every sample's root-to-leaf path with the probability of each branch taken, from one
        forward pass (see :class:`DecisionPath`)."""
        decisions = self.decision_function(X)  # (N, 2^T − 1)
        kept = self.kept_leaves_.numpy()
        raw = leaf_probabilities(torch.from_numpy(decisions), self.leaf_mask_.cpu()).numpy()[:, kept]  # (N, K)
        cluster = raw.argmax(1).astype(np.int64)
        total = np.maximum(raw.sum(1), 1e-12)
        leaf_p = raw[np.arange(cluster.size), cluster] / total
        nodes, left = heap_steps(kept + 2**self.depth_ - 1, self.depth_)  # (K, T)
        d = np.take_along_axis(decisions, nodes[cluster], axis=1)  # left-probabilities on the path
        steps = np.where(left[cluster], d, 1.0 - d).astype(np.float64)
        return DecisionPath(cluster, nodes[cluster], left[cluster], steps, steps.prod(1), leaf_p.astype(np.float64))

    @property
    def linkage_(self) -> np.ndarray:
        """The pruned tree as a SciPy linkage matrix over the K clusters (leaf j = cluster j)."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self)
        return self.hierarchy_.to_linkage()

    # ---------------------------------------------------------------------------- persistence
    def _extra_state(self) -> dict[str, Any]:
        return {"depth": self.depth_, "leaf_mask": self.leaf_mask_.cpu(), "pruned_leaves": list(self.pruned_leaves_)}

    def _load_extra_state(self, state: dict[str, Any], path: Any) -> None:
        if getattr(self, "depth_", state["depth"]) != state["depth"]:
            from hiclust.checkpoint import CheckpointError

            raise CheckpointError(f"{path} was trained with depth {state['depth']}; this run has depth {self.depth_}")
        self.depth_ = int(state["depth"])
        self.leaf_mask_ = state["leaf_mask"].to(self.device_)
        self.pruned_leaves_ = [int(v) for v in state["pruned_leaves"]]
