"""DeepECT and DeepECT + Aug: an autoencoder and a binary cluster tree grown in its embedding
(Mautz, Plant & Böhm, ICDM 2019 / Data Science and Engineering 2020; docs/methods.md, "DeepECT").

Two phases of the shared lifecycle:

1. **pretrain**: the autoencoder on reconstruction (as DEC's).
2. **cluster**: the root is split by 2-means; every ``grow_interval`` epochs the leaf with the
   largest sum of squared distances of its points to its center is split by 2-means, until
   ``max_leaves`` leaves exist. Each mini-batch: points go to their nearest leaf; loss
   L_rec + L_NC + L_DC (``hiclust.losses.deepect``); then every node's weight w ← ½w + ½·(batch
   points under it), a node whose weight falls below ``pruning_threshold`` is removed (its sibling
   takes its parent's place), and every split node's center becomes the weight-averaged center of
   the leaves under it. Leaf centers are trained by the optimizer.

The tree lives in fixed-capacity arrays inside the network (:class:`ClusterTree`), so checkpoints,
resume and ``save``/``load`` carry it with the weights. Structural changes (a split, a prune) are
rare and loop over at most 2·max_leaves nodes; the per-batch work is tensor operations.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hiclust._warnings import user_stacklevel
from hiclust.losses.deepect import data_compression_loss, node_center_loss
from hiclust.methods.base import DeepClusterer, Phase, PreparedData, common
from hiclust.methods.dec import AUTOENCODER_PARAMS, build_autoencoder, kmeans_metrics
from hiclust.methods.params import Integral, Interval, Param, Real

__all__ = ["DeepECT", "ClusterTree", "DeepECTNet"]


class ClusterTree(nn.Module):
    """A binary tree of at most ``capacity`` nodes in arrays (row = node; free rows are not alive).

    ``centers`` (capacity, D) is a parameter (the leaf rows are trained); the structure is in
    buffers: ``left``, ``right``, ``parent`` (−1 = none), ``alive``, ``weight`` (points per batch
    under the node, smoothed), ``split_rank`` (order in which inner nodes were split, −1 for leaves).
    """

    def __init__(self, capacity: int, dim: int) -> None:
        super().__init__()
        self.centers = nn.Parameter(torch.zeros(capacity, dim))
        for name in ("left", "right", "parent", "split_rank"):
            self.register_buffer(name, torch.full((capacity,), -1, dtype=torch.long))
        self.register_buffer("alive", torch.zeros(capacity, dtype=torch.bool))
        self.register_buffer("weight", torch.zeros(capacity))
        self.register_buffer("n_splits", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------ structure
    @property
    def is_leaf(self) -> torch.Tensor:
        return self.alive & (self.left < 0)

    @property
    def root(self) -> int:
        return int(torch.nonzero(self.alive & (self.parent < 0)).flatten()[0])

    def leaves(self) -> torch.Tensor:
        return torch.nonzero(self.is_leaf).flatten()

    def n_leaves(self) -> int:
        return int(self.is_leaf.sum())

    def under(self) -> torch.Tensor:
        """(M, M) bool: [a, n] = node a is n itself or one of its ancestors."""
        m = self.alive.shape[0]
        anc = torch.eye(m, dtype=torch.bool, device=self.alive.device) & self.alive[None, :]
        node = torch.arange(m, device=self.alive.device)
        up = self.parent.clone()
        for _ in range(m):  # pointer jumping up the tree: depth ≤ M steps, usually a handful
            has = (up >= 0) & self.alive
            if not bool(has.any()):
                break
            anc[up[has], node[has]] = True
            up = torch.where(has, self.parent[up.clamp_min(0)], up)
        return anc

    def reset(self, center: torch.Tensor, weight: float) -> None:
        """A tree of one leaf (the root) at ``center``."""
        with torch.no_grad():
            self.left.fill_(-1), self.right.fill_(-1), self.parent.fill_(-1), self.split_rank.fill_(-1)
            self.alive.zero_(), self.weight.zero_(), self.n_splits.zero_()
            self.centers.zero_()
            self.centers[0] = center
            self.alive[0] = True
            self.weight[0] = weight

    def split(self, node: int, centers: torch.Tensor, fractions: tuple[float, float]) -> tuple[int, int]:
        """Turns leaf ``node`` into a split node with two new leaves at ``centers`` (2, D)."""
        free = torch.nonzero(~self.alive).flatten()
        if free.numel() < 2:
            raise RuntimeError("the cluster tree is full; raise its capacity")
        a, b = int(free[0]), int(free[1])
        with torch.no_grad():
            for row, c, f in ((a, centers[0], fractions[0]), (b, centers[1], fractions[1])):
                self.centers[row] = c
                self.alive[row] = True
                self.parent[row] = node
                self.left[row] = self.right[row] = self.split_rank[row] = -1
                self.weight[row] = self.weight[node] * f
            self.left[node], self.right[node] = a, b
            self.split_rank[node] = self.n_splits
            self.n_splits += 1
        return a, b

    def prune(self, node: int) -> None:
        """Removes ``node`` and its subtree; its sibling takes its parent's place."""
        parent = int(self.parent[node])
        sibling = int(self.left[parent]) if int(self.right[parent]) == node else int(self.right[parent])
        grand = int(self.parent[parent])
        dead = self.under()[node] | (torch.arange(self.alive.shape[0], device=self.alive.device) == parent)
        with torch.no_grad():
            self.alive[dead] = False
            self.left[dead] = self.right[dead] = self.parent[dead] = self.split_rank[dead] = -1
            self.weight[dead] = 0
            self.parent[sibling] = grand
            if grand >= 0:
                if int(self.left[grand]) == parent:
                    self.left[grand] = sibling
                else:
                    self.right[grand] = sibling

    @torch.no_grad()
    def refresh_inner_centers(self, under: torch.Tensor) -> None:
        """Every split node's center = weight-averaged center of the leaves under it."""
        leaf = self.is_leaf.to(self.weight.dtype)
        w = self.weight * leaf  # (M,)
        mass = under.to(w.dtype) @ w  # (M,) total leaf weight under each node
        inner = self.alive & (self.left >= 0) & (mass > 0)
        avg = (under.to(w.dtype) @ (w[:, None] * self.centers)) / mass.clamp_min(1e-12)[:, None]
        self.centers[inner] = avg[inner]

    # ------------------------------------------------------------------ export
    def to_hierarchy_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(children (2L−1, 2), height (2L−1,), leaf_rows (L,)) in SciPy's numbering: leaves
        0..L−1 left to right, split nodes above them in reverse split order (the first split is
        the root, highest), so cutting the linkage at K clusters undoes the splits after the
        (K−1)-th."""
        left, right = self.left.tolist(), self.right.tolist()
        rank = self.split_rank.tolist()
        root = self.root
        leaf_rows: list[int] = []
        stack = [root]
        while stack:  # depth-first, left first: leaves numbered left to right
            n = stack.pop()
            if left[n] < 0:
                leaf_rows.append(n)
            else:
                stack += [right[n], left[n]]
        inner = sorted((n for n in range(len(left)) if bool(self.alive[n]) and left[n] >= 0),
                       key=lambda n: -rank[n])  # latest split first = lowest
        n_leaves = len(leaf_rows)
        ids = {row: i for i, row in enumerate(leaf_rows)}
        ids.update({row: n_leaves + j for j, row in enumerate(inner)})
        children = np.full((n_leaves + len(inner), 2), -1, dtype=np.int64)
        height = np.zeros(n_leaves + len(inner))
        for j, row in enumerate(inner):
            children[n_leaves + j] = (ids[left[row]], ids[right[row]])
            height[n_leaves + j] = j + 1
        return children, height, np.asarray(leaf_rows, dtype=np.int64)


class DeepECTNet(nn.Module):
    """An autoencoder plus the cluster tree in its embedding."""

    def __init__(self, autoencoder: nn.Module, max_leaves: int) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.tree = ClusterTree(2 * max_leaves - 1, autoencoder.embedding_dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.encode(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, ...) → (z (B, embedding_dim), x̂ (B, ...))."""
        return self.autoencoder(x)


class DeepECT(DeepClusterer):
    """Deep Embedded Cluster Tree (with ``augmentation``: DeepECT + Aug).

    ``labels_``/``predict`` give the flat partition into ``n_clusters`` clusters that the tree had
    when it had that many leaves (the later splits undone), as the hierarchical table of the
    CoHiClust paper evaluates it; ``predict_leaf`` gives the leaf of the full tree and
    ``hierarchy_`` is the full tree (dendrogram purity, leaf purity). DeepECT assigns points hard
    (nearest leaf), so ``predict_proba`` is the one-hot of ``predict``. The tree has more leaves
    than clusters: its dendrogram purity needs each item's leaf, ``evaluate(y, labels_,
    hierarchy_.to_linkage(), leaf_labels_)`` (without ``leaf_labels_`` the cluster ids would be
    read as leaf ids). A tree that grew fewer than ``n_clusters`` leaves (too few epochs) gives
    as many clusters as it has leaves, with a warning.

    {parameters}

    Attributes
    ----------
    model_ : DeepECTNet
    labels_ : ndarray of shape (N,)
        Flat cluster (0..n_clusters−1; fewer if the tree grew fewer leaves) of each training sample.
    leaf_labels_ : ndarray of shape (N,)
        Leaf of the full tree (0..L−1, as in ``hierarchy_``) of each training sample.
    hierarchy_ : hiclust.Hierarchy
        The learned tree over its L leaves.
    history_ : list of dict
        Records with "phase": "pretrain" | "cluster" (splits and prunings included).
    device_ : torch.device
    """

    _LOG_NAME = "DeepECT"
    _SUPPORTS_DISTRIBUTED = False  # splits and pruning use whole-data and per-batch global state
    _params = common(
        "batch_size", "weight_decay", "device", "seed", "random_state", "verbose", "eval_every",
        n_clusters=Param(Interval(Integral, 2, None, closed="left"),
                         "K ≥ 2 of the flat partition reported as labels_ (the tree when it had K leaves)."),
        max_leaves=Param(Interval(Integral, 2, None, closed="left"),
                         "Leaves the tree grows to: it starts with 2 and gains one every grow_interval clustering "
                         "epochs, so it needs epochs >= (max_leaves - 2) · grow_interval (a warning says when the "
                         "tree stopped short)."),
        grow_interval=Param(Interval(Integral, 1, None, closed="left"),
                            "Epochs of the clustering phase between two splits."),
        pruning_threshold=Param(Interval(Real, 0, None, closed="left"),
                                "A node whose weight (smoothed points per batch under it) falls below this is "
                                "pruned."),
        **AUTOENCODER_PARAMS,  # the same autoencoder as DEC's, declared there
        epochs=Param(Interval(Integral, 1, None, closed="left"), "Epochs of the clustering phase.",
                     resume="free"),
        lr=Param(Interval(Real, 0, None, closed="neither"), "Adam learning rate of the clustering phase."),
        n_init=Param(Interval(Integral, 1, None, closed="left"), "k-means restarts of each 2-means split."),
        augmentation=Param([str, dict, nn.Module, None],
                           "None (DeepECT) or an augmentation (DeepECT + Aug): 'affine' (small rotations and "
                           "shifts, the paper's for MNIST-like data), 'auto' (by dataset), a preset name, a dict "
                           "{'preset': name, setting: value} or a module; the augmented view shares the "
                           "original's assignment."),
    )

    def __init__(
        self,
        n_clusters: int = 10,
        max_leaves: int = 20,
        grow_interval: int = 2,
        pruning_threshold: float = 0.1,
        backbone: str = "mlp",
        hidden_dims: tuple[int, ...] = (500, 500, 2000),
        embedding_dim: int = 10,
        conv_channels: tuple[int, ...] = (32, 64, 128),
        pretrain_epochs: int = 100,
        pretrain_lr: float = 1e-3,
        epochs: int = 150,
        batch_size: int = 256,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        n_init: int = 20,
        augmentation: str | dict[str, Any] | nn.Module | None = None,
        eval_every: int = 10,
        device: str = "auto",
        seed: int = 0,
        random_state: int | None = None,
        verbose: bool = True,
    ) -> None:
        self.n_clusters = n_clusters
        self.max_leaves = max_leaves
        self.grow_interval = grow_interval
        self.pruning_threshold = pruning_threshold
        self.backbone = backbone
        self.hidden_dims = hidden_dims
        self.embedding_dim = embedding_dim
        self.conv_channels = conv_channels
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_lr = pretrain_lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.n_init = n_init
        self.augmentation = augmentation
        self.eval_every = eval_every
        self.device = device
        self.seed = seed
        self.random_state = random_state
        self.verbose = verbose

    # ----------------------------------------------------------------------------- validation
    def _check_params_vs_input(self, data: PreparedData) -> None:
        super()._check_params_vs_input(data)
        if self.n_clusters > self.max_leaves:
            raise ValueError(f"n_clusters={self.n_clusters} is larger than max_leaves={self.max_leaves}; "
                             "the flat partition is read from the grown tree")
        if self.backbone == "conv" and not data.is_image:
            raise ValueError("backbone='conv' needs images; feature matrices use backbone='mlp'")
        if self.max_leaves > data.x.shape[0]:
            raise ValueError(f"max_leaves={self.max_leaves} is larger than the number of samples "
                             f"({data.x.shape[0]}); lower max_leaves")

    def _build_model(self) -> DeepECTNet:
        return DeepECTNet(build_autoencoder(self), self.max_leaves)

    def _make_augment(self, data: PreparedData) -> nn.Module | None:
        if self.augmentation == "affine" and data.is_image:
            from hiclust.data.augment import BatchAugment

            # Small rotations and shifts, nothing else (DeepECT + Aug's augmentation for digits).
            return BatchAugment(self.image_size_, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_p=0.0,
                                jitter_p=0.0, grayscale_p=0.0, rotation=15.0, translate=0.1, padding_mode="zeros")
        return super()._make_augment(data)

    # ----------------------------------------------------------------------------- training
    def _init_fit_state(self, data: PreparedData) -> None:
        self._under = None  # (M, M) ancestor matrix of the current tree, rebuilt after each change
        self._pending: list[dict[str, Any]] = []  # prunings since the last history record

    def _phases(self, data: PreparedData) -> list[Phase]:
        return [
            Phase("pretrain", epochs=self.pretrain_epochs, lr=self.pretrain_lr, record_phase=True,
                  checkpoint_last=False, evaluate=lambda record: kmeans_metrics(self, record)),
            Phase("cluster", epochs=self.epochs, lr=self.lr, record_phase=True, start=self._split_root),
        ]

    def _views(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """Model inputs of a uint8/feature batch: the clean view, plus an augmented one with
        augmentation."""
        clean = self._eval_input(batch) if batch.ndim == 4 else batch
        if self._augment is None:
            return [clean]
        return [clean, self._augment(batch, generator=self._generators["augment"])]

    def _training_step(self, phase: Phase, batch: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        views = self._views(batch)
        outs = [self.model_(v) for v in views]
        rec = sum(F.mse_loss(x_hat, v) for (_, x_hat), v in zip(outs, views)) / len(views)
        if phase.name == "pretrain":
            return {"reconstruction": rec, "loss": rec}
        tree = self.model_.tree
        if self._under is None:
            self._under = tree.under()
        tree.refresh_inner_centers(self._under)
        z = [o[0] for o in outs]
        leaves = tree.leaves()
        with torch.no_grad():  # nearest leaf of the clean view, shared by the augmented one
            leaf_of = leaves[torch.cdist(z[0].detach(), tree.centers[leaves].detach()).argmin(1)]
        member = self._under[:, leaf_of].T  # (B, M)
        centers = torch.where(tree.is_leaf[:, None], tree.centers, tree.centers.detach())
        terms = {
            "reconstruction": rec,
            "node_center": node_center_loss(z, leaf_of, centers, int(leaves.numel())),
            "compression": data_compression_loss(z, member, centers, tree.left, tree.right),
        }
        terms["loss"] = terms["reconstruction"] + terms["node_center"] + terms["compression"]
        with torch.no_grad():
            counts = member.sum(0).to(tree.weight.dtype)
            grow = tree.alive & (tree.parent >= 0)
            tree.weight[grow] = 0.5 * tree.weight[grow] + 0.5 * counts[grow]
        self._prune_light_nodes()
        return terms

    def _prune_light_nodes(self) -> None:
        tree = self.model_.tree
        while True:
            light = torch.nonzero(tree.alive & (tree.parent >= 0) & (tree.weight < self.pruning_threshold)).flatten()
            if light.numel() == 0:
                return
            node = int(light[0])
            self._pending.append({"pruned_node": node, "weight": float(tree.weight[node])})
            tree.prune(node)
            self._under = tree.under()

    def _embedding(self) -> torch.Tensor:
        return self._batched_eval(self._embed, self._data.x).to(self.device_)

    def _split_leaf(self, node: int, z: torch.Tensor) -> dict[str, Any]:
        from sklearn.cluster import KMeans

        tree = self.model_.tree
        km = KMeans(2, n_init=self.n_init, random_state=self._seed() + int(tree.n_splits)).fit(z.double().cpu().numpy())
        frac = np.bincount(km.labels_, minlength=2) / len(km.labels_)
        a, b = tree.split(node, torch.from_numpy(km.cluster_centers_).float().to(self.device_),
                          (float(frac[0]), float(frac[1])))
        self._reset_optimizer_rows([a, b])
        self._under = tree.under()
        return {"split_node": node, "children": [a, b], "sizes": np.bincount(km.labels_, minlength=2).tolist()}

    def _reset_optimizer_rows(self, rows: list[int]) -> None:
        """New leaves start with fresh Adam moments (their rows may have held a pruned node)."""
        state = self._optimizer.state.get(self.model_.tree.centers, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][rows] = 0

    def _split_root(self) -> None:
        z = self._embedding()
        tree = self.model_.tree
        tree.reset(z.mean(0), float(self.batch_size))
        self._emit({"phase": "cluster", "epoch": 0, **self._split_leaf(tree.root, z)})

    def _on_epoch_end(self, phase: Phase, epoch: int, record: dict[str, Any]) -> None:
        if phase.name != "cluster":
            return
        if self._pending:
            record["pruned"] = self._pending
            self._pending = []
        tree = self.model_.tree
        if (epoch + 1) % self.grow_interval == 0 and tree.n_leaves() < self.max_leaves:
            z = self._embedding()
            leaves = tree.leaves()
            near = leaves[torch.cdist(z, tree.centers[leaves].detach()).argmin(1)]
            sse = torch.zeros(tree.alive.shape[0], device=z.device).index_add_(
                0, near, (z - tree.centers[near].detach()).pow(2).sum(1))
            size = torch.bincount(near, minlength=tree.alive.shape[0])
            sse[size < 2] = -1  # a leaf needs two points to be split
            node = int(sse.argmax())
            if sse[node] >= 0:
                record.update(self._split_leaf(node, z[near == node]))
        record["n_leaves"] = tree.n_leaves()

    def _evaluate_record(self, record: dict[str, Any]) -> None:
        leaf_index, flat_of_leaf = self._leaf_maps()
        flat = flat_of_leaf[leaf_index[self._leaf_rows_of(self._data.x)]]
        record.update(self._label_metrics(self._data.labels, flat))

    def _finish_fit(self, data: PreparedData) -> None:
        import warnings

        n_leaves = self.model_.tree.n_leaves()
        if n_leaves < self.n_clusters:
            # Said here rather than as empty clusters: no seed gives clusters the tree never grew.
            warnings.warn(f"the tree grew only {n_leaves} leaves, fewer than n_clusters={self.n_clusters}, so labels_ "
                          f"and predict give {n_leaves} clusters: growth adds one leaf every grow_interval="
                          f"{self.grow_interval} epochs (or pruning removed some); raise epochs to at least "
                          f"{(self.n_clusters - 2) * self.grow_interval} for {self.n_clusters} clusters",
                          stacklevel=user_stacklevel())
        elif n_leaves < self.max_leaves:
            warnings.warn(f"the tree has {n_leaves} leaves, not max_leaves={self.max_leaves}: growth adds one leaf every "
                          f"grow_interval={self.grow_interval} epochs (or pruning removed some); raise epochs to at "
                          f"least {(self.max_leaves - 2) * self.grow_interval} for the full tree", stacklevel=user_stacklevel())
        self._after_load({})
        leaf_index, flat_of_leaf = self._leaf_maps()
        self.leaf_labels_ = leaf_index[self._leaf_rows_of(data.x)]
        self.labels_ = flat_of_leaf[self.leaf_labels_]

    def _warn_if_clusters_empty(self) -> None:
        if self.model_.tree.n_leaves() >= self.n_clusters:  # else _finish_fit said why
            super()._warn_if_clusters_empty()

    def _after_load(self, state: dict[str, Any]) -> None:
        from hiclust.hierarchy import Hierarchy

        children, height, _ = self.model_.tree.to_hierarchy_arrays()
        self.hierarchy_ = Hierarchy(children, height=height, source="deepect")

    def _leaf_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """(tree row → leaf id of ``hierarchy_`` (−1 elsewhere), leaf id → flat cluster), cached
        per tree structure: ``predict_proba`` asks once per batch."""
        tree = self.model_.tree
        key = (int(tree.n_splits), tuple(tree.parent.tolist()), tuple(tree.alive.tolist()))
        cached = getattr(self, "_maps_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        self._maps_cache = (key, self._compute_leaf_maps())
        return self._maps_cache[1]

    def _compute_leaf_maps(self) -> tuple[np.ndarray, np.ndarray]:
        children, height, leaf_rows = self.model_.tree.to_hierarchy_arrays()
        index = np.full(self.model_.tree.alive.shape[0], -1, dtype=np.int64)
        index[leaf_rows] = np.arange(len(leaf_rows))
        from hiclust.hierarchy import Hierarchy

        # Built from the live tree (it changes during training); cutting at K undoes the later splits.
        flat = Hierarchy(children, height=height).cut(n_clusters=min(self.n_clusters, len(leaf_rows)))
        return index, np.asarray(flat, dtype=np.int64)

    # ----------------------------------------------------------------------------- inference
    def _leaf_rows_of(self, x: torch.Tensor) -> np.ndarray:
        tree = self.model_.tree
        leaves = tree.leaves()
        centers = tree.centers.detach()[leaves]
        return self._batched_eval(lambda b: leaves[torch.cdist(self._embed(b), centers).argmin(1)].float(),
                                  x).long().numpy()

    def _embed(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model_.encode(batch)

    def _predict_raw(self, x: torch.Tensor) -> np.ndarray:
        leaf_index, flat_of_leaf = self._leaf_maps()
        return flat_of_leaf[leaf_index[self._leaf_rows_of(x)]]

    def _proba(self, batch: torch.Tensor) -> torch.Tensor:
        tree = self.model_.tree
        leaves = tree.leaves()
        rows = leaves[torch.cdist(self._embed(batch), tree.centers.detach()[leaves]).argmin(1)]
        leaf_index, flat_of_leaf = self._leaf_maps()
        flat = torch.as_tensor(flat_of_leaf[leaf_index[rows.cpu().numpy()]], device=batch.device)
        return F.one_hot(flat, int(flat_of_leaf.max()) + 1).float()

    def predict_leaf(self, X: Any) -> np.ndarray:
        """(N,) leaf of the full tree (0..L−1, the leaves of ``hierarchy_``)."""
        return self._leaf_maps()[0][self._leaf_rows_of(self._prepare_like_fit(X))]
