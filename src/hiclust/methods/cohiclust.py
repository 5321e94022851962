"""CoHiClust: contrastive hierarchical clustering (docs/methods.md, "CoHiClust")."""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import sys
import warnings
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from hiclust import distributed as dist_utils
from hiclust import interrupt
from hiclust._warnings import user_stacklevel
from hiclust.checkpoint import capture_rng_state, restore_rng_state
from hiclust.data.features import NeighbourViews, neighbour_whitening
from hiclust.data.streaming import is_streamed
from hiclust.losses import leaf_probabilities
from hiclust.losses.modules import CoHiClustLoss
from hiclust.methods.base import DeepClusterer, Phase, PreparedData, common, default_depth
from hiclust.methods.params import Integral, Interval, Param, Real, RegistryOptions, StrOptions
from hiclust.nn import BACKBONES, InputSpace, ProjectionHead, TreeHead

__all__ = ["CoHiClust", "CoHiClustNet", "DecisionPath"]

MAX_DEPTH = 10
# Feature matrices with fewer rows than this are clustered in their input space by default
# (backbone "auto"): too few samples to train a network on, measured in benchmarks/RESULTS.md.
INPUT_SPACE_MAX_ROWS = 1000
# Input-space mode: nearest neighbours per row for the second view, the views' noise, the learning
# rate of its single linear layer, and the least number of steps per epoch (small matrices are
# passed over several times per epoch). The tree splits the standardized rows after whitening by
# the spread of neighbour differences (data.features.neighbour_whitening, shrinkage below), and
# the noise is isotropic in those coordinates, in INPUT_SPACE_WHITENING_ROUNDS rounds (each finds
# the neighbours anew in the last round's coordinates): what lifted wine's worst seed from 0.933
# to 0.972, above k-means' 0.966, and iris and breast cancer above their earlier fits
# (benchmarks/RESULTS.md, "Feature matrices: whitened input space"). Only matrices of up to
# INPUT_SPACE_MAX_WHITEN_DIM columns are whitened (the map is D × D); wider ones keep the
# standardized coordinates and the noise of INPUT_SPACE_NOISE_UNWHITENED (column sds).
INPUT_SPACE_NEIGHBOURS = 10
INPUT_SPACE_NOISE = 1.5
INPUT_SPACE_NOISE_UNWHITENED = 1.0
INPUT_SPACE_WHITENING_SHRINKAGE = 0.1
INPUT_SPACE_MAX_WHITEN_DIM = 1024
INPUT_SPACE_WHITENING_ROUNDS = 2
# Tree draws in input-space mode (tree_draws=None): each trained through the whole tree phase,
# the one of least within-cluster sum of squares kept. Before the whitening, one draw left iris
# with an empty leaf on one seed of 0-9 (ACC 0.667) and wine at 0.916 on six ("Feature matrices:
# several draws of an input-space tree"); with it, the worst of five draws picked over seeds 0-19
# was wine 0.972 where one draw's worst seed was 0.944 ("whitened input space").
INPUT_SPACE_TREE_DRAWS = 5
INPUT_SPACE_LR = 1e-2
INPUT_SPACE_MIN_STEPS = 8
# Epoch lines an input-space fit logs (2 a draw with the default 5 draws): it takes seconds, and
# each draw's prunings and evaluations (every eval_every epochs) made 50-80 lines of them.
INPUT_SPACE_LOG_LINES = 10
# MLP mode on a feature matrix held in memory: the second view is a nearest neighbour too (as
# in input-space mode), with noise of this sd (column sds), and ``epochs=None`` trains for about
# FEATURE_STEPS optimizer steps, at least FEATURE_MIN_EPOCHS and at most DEFAULT_EPOCHS epochs,
# more where the prunings need them (pre-training is then shortened to fit). Measured in
# benchmarks/RESULTS.md ("Feature matrices, MLP mode"): more steps did not help on 10,000 rows,
# and 70,000 rows × 100 epochs took 35 minutes on 2 cores. The floor is 16, not 8: 8 epochs
# left a 70,000-row matrix (K = 10) one epoch of pre-training, and the tree then split a poor
# representation (a 512-d embedding, seed 2: ACC 0.815 at 8 epochs, 0.858 at 16 with 1 of
# pre-training, 0.890 at 16 with 5; "Feature matrices: more epochs for large matrices").
FEATURE_NEIGHBOUR_NOISE = 0.1
FEATURE_STEPS = 600
FEATURE_MIN_EPOCHS = 16
DEFAULT_EPOCHS = 100
# ``augmentation`` values for a feature matrix: 'neighbours' (NeighbourViews), 'noise'
# (FeatureAugment: masking and Gaussian noise), 'auto' (neighbours when the matrix is in memory).
FEATURE_AUGMENTATIONS = ("auto", "neighbours", "noise")
# Spread ratio (widest / median varying column) above which a warning says that neighbours are
# found in the matrix as given: PCA scores and pixels stay under ~5×, raw wine's proline is ~400×.
SCALE_WARNING_RATIO = 100.0


class _SearchStopped(Exception):
    """Raised at an epoch's end inside the tree-draw search when Ctrl-C asked for a stop."""


def default_input_space(backbone: Any, n_rows: int, streamed: bool) -> bool:
    """Whether ``backbone`` 'auto' puts a feature matrix of ``n_rows`` rows in input-space mode:
    below INPUT_SPACE_MAX_ROWS rows held in memory (its views need every row's neighbours)."""
    return backbone == "auto" and not streamed and n_rows < INPUT_SPACE_MAX_ROWS


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

    def forward(self, x: torch.Tensor, with_tree: bool, with_projection: bool = True) -> tuple[torch.Tensor, ...]:
        if not with_projection:  # input-space mode: the tree alone (nothing below it to pre-train)
            return (self.net.tree(self.net.backbone(x)),)
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
    mass over that epoch) is pruned until ``n_clusters`` leaves remain. With ``tree_draws`` > 1 the
    tree phase is started from several random draws of the tree head and the draw with the most
    even leaves is kept (docs/methods.md, "Tree draws").

    A small feature matrix (under 1,000 rows) is split directly (input-space mode): no network,
    no NT-Xent and no pre-training; the tree splits the whitened rows with CoHiLoss + R1 on
    neighbour views, and of its 5 default draws the one of least within-cluster sum of squares
    is kept (docs/methods.md, "Feature matrices").

    {parameters}

    Attributes
    ----------
    model_ : CoHiClustNet
    labels_ : ndarray of shape (N,)
        Cluster of each training sample.
    history_ : list of dict
        One record per epoch (loss terms, seconds, pruned_leaf, acc/nmi/ari with labels; in tree
        epochs leaf_mass, each of the 2^depth leaves' share of the epoch's probability mass, the
        quantity pruning ranks by).
    depth_ : int
    pruned_leaves_ : list of int
        Leaf indices of the complete tree, in pruning order.
    leaf_mask_ : tensor of shape (2^T,)
    kept_leaves_ : tensor of shape (K,)
    tree_draw_ : int
        With several tree draws: the draw of the tree head that was kept (0 = the first).
    tree_draw_masses_ : list of float
        With several tree draws: each draw's largest leaf mass when the draws were compared (the
        criterion, smallest kept, except in input-space mode).
    tree_draw_within_ss_ : list of float or None
        With several tree draws in input-space mode: each draw's within-cluster sum of squares
        per row in the whitened coordinates (the criterion there, smallest kept); None elsewhere.
    input_whitening_ : bool
        Input-space mode: whether the tree splits whitened rows (matrices of at most 1,024
        columns; the map is the backbone's ``transform`` buffer, docs/methods.md, "Feature
        matrices"). False in every other mode.
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
    _CHANNELS_LAST_ON_CPU = True
    _params = common(
        "n_clusters", "backbone", "epochs", "batch_size", "lr", "weight_decay", "temperature", "projection_dim",
        "image_size", "augmentation", "eval_every", "device", "precision", "seed", "random_state", "verbose",
        n_clusters=Param(Interval(Integral, 2, None, closed="left"), "K ≥ 2, the number of leaves kept (at most 2^depth)."),
        backbone=Param([RegistryOptions({"auto", "input"}, BACKBONES), nn.Module],
                       "The network f: 'auto' (a small CNN for images up to 32 px with one channel, ResNet18 "
                       "for other images; for a feature matrix 'input' below 1,000 rows, an MLP otherwise), "
                       "'input' (feature matrices only: no network, the tree splits the standardized inputs after "
                       "whitening by the spread of neighbour differences; views are each row and a nearest "
                       "neighbour, with noise; no NT-Xent), 'mlp', a name from "
                       "hiclust.nn.BACKBONES, or an nn.Module with a feature_dim attribute."),
        lr=Param([Interval(Real, 0, None, closed="neither"), None],
                 "Adam learning rate; None: 1e-3, or 1e-2 in input-space mode (backbone 'input')."),
        augmentation=Param([str, dict, nn.Module],
                           "Images: 'auto' (chosen by dataset, see hiclust.data.augment), a preset name, a dict "
                           "{'preset': name or 'auto', setting: value, ...} (a preset with some BatchAugment "
                           "settings replaced, e.g. erase_p; in a YAML config), or a module mapping a uint8 batch "
                           "to an augmented float batch. Feature matrices: "
                           "'neighbours' (each row and one of its 10 nearest neighbours, with noise), 'noise' "
                           "(feature masking and Gaussian noise) or 'auto' (neighbours for a matrix in memory, "
                           "noise for a streamed one)."),
        neighbour_scale=Param(StrOptions({"given", "standardized"}),
                              "Feature matrices: where each row's nearest neighbours (its second views, and in "
                              "input-space mode where the whitening starts) are found; the network or tree sees "
                              "standardized rows either way. 'given' (the default: the matrix as it is, the metric "
                              "k-means would use; a column in much larger units than the others then decides them, "
                              "and a warning says so) or 'standardized' (each column scaled to unit variance first: "
                              "for columns in different units)."),
        depth=Param([Interval(Integral, 1, MAX_DEPTH, closed="both"), None],
                    "T, depth of the complete tree (2^T leaves before pruning); None: ceil(log2 K)."),
        epochs=Param([Interval(Integral, 1, None, closed="left"), None],
                     "Total epochs, pre-training included; None: 100, except for a feature matrix in MLP mode: "
                     "about 600 optimizer steps (16 to 100 epochs, more where the prunings need them).",
                     resume="free"),
        pretrain_epochs=Param([Interval(Integral, 0, None, closed="left"), None],
                              "Epochs of NT-Xent alone before the tree terms; None: epochs // 3 (0 in "
                              "input-space mode, which has no network to pre-train; with epochs=None "
                              "too, shortened where the prunings would not fit after it)."),
        prune_start=Param([Interval(Integral, 0, None, closed="left"), None],
                          "0-based epoch at whose end pruning starts (one leaf per epoch); None: 10% into the "
                          "tree phase (30% in input-space mode), leaving room for all 2^T − K prunings."),
        lr_schedule=Param([StrOptions({"cosine"}), None],
                          "None (constant lr, the reference) or 'cosine' (annealed to 0 over epochs, "
                          "stepped per epoch)."),
        cohiloss_form=Param(StrOptions({"reference", "paper"}),
                            "'reference' (the authors' code) or 'paper' (the published formula)."),
        balance_weight=Param([Interval(Real, 0, None, closed="left"), None],
                             "Weight of the balance term R1; None: 2^−T as in the reference (0 in input-space "
                             "mode: R1 pulls splits to 50/50, which measured features' classes rarely are)."),
        nt_xent_weight=Param(Interval(Real, 0, None, closed="left"),
                             "Weight of NT-Xent; 0 reproduces the ablation without it."),
        tree_draws=Param([Interval(Integral, 1, None, closed="left"), None],
                         "Random draws of the tree head tried from the end of pre-training: each trains "
                         "draw_epochs tree epochs (through the prunings) from the same state, and the draw whose "
                         "largest leaf holds the least probability mass trains on (input-space mode: the draw with "
                         "the least within-cluster sum of squares; 1: one draw, the reference). "
                         "Costs (tree_draws − 1) × draw_epochs extra epochs. None: 5 in input-space mode "
                         "(fits of seconds), else 1."),
        draw_epochs=Param([Interval(Integral, 1, None, closed="left"), None],
                          "Tree epochs each draw trains before the choice (tree_draws > 1); None: 30% of the "
                          "tree phase, and at least until one epoch after the last pruning (input-space mode: "
                          "the whole tree phase)."),
    )

    def __init__(
        self,
        n_clusters: int = 10,
        depth: int | None = None,
        backbone: str | nn.Module = "auto",
        epochs: int | None = None,
        pretrain_epochs: int | None = None,
        prune_start: int | None = None,
        batch_size: int = 256,
        lr: float | None = None,
        weight_decay: float = 1e-6,
        lr_schedule: str | None = None,
        temperature: float = 0.5,
        projection_dim: int = 128,
        image_size: int | None = None,
        augmentation: str | dict[str, Any] | nn.Module = "auto",
        neighbour_scale: str = "given",
        cohiloss_form: str = "reference",
        balance_weight: float | None = None,
        nt_xent_weight: float = 1.0,
        tree_draws: int | None = None,
        draw_epochs: int | None = None,
        eval_every: int = 10,
        device: str = "auto",
        precision: str = "auto",
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
        self.neighbour_scale = neighbour_scale
        self.cohiloss_form = cohiloss_form
        self.balance_weight = balance_weight
        self.nt_xent_weight = nt_xent_weight
        self.tree_draws = tree_draws
        self.draw_epochs = draw_epochs
        self.eval_every = eval_every
        self.device = device
        self.precision = precision
        self.seed = seed
        self.random_state = random_state
        self.verbose = verbose

    # ----------------------------------------------------------------------------- configuration
    def _input_space(self, data: PreparedData) -> bool:
        """Whether this fit clusters a feature matrix in its input space (backbone 'input', or
        'auto' on an in-memory matrix of fewer than INPUT_SPACE_MAX_ROWS rows)."""
        if data.is_image:
            if self.backbone == "input":
                raise ValueError("backbone='input' is for feature matrices; use 'auto' or a network name for images")
            return False
        if self.backbone == "input":
            if is_streamed(data.x):
                raise ValueError(
                    "backbone='input' needs the feature matrix in memory (it draws nearest neighbours); "
                    "raise the memory budget (max_memory / --max-memory) or use backbone='mlp'"
                )
            return True
        return default_input_space(self.backbone, int(data.x.shape[0]), is_streamed(data.x))

    def _neighbour_views(self, data: PreparedData) -> bool:
        """Whether training draws each row's second view from its nearest neighbours: always in
        input-space mode; in MLP mode for augmentation 'neighbours', and for 'auto' on a matrix
        held in memory ('noise', and 'auto' on a streamed matrix: FeatureAugment's masking and
        noise)."""
        if data.is_image:
            if self.neighbour_scale != "given":
                raise ValueError(f"neighbour_scale={self.neighbour_scale!r} is for feature matrices (their rows' "
                                 "neighbours); leave it out for images")
            return False
        aug = self.augmentation
        if not isinstance(aug, str) or aug not in FEATURE_AUGMENTATIONS:
            raise ValueError(
                f"augmentation={aug!r} is for images; for a feature matrix use one of "
                f"{', '.join(repr(a) for a in FEATURE_AUGMENTATIONS)}"
            )
        if self._input_space(data):
            if aug == "noise":
                raise ValueError("augmentation='noise' needs a network (backbone 'mlp'); the input-space mode "
                                 "(backbone 'input') trains on neighbour views")
            return True
        if aug == "neighbours" and is_streamed(data.x):
            raise ValueError(
                "augmentation='neighbours' needs the feature matrix in memory (it draws nearest neighbours); "
                "raise the memory budget (max_memory / --max-memory) or use augmentation='noise'"
            )
        neighbours = aug == "neighbours" or (aug == "auto" and not is_streamed(data.x))
        if not neighbours and self.neighbour_scale != "given":
            raise ValueError(f"neighbour_scale={self.neighbour_scale!r} has no neighbours to find: this matrix "
                             "is trained on noise views (augmentation 'noise', or 'auto' on a streamed matrix); "
                             "leave it out")
        return neighbours

    def _epochs(self, data: PreparedData | None = None, input_space: bool = False) -> int:
        """``epochs`` resolved: as given, or DEFAULT_EPOCHS, or for a feature matrix in MLP mode
        about FEATURE_STEPS steps (at least FEATURE_MIN_EPOCHS, and enough for the prunings)."""
        if self.epochs is not None:
            return int(self.epochs)
        if data is None or data.is_image or input_space:
            return DEFAULT_EPOCHS
        return self.feature_epochs(int(data.x.shape[0]))

    def feature_epochs(self, n_rows: int) -> int:
        """The epochs ``epochs=None`` gives a feature matrix of ``n_rows`` rows in MLP mode: about
        FEATURE_STEPS optimizer steps, FEATURE_MIN_EPOCHS to DEFAULT_EPOCHS, more where the
        prunings need them."""
        steps = max(1, int(n_rows) // self.batch_size)
        depth = default_depth(self.n_clusters) if self.depth is None else int(self.depth)
        n_prune = 2**depth - self.n_clusters
        epochs = min(DEFAULT_EPOCHS, max(FEATURE_MIN_EPOCHS, math.ceil(FEATURE_STEPS / steps)))
        # The tree phase needs one epoch per pruning and one after them; the default pre-training
        # (a third, shortened to fit, see _schedule) at least one epoch.
        pretrain = 1 if self.pretrain_epochs is None else int(self.pretrain_epochs)
        return max(epochs, pretrain + n_prune + 1)

    def _rows_per_epoch(self, data: PreparedData) -> int:
        n = int(data.x.shape[0])
        return n * self._passes(n, self.batch_size) if self._input_space(data) else n

    @staticmethod
    def _passes(n: int, batch_size: int) -> int:
        """Passes over n rows per epoch in input-space mode: enough for INPUT_SPACE_MIN_STEPS
        batches, so that a 150-row matrix gets as many steps per epoch as a large one."""
        return max(1, math.ceil(INPUT_SPACE_MIN_STEPS * batch_size / n))

    def _lr(self) -> float:
        if self.lr is not None:
            return float(self.lr)
        return INPUT_SPACE_LR if getattr(self, "backbone_", None) == "input" else 1e-3

    def _schedule(self, input_space: bool = False, epochs: int | None = None) -> tuple[int, int, int]:
        """(depth, pretrain_epochs, prune_start) resolved from the parameters (and checked);
        ``epochs``: the resolved total (``_epochs``), None for ``self.epochs`` or the default."""
        epochs = (DEFAULT_EPOCHS if self.epochs is None else int(self.epochs)) if epochs is None else int(epochs)
        k = self.n_clusters
        depth = default_depth(k) if self.depth is None else int(self.depth)
        if k > 2**depth:
            raise ValueError(
                f"n_clusters={k} is larger than the 2^depth = {2**depth} leaves of a depth-{depth} tree; "
                f"use depth >= {default_depth(k)}"
            )
        if self.pretrain_epochs is not None:
            pretrain = self.pretrain_epochs
        else:
            pretrain = 0 if input_space else epochs // 3
            if self.epochs is None:  # epochs resolved here: pre-training gives way to the prunings
                pretrain = max(0, min(pretrain, epochs - (2**depth - k) - 1))
        if not 0 <= pretrain < epochs:
            raise ValueError(
                f"pretrain_epochs={pretrain} must be in [0, epochs) so that the tree is trained at all (epochs={epochs}); "
                f"lower pretrain_epochs (e.g. to {epochs // 2}, half of the epochs, as the digits preset) or raise epochs"
            )
        n_prune = 2**depth - k
        tree_epochs = epochs - pretrain
        if self.prune_start is None:
            # Input-space trees are pruned later (30%, not 10%, into the tree phase): pruned at
            # 10%, a linear tree on iris had not yet separated its two overlapping classes and
            # one of its three leaves ended up empty (benchmarks/RESULTS.md, "Feature matrices").
            share = 0.3 if input_space else 0.1
            prune_start = pretrain + max(0, min(int(tree_epochs * share), tree_epochs - n_prune))
        else:
            prune_start = self.prune_start
        if n_prune and (prune_start < pretrain or prune_start + n_prune > epochs):
            if self.prune_start is not None:
                least = max(self.prune_start, pretrain) + n_prune
            elif self.pretrain_epochs is not None:
                least = pretrain + n_prune
            else:  # the default pre-training is a third of the epochs
                least = next(e for e in itertools.count(n_prune) if e - e // 3 >= n_prune)
            # Say which of the numbers were derived: the user may not have set them.
            derived_start = "" if self.prune_start is not None else " (the default for these epochs)"
            derived_pre = "" if self.pretrain_epochs is not None else ", the default for these epochs"
            raise ValueError(
                f"pruning {n_prune} leaves one per epoch from epoch {prune_start}{derived_start} needs "
                f"pretrain_epochs ({pretrain}{derived_pre}) <= prune_start and prune_start + {n_prune} <= epochs ({epochs}); "
                f"raise epochs (to at least {least} with these settings)"
                + (" or lower " + "/".join(name for name, v in (("prune_start", prune_start), ("pretrain_epochs", pretrain))
                                          if v > 0) if prune_start > 0 or pretrain > 0 else "")
                + ("" if depth <= default_depth(self.n_clusters) else
                   f", or ask for a shallower tree (depth {default_depth(self.n_clusters)} prunes "
                   f"{2 ** default_depth(self.n_clusters) - self.n_clusters} leaves, not {n_prune})")
            )
        return depth, pretrain, prune_start

    def _check_params_vs_input(self, data: PreparedData) -> None:
        super()._check_params_vs_input(data)
        if not data.is_image:
            n, k = int(data.x.shape[0]), self.n_clusters
            if n < 2 * k:
                raise ValueError(
                    f"n_clusters={k} needs at least 2·K = {2 * k} rows, got {n}; lower n_clusters or add rows"
                )
            if not is_streamed(data.x) and n > 1 and bool((data.x == data.x[:1]).all()):
                raise ValueError(
                    f"every column of the feature matrix is constant (all {n} rows are identical); there is "
                    "nothing to cluster: check that the right matrix was passed"
                )
        input_space = self._input_space(data)
        self._neighbour_views(data)
        epochs = self._epochs(data, input_space)
        _, pretrain, _ = self._schedule(input_space, epochs)
        draws = self._tree_draws(input_space)
        if draws > 1 and self.draw_epochs is not None and self.draw_epochs > epochs - pretrain:
            raise ValueError(f"draw_epochs={self.draw_epochs} is longer than the tree phase ({epochs - pretrain} epochs: "
                             f"epochs={epochs} minus pretrain_epochs={pretrain}); lower draw_epochs or raise epochs")
        if self.tree_draws is not None and self.tree_draws > 1 and self.lr_schedule is not None:
            raise ValueError(f"tree_draws={self.tree_draws} is not implemented with lr_schedule={self.lr_schedule!r}; "
                             "leave lr_schedule unset (a constant learning rate) or set tree_draws=1")

    def _resume_free_params(self) -> frozenset[str]:
        # More epochs may be asked for on resume, unless a schedule was planned over the old count.
        return self._resume_free if self.lr_schedule is None else self._resume_free - {"epochs"}

    def _build_model(self) -> CoHiClustNet:
        if self.backbone_ == "input":
            backbone: nn.Module = InputSpace(self.input_shape_[0], whiten=self.input_whitening_)
        else:
            backbone = self._backbone_for(self.input_shape_, self.image_size_ or 0)
        return CoHiClustNet(backbone, self.depth_, self.projection_dim)

    # ----------------------------------------------------------------------------------- training
    def _init_fit_state(self, data: PreparedData) -> None:
        input_space = self._input_space(data)
        # Resolved once and saved with the model: "input", "mlp" (other feature backbones) or
        # None (images); a loaded model rebuilds the same network without the data.
        self.backbone_ = "input" if input_space else (None if data.is_image else "mlp")
        self.input_whitening_ = input_space and int(data.x.shape[1]) <= INPUT_SPACE_MAX_WHITEN_DIM
        self._n_epochs = self._epochs(data, input_space)
        self.depth_, self._pretrain, self._prune_start = self._schedule(input_space, self._n_epochs)
        self._feature_views: NeighbourViews | None = None
        self._use_neighbours = self._neighbour_views(data)
        device = getattr(self, "device_", torch.device("cpu"))
        self.leaf_mask_ = torch.ones(2**self.depth_, device=device)
        self.pruned_leaves_: list[int] = []
        self._mass = torch.zeros(2**self.depth_, device=device)
        balance = self.balance_weight if self.balance_weight is not None or not input_space else 0.0
        self._loss = CoHiClustLoss(self.temperature, self.cohiloss_form, balance, self.nt_xent_weight,
                                   gather_distributed=True)

    def _phases(self, data: PreparedData) -> list[Phase]:
        if self._use_neighbours and self._feature_views is None:
            from hiclust.losses.dec import knn_graph

            k = min(INPUT_SPACE_NEIGHBOURS, self._x.shape[0] - 1)
            # Neighbours by Euclidean distance in the matrix as given by default (the metric k-means
            # and Ward would use; the network still sees standardized rows): standardizing each
            # column first lifted the noisy last components of MNIST PCA-64 to the leading ones'
            # weight (NMI 0.628 vs 0.674, benchmarks/RESULTS.md); neighbour_scale='standardized'
            # is for columns in different units. Exact and deterministic: a resume finds the same.
            standardized = self.neighbour_scale == "standardized"
            if not standardized:
                self._warn_scales()
            if self.backbone_ == "input" and self.precision == "bfloat16":
                warnings.warn("precision='bfloat16' has nothing to speed up in input-space mode (backbone 'input': "
                              "one linear layer, no network); it trains in float32", UserWarning,
                              stacklevel=user_stacklevel())
            neighbours, _ = knn_graph(self._x if standardized else self._x * self.feature_std_, k)
            noise, basis = FEATURE_NEIGHBOUR_NOISE, None
            if self.backbone_ == "input":
                noise = INPUT_SPACE_NOISE if self.input_whitening_ else INPUT_SPACE_NOISE_UNWHITENED
            if self.input_whitening_:
                # Deterministic: a resume computes the same map as the checkpoint holds.
                # Each round whitens by the current neighbours' differences, then finds every row's
                # neighbours anew in the whitened coordinates (where more of them share its class).
                for _ in range(INPUT_SPACE_WHITENING_ROUNDS):
                    transform, basis = neighbour_whitening(self._x, neighbours, INPUT_SPACE_WHITENING_SHRINKAGE)
                    neighbours, _ = knn_graph(self._x @ transform, k)
                self.model_.backbone.set_transform(transform)
            self._feature_views = NeighbourViews(self._x, neighbours, noise, basis).to(self.device_)
        return [Phase("train", epochs=self._n_epochs, lr=self._lr(), schedule=self.lr_schedule)]

    def _autocast(self) -> Any:
        # Input-space mode has no network: bfloat16 would only round the tree's one linear layer.
        if getattr(self, "backbone_", None) == "input":
            return contextlib.nullcontext()
        return super()._autocast()

    def _warn_scales(self) -> None:
        """Warns when a column's spread is more than SCALE_WARNING_RATIO times the median
        column's: neighbours are found in the matrix as given, so such a column decides them."""
        std = self.feature_std_.detach().cpu().double()
        varying = std[std > 2e-6]  # column_stats floors constant columns' sd at 1e-6
        if varying.numel() < 2:
            return
        # The true median (torch.median returns the lower of the two middle values).
        median = float(np.median(varying.numpy()))
        ratio = float(varying.max()) / median
        if ratio > SCALE_WARNING_RATIO:
            wide = torch.nonzero(std > SCALE_WARNING_RATIO * median).flatten()
            wide = wide[torch.argsort(std[wide], descending=True)].tolist()
            names = getattr(self, "feature_names_in_", None)

            def column(j: int) -> str:
                name = f"{str(names[j])!r}" if names is not None else f"{j} (0-based)"
                return f"{name} (sd {float(std[j]):.3g}, {float(std[j]) / median:,.0f}× the median)"

            shown = ", ".join(column(j) for j in wide[:3]) + (f" and {len(wide) - 3} more" if len(wide) > 3 else "")
            if len(wide) == 1:
                head = f"feature column {shown} spreads"
            else:
                head = f"{len(wide)} feature columns spread"
            listing = "" if len(wide) == 1 else f": {shown}"
            warnings.warn(
                f"{head} more than {SCALE_WARNING_RATIO:g} times as widely as the median column (sd {median:.3g}){listing}; "
                "nearest neighbours are found in the matrix as given, so the widest columns decide them; "
                "for columns in different units pass neighbour_scale='standardized'",
                UserWarning, stacklevel=user_stacklevel(),
            )

    def _phase_data(self, phase: Phase) -> torch.Tensor:
        if self._feature_views is None:
            return super()._phase_data(phase)
        # Neighbour views are drawn by row index (the second view is a neighbour of the first);
        # input-space mode passes several times over a small matrix per epoch.
        n = self._x.shape[0]
        passes = self._passes(n, self.batch_size) if self.backbone_ == "input" else 1
        return torch.arange(n, device=self.device_).repeat(passes)

    def _views(self, batch: torch.Tensor) -> torch.Tensor:
        if self._feature_views is None:
            return super()._views(batch)
        return self._feature_views(batch, generator=self._generators["augment"])

    def _train_module(self) -> nn.Module:
        return _TrainForward(self.model_)

    def _find_unused_parameters(self, phase: Phase, start_epoch: int) -> bool:
        # The tree head idles in pre-training; the projection head throughout input-space mode.
        return start_epoch < self._pretrain or self.backbone_ == "input"

    def _training_step(self, phase: Phase, batch: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        b = batch.shape[0]
        with_tree = epoch >= self._pretrain
        # Input-space mode trains the tree alone: with no network beneath it, NT-Xent on the
        # projection head could not change the tree (and cost ~5× the tree's own step).
        with_projection = self.backbone_ != "input"
        with self._autocast():
            outs = self._net(self._views(batch), with_tree, with_projection)
        # [z_a, z_b] (+ [d_a, d_b]): row j of each half comes from the same image.
        halves = [half for out in outs for half in (out[:b].float(), out[b:].float())]
        if not with_projection:
            halves = [None, None, *halves]
        terms = self._loss(*halves, leaf_mask=self.leaf_mask_ if with_tree else None)
        if with_tree:
            # Local rows; summed over the ranks at the epoch's end, so all ranks prune alike.
            self._mass.add_(leaf_probabilities(torch.cat(halves[2:]).detach(), self.leaf_mask_).sum(0))
        return terms

    # ------------------------------------------------------------------------- tree draws
    def _tree_draws(self, input_space: bool | None = None) -> int:
        """tree_draws resolved: as given, else INPUT_SPACE_TREE_DRAWS in input-space mode and 1
        otherwise (a constant learning rate only: with a schedule the draws would not restart it)."""
        if self.tree_draws is not None:
            return int(self.tree_draws)
        if input_space is None:
            input_space = getattr(self, "backbone_", None) == "input"
        return INPUT_SPACE_TREE_DRAWS if input_space and self.lr_schedule is None else 1

    def _extra_epochs(self) -> int:
        draws = self._tree_draws()
        return 0 if draws <= 1 else (draws - 1) * (self._draw_search_end() - self._pretrain)

    def _log_plan(self, planned: int) -> tuple[int, bool]:
        if self.backbone_ == "input":  # a fit of seconds: a few lines a draw, no event lines
            return max(1, planned // INPUT_SPACE_LOG_LINES), False
        return super()._log_plan(planned)

    def _logged_events(self, planned: int) -> int:
        # and the prunings, in each tree draw
        return super()._logged_events(planned) + self._tree_draws() * (2**self.depth_ - self.n_clusters)

    def _draw_search_end(self) -> int:
        """The epoch (counted from 1) at whose end the tree draws are compared."""
        if self.draw_epochs is not None:
            span = int(self.draw_epochs)
        elif self.backbone_ == "input":  # fits of seconds: compare the finished trees
            span = self._n_epochs - self._pretrain
        else:  # 30% of the tree phase (measured on digits), and past the last pruning
            last_pruning = self._prune_start + 2**self.depth_ - self.n_clusters - self._pretrain
            span = max(last_pruning + 1, round(0.3 * (self._n_epochs - self._pretrain)))
        return min(self._pretrain + span, self._n_epochs)

    def _snapshot(self, optimizer_state: dict[str, Any]) -> dict[str, Any]:
        """Everything the training of one tree draw changes, copied: weights, optimizer, random
        streams, pruning state."""
        return {"model": {k: v.detach().clone() for k, v in self.model_.state_dict().items()},
                "optimizer": copy.deepcopy(optimizer_state),
                "generators": {k: g.get_state() for k, g in self._generators.items()},
                "rng": capture_rng_state(), "leaf_mask": self.leaf_mask_.clone(),
                "pruned": list(self.pruned_leaves_), "mass": self._mass.clone()}

    def _restore(self, snap: dict[str, Any]) -> None:
        self.model_.load_state_dict(snap["model"])
        for k, g in self._generators.items():
            g.set_state(snap["generators"][k])
        restore_rng_state(snap["rng"])
        self.leaf_mask_.copy_(snap["leaf_mask"])
        self.pruned_leaves_[:] = snap["pruned"]
        self._mass.copy_(snap["mass"])

    def _use_optimizer_state(self, phase: Phase, state: dict[str, Any]) -> None:
        """A fresh optimizer holding a copy of ``state``: what a checkpoint written now saves."""
        self._optimizer = self._make_optimizer(phase)
        self._optimizer.load_state_dict(copy.deepcopy(state))
        self._scheduler = None

    def _redraw_tree(self, draw: int) -> None:
        """A fresh random tree head for draw ``draw`` ≥ 1, from its own seed (the global random
        stream is left as it was, so every draw sees the same augmentations and batches)."""
        with torch.random.fork_rng(devices=[self.device_] if self.device_.type == "cuda" else []):
            torch.manual_seed(10_000 * (self._seed() + 1) + draw)
            self.model_.tree.linear.reset_parameters()

    def _run_phase(self, phase: Phase, start_epoch: int, opt_state: Any, sched_state: Any) -> None:
        """With ``tree_draws`` > 1: pre-training, then each tree draw trained from its end for
        ``draw_epochs`` (no checkpoint in between: a Ctrl-C then stops after the search, with one),
        the draw whose largest leaf holds the least mass kept, and the rest of the epochs."""
        draws = self._tree_draws()
        if draws <= 1 or start_epoch > self._pretrain:
            super()._run_phase(phase, start_epoch, opt_state, sched_state)
            return
        from dataclasses import replace

        end = self._draw_search_end()
        after = self._epochs_after
        span = end - self._pretrain
        if start_epoch < self._pretrain:
            if after is not None:
                self._epochs_after = after + draws * span + phase.epochs - end
            super()._run_phase(replace(phase, epochs=self._pretrain), start_epoch, opt_state, sched_state)
        elif self._pretrain == 0 or opt_state is None:
            super()._run_phase(replace(phase, epochs=self._pretrain), start_epoch, opt_state, sched_state)
        else:  # resumed from the checkpoint written where pre-training ended
            self._use_optimizer_state(phase, opt_state)
        base = self._snapshot(self._optimizer.state_dict())
        search = replace(phase, epochs=end, checkpoint_last=False)
        results = []
        checkpoint, self._checkpoint = self._checkpoint, None
        self._search_checkpoint = checkpoint is not None  # a Ctrl-C can stop the search only with one
        stopped = False
        try:
            for draw in range(draws):
                if draw:
                    self._restore(base)
                    self._redraw_tree(draw)
                self._draw = draw
                if after is not None:
                    self._epochs_after = after + (draws - draw - 1) * span + phase.epochs - end
                first = len(self.history_)
                try:
                    # a copy: the optimizer takes the state's tensors as they are and updates them in place
                    super()._run_phase(search, self._pretrain, copy.deepcopy(base["optimizer"]), None)
                except _SearchStopped:
                    del self.history_[first:]
                    stopped = True
                    break
                largest = max(self.history_[-1].get("leaf_mass") or [math.inf])
                score = self._within_cluster_ss() if self.backbone_ == "input" else largest
                results.append((score, draw, self._snapshot(self._optimizer.state_dict()), self.history_[first:],
                                largest))
                del self.history_[first:]
        finally:
            self._checkpoint, self._draw, self._epochs_after = checkpoint, None, after
        if stopped:  # Ctrl-C: back to the end of pre-training, where a resume searches again
            if self.verbose and dist_utils.is_main():
                print(f"[{self._LOG_NAME}] tree draws: stopped in draw {len(results)} of {draws}; the search keeps no "
                      f"checkpoint of its own, so a resume searches again from epoch {self._pretrain} (the end of "
                      "pre-training)", file=sys.stderr, flush=True)
            self._restore(base)
            self._use_optimizer_state(phase, base["optimizer"])
            self._save_training({"phase": phase.name, "epoch": self._pretrain})  # raises TrainingInterrupted
            raise interrupt.TrainingInterrupted({"phase": phase.name, "epoch": self._pretrain})
        _, best, state, records, _ = min(results, key=lambda r: (r[0], r[1]))
        self._restore(state)
        self.history_.extend(records)
        self.tree_draw_ = best
        self.tree_draw_masses_ = [round(float(r[4]), 5) for r in results]
        self.tree_draw_within_ss_ = [round(float(r[0]), 5) for r in results] if self.backbone_ == "input" else None
        if self.verbose and dist_utils.is_main():
            rest = f"epochs {end + 1}-{phase.epochs} go on from it" if end < phase.epochs else "it is the result"
            # Draws are numbered from 0, as tree_draw in the epoch lines and tree_draw_: the kept
            # draw's score is named too, so the line does not read as if the wrong one was kept.
            name, short, scores = "largest leaf mass", "mass", self.tree_draw_masses_
            if self.tree_draw_within_ss_ is not None:
                coordinates = "whitened" if self.input_whitening_ else "standardized"
                name = f"within-cluster sum of squares per row ({coordinates} coordinates)"
                short, scores = "sum of squares", self.tree_draw_within_ss_
            listed = " / ".join(f"{m:.3f}" for m in scores)
            print(f"[{self._LOG_NAME}] tree draws: {name} {listed} at epoch {end}; kept draw {best} "
                  f"(numbered from 0; {short} {scores[best]:.3f}), {rest}", file=sys.stderr, flush=True)
        self._use_optimizer_state(phase, state["optimizer"])
        if self._checkpoint is not None:  # the chosen draw is where a resume continues
            self._save_training({"phase": phase.name, "epoch": end})
        if end < phase.epochs:
            super()._run_phase(phase, end, state["optimizer"], None)

    def _within_cluster_ss(self) -> float:
        """k-means' criterion for the current tree's partition of the training rows: the mean
        squared distance of a row to its cluster's mean, in the coordinates the tree splits (the
        whitened rows in input-space mode). Compares input-space tree draws: over seeds 0–19 its
        worst pick on wine was better than the largest leaf mass's (ACC 0.972 against 0.955) and
        no worse on iris and breast cancer (benchmarks/RESULTS.md, "Feature matrices: whitened
        input space"); a draw that leaves a leaf empty scores worse, as it has fewer clusters."""
        with torch.no_grad():
            h = self.model_.backbone(self._x)
            decisions = self.model_.tree(h)  # (not the projection head: its batch norm would update)
            h = h.double()
            labels = leaf_probabilities(decisions.float(), self.leaf_mask_).argmax(1)
            n_leaves = self.leaf_mask_.shape[0]
            counts = torch.bincount(labels, minlength=n_leaves).clamp_min(1).to(h)
            sums = torch.zeros(n_leaves, h.shape[1], dtype=h.dtype, device=h.device).index_add_(0, labels, h)
            # Σ_i ‖h_i − mean_c(i)‖² = Σ_i ‖h_i‖² − Σ_c ‖Σ_{i∈c} h_i‖² / n_c
            total = h.square().sum() - (sums.square().sum(1) / counts).sum()
        return float(total) / h.shape[0]

    def _on_epoch_end(self, phase: Phase, epoch: int, record: dict[str, Any]) -> None:
        if getattr(self, "_draw", None) is not None:
            record["tree_draw"] = self._draw
            if interrupt.stop_requested() and self._checkpoint is None and self._search_checkpoint:
                raise _SearchStopped  # Ctrl-C in the search: stop now (see _run_phase)
        dist_utils.all_reduce_sum(self._mass)
        total = float(self._mass.sum())
        if total > 0:  # tree epochs: each leaf's share of the epoch's probability mass (pruned: 0)
            record["leaf_mass"] = [round(float(m), 5) for m in (self._mass / total).cpu()]
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
        # "schedule": pre-training and pruning epochs as resolved when training started; a resume
        # keeps them, whatever epochs it asks for (re-deriving them mid-run moved the prunings).
        schedule = [self._pretrain, self._prune_start] if hasattr(self, "_pretrain") else None
        draws = None if not hasattr(self, "tree_draw_") else {
            "chosen": self.tree_draw_, "largest_leaf_mass": list(self.tree_draw_masses_),
            "within_ss": getattr(self, "tree_draw_within_ss_", None)}
        return {"depth": self.depth_, "leaf_mask": self.leaf_mask_.cpu(), "pruned_leaves": list(self.pruned_leaves_),
                "backbone": self.backbone_, "schedule": schedule, "tree_draws": draws,
                "input_whitening": self.input_whitening_}

    def _check_resume_state(self, state: dict[str, Any], path: Any) -> None:
        schedule = state.get("schedule")
        if not schedule or self.epochs is None:  # epochs=None resolves as it did at the start
            return
        pretrain, prune_start = (int(v) for v in schedule)
        n_prune = 2 ** int(state["depth"]) - self.n_clusters
        if n_prune and int(self.epochs) < prune_start + n_prune:
            raise ValueError(
                f"{path} was started with {pretrain} pre-training epochs and prunes its {n_prune} leaves one per epoch "
                f"from epoch {prune_start}, so it reaches n_clusters={self.n_clusters} leaves only with epochs >= "
                f"{prune_start + n_prune}; resume with epochs >= {prune_start + n_prune}"
            )

    def _load_extra_state(self, state: dict[str, Any], path: Any) -> None:
        if getattr(self, "depth_", state["depth"]) != state["depth"]:
            from hiclust.checkpoint import CheckpointError

            raise CheckpointError(f"{path} was trained with depth {state['depth']}; this run has depth {self.depth_}")
        self.depth_ = int(state["depth"])
        self.leaf_mask_ = state["leaf_mask"].to(self.device_)
        self.pruned_leaves_ = [int(v) for v in state["pruned_leaves"]]
        if state.get("tree_draws"):
            self.tree_draw_ = int(state["tree_draws"]["chosen"])
            self.tree_draw_masses_ = [float(v) for v in state["tree_draws"]["largest_leaf_mass"]]
            within = state["tree_draws"].get("within_ss")
            self.tree_draw_within_ss_ = None if within is None else [float(v) for v in within]
        if state.get("schedule") and hasattr(self, "_n_epochs"):  # resuming a fit: keep its schedule
            self._pretrain, self._prune_start = (int(v) for v in state["schedule"])
        # Models saved before input-space mode existed trained an MLP on every feature matrix.
        self.backbone_ = state.get("backbone", "mlp" if len(self.input_shape_) == 1 else None)
        # Input-space models saved before the whitening existed split the standardized rows.
        self.input_whitening_ = bool(state.get("input_whitening", False))
