"""Each method's loss as a small :class:`torch.nn.Module` built on the pure functions of
:mod:`hiclust.losses`.

A module checks its hyperparameters once, in ``__init__`` (a :class:`ValueError` names the
parameter and its allowed range), and returns from ``forward`` a dict of named scalar terms whose
``"loss"`` entry is the weighted total to back-propagate; the other entries are for logging.

For a single process the numbers are bit-identical to the pure-function expressions the methods
have always computed (the same functions, called in the same order, with the same arguments).

Distributed training: the contrastive modules (:class:`NTXentLoss`, :class:`CoHiClustLoss`,
:class:`CCLoss`) take ``gather_distributed=True``. When a process group of more than one process is
initialized (:func:`hiclust.distributed.is_distributed`), ``forward`` then gathers every rank's
rows of all its inputs with ONE collective (:func:`hiclust.distributed.all_gather_with_grad`,
which keeps the gradient path) and computes the loss on the global batch, identically on every
rank. Rank r's inputs then receive G·∂L/∂(its rows), which DDP's gradient averaging (÷G) turns into
exactly a single process's gradient (see :mod:`hiclust.distributed`). With one process, or with
``gather_distributed=False``, nothing is gathered and the inputs are used as they are.
:class:`DECLoss` has no gather: DEC's loss is a mean of per-sample terms, not a comparison of
samples with each other.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from hiclust import distributed as dist_utils
from hiclust.losses.contrastive import cluster_contrastive_loss, cluster_entropy, nt_xent
from hiclust.losses.dec import balance_kl, kl_divergence, kmeans_loss, student_t_assignment
from hiclust.losses.tree import cohiloss, depth_from_decisions, tree_balance_loss

__all__ = ["NTXentLoss", "CoHiClustLoss", "CCLoss", "DECLoss"]

COHILOSS_FORMS = ("reference", "paper")
BALANCE_PRIORS = ("uniform", "zipf")


# ------------------------------------------------------------------------------ validation
def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0 or math.isinf(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def _check_non_negative(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0 or math.isinf(value):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value


def _check_flag(name: str, value: bool) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


# ------------------------------------------------------------------------------ gather
def _gather_rows(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's rows of ``tensors`` (each (B_local, D_i)) as (G·B_local, D_i), in rank order.

    One collective for all of them: the float32 copies are concatenated along dim 1, gathered with
    gradients, and split back by widths.
    """
    rows = tensors[0].shape[0] if tensors[0].ndim == 2 else None
    for t in tensors:
        if t.ndim != 2 or t.shape[0] != rows:
            raise ValueError(
                "the gathered inputs must all be 2-D with the same number of rows, got shapes "
                + ", ".join(str(tuple(x.shape)) for x in tensors)
            )
    widths = [t.shape[1] for t in tensors]
    gathered = dist_utils.all_gather_with_grad(torch.cat([t.float() for t in tensors], dim=1))
    return list(gathered.split(widths, dim=1))


class _GatheringLoss(nn.Module):
    """Base of the contrastive losses: owns the ``gather_distributed`` switch."""

    def __init__(self, gather_distributed: bool) -> None:
        super().__init__()
        self.gather_distributed = _check_flag("gather_distributed", gather_distributed)

    def _maybe_gather(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The global batch when gathering applies; otherwise the very same tensors, untouched."""
        if self.gather_distributed and dist_utils.is_distributed():
            return tuple(_gather_rows(*tensors))
        return tensors


# ------------------------------------------------------------------------------ losses
class NTXentLoss(_GatheringLoss):
    """NT-Xent (normalized temperature-scaled cross entropy) of two views, as in SimCLR.

    Rows j of ``z_a`` and ``z_b`` are the two views of one sample (positives); every other row of
    the 2N is a negative. Wraps :func:`hiclust.losses.nt_xent`.

    Parameters
    ----------
    temperature : float, default 0.5
        τ > 0 dividing the cosine similarities.
    gather_distributed : bool, default False
        Compute the loss over the global batch of all ranks when a process group of more than
        one process is initialized (gradients flow back to each rank's rows); see the module
        docstring. No effect for a single process.

    Raises
    ------
    ValueError
        ``temperature`` is not > 0.

    Examples
    --------
    >>> import torch
    >>> from hiclust.losses import NTXentLoss
    >>> gen = torch.Generator().manual_seed(0)
    >>> z_a, z_b = torch.randn(4, 8, generator=gen), torch.randn(4, 8, generator=gen)
    >>> criterion = NTXentLoss(temperature=0.5)
    >>> terms = criterion(z_a, z_b)
    >>> sorted(terms)
    ['loss', 'nt_xent']
    >>> round(terms["loss"].item(), 3)
    2.314
    """

    def __init__(self, temperature: float = 0.5, gather_distributed: bool = False) -> None:
        super().__init__(gather_distributed)
        self.temperature = _check_positive("temperature", temperature)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """NT-Xent of the two views.

        Parameters
        ----------
        z_a, z_b : torch.Tensor, shape (N, D)
            Projections of the two views (normalized inside, so any scale works).

        Returns
        -------
        dict of str to torch.Tensor
            Scalars ``"nt_xent"`` and ``"loss"`` (the same value).
        """
        z_a, z_b = self._maybe_gather(z_a, z_b)
        term = nt_xent(z_a, z_b, self.temperature)
        return {"nt_xent": term, "loss": term}

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather_distributed={self.gather_distributed}"


class CoHiClustLoss(_GatheringLoss):
    """CoHiClust's loss: w_R2·NT-Xent + CoHiLoss + w_R1·R1 (tree balance; docs/methods.md, "Regularization").

    Without decisions (the pre-training epochs) only the weighted NT-Xent term is computed. Wraps
    :func:`hiclust.losses.nt_xent`, :func:`hiclust.losses.cohiloss` and
    :func:`hiclust.losses.tree_balance_loss`.

    Parameters
    ----------
    temperature : float, default 0.5
        τ > 0 of NT-Xent.
    form : {"reference", "paper"}, default "reference"
        Form of CoHiLoss (see :func:`hiclust.losses.cohiloss`).
    balance_weight : float or None, default None
        Weight ≥ 0 of the balance regularizer R1; None means 2^−T for a tree of depth T (read
        from the decisions' width), as in the reference code.
    nt_xent_weight : float, default 1.0
        Weight ≥ 0 of NT-Xent (R2); 0 is the ablation without it.
    gather_distributed : bool, default False
        Compute the loss over the global batch of all ranks (one collective gathers z_a, z_b and
        the decisions); see the module docstring. No effect for a single process.

    Raises
    ------
    ValueError
        A temperature not > 0, a negative weight, or an unknown ``form``.

    Examples
    --------
    >>> import torch
    >>> from hiclust.losses import CoHiClustLoss
    >>> gen = torch.Generator().manual_seed(0)
    >>> z_a, z_b = torch.randn(4, 8, generator=gen), torch.randn(4, 8, generator=gen)
    >>> d_a, d_b = torch.rand(4, 3, generator=gen), torch.rand(4, 3, generator=gen)  # depth 2
    >>> mask = torch.tensor([1.0, 1.0, 0.0, 1.0])  # leaf 2 pruned
    >>> criterion = CoHiClustLoss(temperature=0.5)
    >>> terms = criterion(z_a, z_b, d_a, d_b, mask)
    >>> sorted(terms)
    ['balance', 'cohiloss', 'loss', 'nt_xent']
    >>> round(terms["loss"].item(), 3)
    2.601
    >>> sorted(criterion(z_a, z_b))  # pre-training: NT-Xent only
    ['loss', 'nt_xent']
    """

    def __init__(
        self,
        temperature: float = 0.5,
        form: str = "reference",
        balance_weight: float | None = None,
        nt_xent_weight: float = 1.0,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__(gather_distributed)
        self.temperature = _check_positive("temperature", temperature)
        self.form = _check_choice("form", form, COHILOSS_FORMS)
        self.balance_weight = None if balance_weight is None else _check_non_negative("balance_weight", balance_weight)
        self.nt_xent_weight = _check_non_negative("nt_xent_weight", nt_xent_weight)

    def forward(
        self,
        z_a: torch.Tensor,
        z_b: torch.Tensor,
        d_a: torch.Tensor | None = None,
        d_b: torch.Tensor | None = None,
        leaf_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The loss terms of one batch.

        Parameters
        ----------
        z_a, z_b : torch.Tensor, shape (N, D), or None
            Projections of the two views; None (both, with decisions given) leaves NT-Xent out.
        d_a, d_b : torch.Tensor, shape (N, 2^T − 1), optional
            Tree-head decisions (probability of going left, heap order) of the two views; both or
            neither. Without them only NT-Xent is computed.
        leaf_mask : torch.Tensor, shape (2^T,), optional
            0 for pruned leaves, 1 otherwise (not gathered: it is the same on every rank). Ignored
            without decisions.

        Returns
        -------
        dict of str to torch.Tensor
            Scalars ``"nt_xent"`` (with projections), and with decisions ``"cohiloss"`` and
            ``"balance"`` (R1 before its weight); ``"loss"`` = nt_xent_weight·nt_xent
            [+ cohiloss + balance_weight·balance].
        """
        if (d_a is None) != (d_b is None):
            raise ValueError("pass the decisions of both views (d_a and d_b) or of neither")
        if (z_a is None) != (z_b is None) or (z_a is None and d_a is None):
            raise ValueError("pass the projections of both views (z_a and z_b), or of neither with decisions")
        if z_a is None:  # no projection head in use (CoHiClust's input-space mode): no NT-Xent term
            d_a, d_b = self._maybe_gather(d_a, d_b)
            terms: dict[str, torch.Tensor] = {}
            loss = d_a.new_zeros(())
        else:
            if d_a is None:
                z_a, z_b = self._maybe_gather(z_a, z_b)
            else:
                z_a, z_b, d_a, d_b = self._maybe_gather(z_a, z_b, d_a, d_b)
            terms = {"nt_xent": nt_xent(z_a, z_b, self.temperature)}
            loss = self.nt_xent_weight * terms["nt_xent"]
        if d_a is not None:
            if self.balance_weight is None:
                balance_weight = 2.0 ** -depth_from_decisions(d_a.shape[1])
            else:
                balance_weight = self.balance_weight
            terms["cohiloss"] = cohiloss(d_a, d_b, leaf_mask, self.form)
            terms["balance"] = tree_balance_loss(d_a, d_b, leaf_mask)
            loss = loss + terms["cohiloss"] + balance_weight * terms["balance"]
        terms["loss"] = loss
        return terms

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, form={self.form!r}, balance_weight={self.balance_weight}, "
            f"nt_xent_weight={self.nt_xent_weight}, gather_distributed={self.gather_distributed}"
        )


class CCLoss(_GatheringLoss):
    """Contrastive Clustering's loss: instance NT-Xent + cluster contrast + entropy term.

    ``loss = instance + cluster + entropy_weight · (2·log M − entropy)``, M = ``n_clusters``; the
    constant 2·log M (the maximum of the entropy) keeps the total non-negative, as in the reference
    code. Wraps :func:`hiclust.losses.nt_xent`, :func:`hiclust.losses.cluster_contrastive_loss` and
    :func:`hiclust.losses.cluster_entropy`.

    Parameters
    ----------
    n_clusters : int
        M ≥ 2, the width of the cluster head's soft assignments.
    instance_temperature : float, default 0.5
        τ_I > 0 of the instance-level NT-Xent.
    cluster_temperature : float, default 1.0
        τ_C > 0 of the cluster-level contrast.
    entropy_weight : float, default 1.0
        Weight ≥ 0 of the marginal-entropy term.
    gather_distributed : bool, default False
        Compute the loss over the global batch of all ranks (one collective gathers z_a, z_b,
        y_a, y_b; the cluster columns and the marginals then span the global batch); see the
        module docstring. No effect for a single process.

    Raises
    ------
    ValueError
        ``n_clusters`` not an integer ≥ 2, a temperature not > 0, or a negative weight.

    Examples
    --------
    >>> import torch
    >>> from hiclust.losses import CCLoss
    >>> gen = torch.Generator().manual_seed(0)
    >>> z_a, z_b = torch.randn(6, 8, generator=gen), torch.randn(6, 8, generator=gen)
    >>> y_a = torch.softmax(torch.randn(6, 3, generator=gen), dim=1)
    >>> y_b = torch.softmax(torch.randn(6, 3, generator=gen), dim=1)
    >>> criterion = CCLoss(n_clusters=3)
    >>> terms = criterion(z_a, z_b, y_a, y_b)
    >>> sorted(terms)
    ['cluster', 'entropy', 'instance', 'loss']
    >>> round(terms["loss"].item(), 3)
    4.277
    """

    def __init__(
        self,
        n_clusters: int,
        instance_temperature: float = 0.5,
        cluster_temperature: float = 1.0,
        entropy_weight: float = 1.0,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__(gather_distributed)
        if isinstance(n_clusters, bool) or not isinstance(n_clusters, numbers.Integral) or n_clusters < 2:
            raise ValueError(f"n_clusters must be an integer >= 2, got {n_clusters!r}")
        self.n_clusters = int(n_clusters)
        self.instance_temperature = _check_positive("instance_temperature", instance_temperature)
        self.cluster_temperature = _check_positive("cluster_temperature", cluster_temperature)
        self.entropy_weight = _check_non_negative("entropy_weight", entropy_weight)
        self.log_m = math.log(self.n_clusters)  # a Python float, as in the method

    def forward(
        self, z_a: torch.Tensor, z_b: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The loss terms of one batch.

        Parameters
        ----------
        z_a, z_b : torch.Tensor, shape (N, D)
            Instance projections of the two views.
        y_a, y_b : torch.Tensor, shape (N, M)
            Softmax cluster assignments of the two views, M = ``n_clusters``.

        Returns
        -------
        dict of str to torch.Tensor
            Scalars ``"instance"``, ``"cluster"``, ``"entropy"`` (H(Y), in [0, 2·log M]) and
            ``"loss"``.
        """
        for name, y in (("y_a", y_a), ("y_b", y_b)):
            if y.ndim != 2 or y.shape[1] != self.n_clusters:
                raise ValueError(f"{name} must have shape (N, {self.n_clusters}), got {tuple(y.shape)}")
        z_a, z_b, y_a, y_b = self._maybe_gather(z_a, z_b, y_a, y_b)
        terms = {
            "instance": nt_xent(z_a, z_b, self.instance_temperature),
            "cluster": cluster_contrastive_loss(y_a, y_b, self.cluster_temperature),
            "entropy": cluster_entropy(y_a, y_b),
        }
        terms["loss"] = terms["instance"] + terms["cluster"] + self.entropy_weight * (2 * self.log_m - terms["entropy"])
        return terms

    def instance(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        """The instance term alone (NT-Xent over the 2N rows, gathered as in ``forward``): CC's pass
        over extra images that are not clustered (STL-10's unlabeled split). (N, D) × 2 → scalar."""
        z_a, z_b = self._maybe_gather(z_a, z_b)
        return nt_xent(z_a, z_b, self.instance_temperature)

    def extra_repr(self) -> str:
        return (
            f"n_clusters={self.n_clusters}, instance_temperature={self.instance_temperature}, "
            f"cluster_temperature={self.cluster_temperature}, entropy_weight={self.entropy_weight}, "
            f"gather_distributed={self.gather_distributed}"
        )


class DECLoss(nn.Module):
    """DEC's clustering loss L_c: KL(P‖Q) [+ k-means loss] [+ cluster-size balance KL].

    Q is the Student's t soft assignment of the embeddings to the centroids, P the target
    distribution of the same rows (computed by the caller, usually over the whole data set, and
    held fixed). Wraps :func:`hiclust.losses.student_t_assignment`,
    :func:`hiclust.losses.kl_divergence`, :func:`hiclust.losses.kmeans_loss` and
    :func:`hiclust.losses.balance_kl`.

    There is no ``gather_distributed``: DEC is not contrastive, its terms are means of per-sample
    values against a fixed target, so no rank needs the others' rows.

    Parameters
    ----------
    nu : float, default 1.0
        Degrees of freedom ν > 0 of the Student's t kernel.
    kmeans_weight : float, default 0.0
        Weight ≥ 0 of the k-means loss (0: not computed).
    balance_weight : float, default 0.0
        Weight ≥ 0 of KL(G‖prior) on the batch's cluster sizes (0: not computed).
    balance_prior : {"uniform", "zipf"}, default "uniform"
        Prior of the balance term.
    zipf_s : float, default 1.0
        Zipf exponent s ≥ 0 (used by the "zipf" prior).

    Raises
    ------
    ValueError
        ``nu`` not > 0, a negative weight or ``zipf_s``, or an unknown ``balance_prior``.

    Examples
    --------
    >>> import torch
    >>> from hiclust.losses import DECLoss, student_t_assignment, target_distribution
    >>> gen = torch.Generator().manual_seed(0)
    >>> z, centroids = torch.randn(6, 2, generator=gen), torch.randn(3, 2, generator=gen)
    >>> target = target_distribution(student_t_assignment(z, centroids))
    >>> criterion = DECLoss(kmeans_weight=0.1, balance_weight=1.0)
    >>> terms = criterion(z, centroids, target)
    >>> sorted(terms)
    ['balance', 'kl', 'kmeans', 'loss']
    >>> round(terms["loss"].item(), 3)
    0.198
    """

    def __init__(
        self,
        nu: float = 1.0,
        kmeans_weight: float = 0.0,
        balance_weight: float = 0.0,
        balance_prior: str = "uniform",
        zipf_s: float = 1.0,
    ) -> None:
        super().__init__()
        self.nu = _check_positive("nu", nu)
        self.kmeans_weight = _check_non_negative("kmeans_weight", kmeans_weight)
        self.balance_weight = _check_non_negative("balance_weight", balance_weight)
        self.balance_prior = _check_choice("balance_prior", balance_prior, BALANCE_PRIORS)
        self.zipf_s = _check_non_negative("zipf_s", zipf_s)

    def forward(self, z: torch.Tensor, centroids: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The clustering-loss terms of one batch.

        Parameters
        ----------
        z : torch.Tensor, shape (B, D)
            Embeddings of the batch.
        centroids : torch.Tensor, shape (K, D)
            Cluster centres μ.
        target : torch.Tensor, shape (B, K)
            Rows of the target distribution P for this batch.

        Returns
        -------
        dict of str to torch.Tensor
            Scalars ``"kl"``, ``"kmeans"`` (only when ``kmeans_weight`` > 0), ``"balance"`` (only
            when ``balance_weight`` > 0) and ``"loss"`` = kl + kmeans_weight·kmeans +
            balance_weight·balance.
        """
        q = student_t_assignment(z, centroids, self.nu)
        terms: dict[str, torch.Tensor] = {"kl": kl_divergence(target, q)}
        l_c = terms["kl"]
        if self.kmeans_weight > 0:
            terms["kmeans"] = kmeans_loss(z, centroids)
            l_c = l_c + self.kmeans_weight * terms["kmeans"]
        if self.balance_weight > 0:
            terms["balance"] = balance_kl(q, self.balance_prior, self.zipf_s)
            l_c = l_c + self.balance_weight * terms["balance"]
        terms["loss"] = l_c
        return terms

    def extra_repr(self) -> str:
        return (
            f"nu={self.nu}, kmeans_weight={self.kmeans_weight}, balance_weight={self.balance_weight}, "
            f"balance_prior={self.balance_prior!r}, zipf_s={self.zipf_s}"
        )
