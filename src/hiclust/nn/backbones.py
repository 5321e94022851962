"""Backbones f: the networks that map a batch to features h of shape (B, feature_dim).

Three families, each exposing ``feature_dim`` (the size of its output):

* :class:`ResNetBackbone` -- a torchvision ResNet (18, 34 or 50) without its classifier,
  optionally with the CIFAR stem for small images;
* :class:`SmallCNN` -- a compact CNN for small grayscale images (digits, MNIST);
* :class:`MLP` -- fully connected layers for feature vectors.

:data:`BACKBONES` is a registry of builder functions in torchvision's manner: every builder is
called as ``builder(in_channels, image_size, **options)``, accepts ``norm_layer=`` (a callable
``num_features -> nn.Module``) and returns a module with a ``feature_dim`` attribute.
:func:`build_backbone` looks a name up and calls its builder; :func:`register_backbone` adds
a name.

Examples
--------
>>> import torch
>>> from torch import nn
>>> from hiclust.nn.backbones import BACKBONES, build_backbone
>>> list(BACKBONES)
['smallcnn', 'resnet18', 'resnet34', 'resnet50', 'mlp']
>>> net = build_backbone("smallcnn", 1, 8, norm_layer=lambda c: nn.GroupNorm(1, c))
>>> net(torch.zeros(2, 1, 8, 8)).shape
torch.Size([2, 64])
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
import torchvision
from torch import nn

__all__ = [
    "BACKBONES",
    "build_backbone",
    "register_backbone",
    "default_backbone",
    "ResNetBackbone",
    "SmallCNN",
    "MLP",
    "InputSpace",
    "smallcnn",
    "resnet18",
    "resnet34",
    "resnet50",
    "mlp",
]

NormLayer = Callable[[int], nn.Module]
"""A normalization layer factory: ``num_features -> nn.Module`` (``nn.BatchNorm2d``, say)."""

BackboneBuilder = Callable[..., nn.Module]
"""``builder(in_channels, image_size, **options) -> nn.Module`` with a ``feature_dim``."""

_TORCHVISION_RESNETS: dict[int, Callable[..., torchvision.models.ResNet]] = {
    18: torchvision.models.resnet18,
    34: torchvision.models.resnet34,
    50: torchvision.models.resnet50,
}


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------


class ResNetBackbone(nn.Module):
    """A torchvision ResNet without its classifier.

    The submodules keep torchvision's names (``conv1``, ``bn1``, ``relu``, ``maxpool``,
    ``layer1`` ... ``layer4``, ``avgpool``), so the state dict of this module is that of
    ``torchvision.models.resnet{depth}`` without the ``fc.*`` entries.

    Parameters
    ----------
    depth : {18, 34, 50}
        Which ResNet.
    in_channels : int
        Channels C of the input images.
    cifar_stem : bool
        Replace the 7x7 stride-2 convolution and the max-pool with a 3x3 stride-1
        convolution, as the CoHiClust reference does for 32x32 images.
    norm_layer : callable, optional
        ``num_features -> nn.Module`` used for every normalization layer (torchvision's
        ``norm_layer``); ``None`` means ``nn.BatchNorm2d``.

    Attributes
    ----------
    feature_dim : int
        Size of the output features: 512 for ResNet18/34, 2048 for ResNet50.

    Notes
    -----
    Shapes: input (B, C, H, W) float, output (B, feature_dim).

    The first convolution is rebuilt (and so initialised by PyTorch's default rule rather than
    torchvision's) when ``cifar_stem`` is set or ``in_channels != 3``.

    Examples
    --------
    >>> import torch
    >>> net = ResNetBackbone(18, in_channels=1, cifar_stem=True).eval()
    >>> net(torch.zeros(1, 1, 8, 8)).shape
    torch.Size([1, 512])
    """

    def __init__(
        self,
        depth: int = 18,
        in_channels: int = 3,
        cifar_stem: bool = False,
        *,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        if depth not in _TORCHVISION_RESNETS:
            raise ValueError(f"ResNet depth must be one of {sorted(_TORCHVISION_RESNETS)}, got {depth}")
        # Build torchvision's network whole (its classifier included) and then swap the stem:
        # this consumes the random generator exactly as earlier versions did.
        net = _TORCHVISION_RESNETS[depth](weights=None, norm_layer=norm_layer)
        if cifar_stem:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.feature_dim: int = net.fc.in_features

        self.conv1 = net.conv1
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = net.maxpool
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.layer4 = net.layer4
        self.avgpool = net.avgpool
        self.register_load_state_dict_pre_hook(_upgrade_legacy_keys)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, feature_dim)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # stem
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)  # (B, feature_dim, 1, 1)
        return torch.flatten(x, 1)

    @staticmethod
    def _legacy_key(key: str) -> str | None:
        # Earlier versions kept the torchvision network under ``net``.
        return key[len("net."):] if key.startswith("net.") else None


class ConvBlock(nn.Module):
    """3x3 convolution (no bias, padding 1), normalization, ReLU: (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, norm_layer: NormLayer = nn.BatchNorm2d) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm = norm_layer(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.norm(self.conv(x)))


class ConvStage(nn.Module):
    """An optional 2x2 max-pool followed by two :class:`ConvBlock`.

    (B, C_in, H, W) -> (B, C_out, H/2, W/2) with ``downsample``, else (B, C_out, H, W).
    """

    def __init__(
        self, in_channels: int, out_channels: int, downsample: bool, norm_layer: NormLayer = nn.BatchNorm2d
    ) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2) if downsample else nn.Identity()
        self.block1 = ConvBlock(in_channels, out_channels, norm_layer)
        self.block2 = ConvBlock(out_channels, out_channels, norm_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block2(self.block1(self.pool(x)))


class SmallCNN(nn.Module):
    """A compact CNN for 4-32 px images (digits, MNIST).

    ``features`` holds stages ``stage1``, ``stage2``, ... of two 3x3 conv blocks each; every
    stage after the first starts by halving the resolution with a 2x2 max-pool, and stages are
    added until the resolution is 4 px or less. Widths start at ``width`` and double per stage.
    Global average pooling (``pool``) then gives the features.

    Parameters
    ----------
    in_channels : int
        Channels C of the input images.
    image_size : int
        Side S of the (square) input images, at least 4.
    width : int
        Channels of the first stage.
    norm_layer : callable or None
        ``num_features -> nn.Module`` used after every convolution (default, and ``None``:
        ``nn.BatchNorm2d``).

    Attributes
    ----------
    feature_dim : int
        Channels of the last stage: ``width * 2 ** (n_stages - 1)``.

    Notes
    -----
    Shapes: input (B, C, S, S) float, output (B, feature_dim).

    Examples
    --------
    >>> import torch
    >>> net = SmallCNN(in_channels=1, image_size=8, width=4)
    >>> [name for name, _ in net.features.named_children()]
    ['stage1', 'stage2']
    >>> net.feature_dim, net(torch.zeros(2, 1, 8, 8)).shape
    (8, torch.Size([2, 8]))
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        width: int = 32,
        *,
        norm_layer: NormLayer | None = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if image_size < 4:
            raise ValueError(f"SmallCNN needs images of at least 4 px, got {image_size}")
        norm_layer = nn.BatchNorm2d if norm_layer is None else norm_layer
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        c, size = in_channels, image_size
        while True:
            downsample = bool(stages)  # every stage but the first halves the resolution first
            stages[f"stage{len(stages) + 1}"] = ConvStage(c, width, downsample, norm_layer)
            c = width
            if size <= 4:
                break
            size //= 2
            width *= 2
        self.features = nn.Sequential(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim: int = c
        self.register_load_state_dict_pre_hook(_upgrade_legacy_keys)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B, feature_dim)."""
        x = self.features(x)  # (B, feature_dim, s, s), s <= 4
        x = self.pool(x)  # (B, feature_dim, 1, 1)
        return torch.flatten(x, 1)

    @staticmethod
    def _legacy_key(key: str) -> str | None:
        # Earlier versions: one flat ``net`` Sequential of [block, block, MaxPool2d] per stage
        # (the last stage without the pool), each block a Sequential [Conv2d, BatchNorm2d, ReLU].
        match = re.fullmatch(r"net\.(\d+)\.([01])\.(.+)", key)
        if match is None:
            return None
        index, layer, rest = int(match[1]), match[2], match[3]
        stage, block = divmod(index, 3)
        if block == 2:
            return None
        return f"features.stage{stage + 1}.block{block + 1}.{'conv' if layer == '0' else 'norm'}.{rest}"


class LinearBlock(nn.Module):
    """Linear layer (no bias), normalization, ReLU: (B, D_in) -> (B, D_out)."""

    def __init__(self, in_features: int, out_features: int, norm_layer: NormLayer = nn.BatchNorm1d) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)
        self.norm = norm_layer(out_features)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.norm(self.linear(x)))


class InputSpace(nn.Module):
    """No learned backbone: the (standardized) feature vectors themselves are the features h, so
    the tree head's splits are hyperplanes of the input space. CoHiClust uses it for small
    feature matrices, where a learned network has too few samples to learn from.

    With ``whiten=True`` the features are h = x · W for a fixed (D, D) matrix W (a buffer saved
    with the weights; the identity until :meth:`set_transform`). A linear map changes no
    hyperplane tree's possible partitions, only the coordinates in which the tree learns them and
    in which the views' noise is isotropic (docs/methods.md, "Feature matrices").

    Shapes: input (B, D) or (B, ...) with D elements per sample, output (B, D) float32.

    >>> import torch
    >>> InputSpace(3)(torch.ones(2, 3)).shape, InputSpace(3).feature_dim
    (torch.Size([2, 3]), 3)
    >>> m = InputSpace(2, whiten=True); m.set_transform(torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
    >>> m(torch.ones(1, 2)).tolist()
    [[2.0, 3.0]]
    """

    def __init__(self, in_features: int, whiten: bool = False) -> None:
        super().__init__()
        self.feature_dim: int = int(in_features)
        self.whiten = bool(whiten)
        if self.whiten:
            self.register_buffer("transform", torch.eye(self.feature_dim))

    def set_transform(self, transform: torch.Tensor) -> None:
        """Sets W, shape (D, D)."""
        if not self.whiten:
            raise RuntimeError("this InputSpace was built with whiten=False; it has no transform")
        if tuple(transform.shape) != (self.feature_dim, self.feature_dim):
            raise ValueError(f"transform must have shape ({self.feature_dim}, {self.feature_dim}), "
                             f"got {tuple(transform.shape)}")
        self.transform.copy_(transform)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1).float()
        return h @ self.transform if self.whiten else h


class MLP(nn.Module):
    """Fully connected backbone for feature vectors.

    ``features`` holds ``block1``, ``block2``, ... (one :class:`LinearBlock` per entry of
    ``hidden``).

    Parameters
    ----------
    in_features : int
        Size D of the input vectors; inputs with more dimensions are flattened from dim 1.
    hidden : tuple of int
        Widths of the layers.
    norm_layer : callable or None
        ``num_features -> nn.Module`` used after every linear layer (default, and ``None``:
        ``nn.BatchNorm1d``).

    Attributes
    ----------
    feature_dim : int
        ``hidden[-1]`` (``in_features`` if ``hidden`` is empty).

    Notes
    -----
    Shapes: input (B, D) or (B, ...) with D elements per sample, output (B, feature_dim).

    Examples
    --------
    >>> import torch
    >>> net = MLP(6, hidden=(5, 3))
    >>> [name for name, _ in net.features.named_children()]
    ['block1', 'block2']
    >>> net(torch.zeros(2, 6)).shape
    torch.Size([2, 3])
    """

    def __init__(
        self,
        in_features: int,
        hidden: tuple[int, ...] = (512, 512),
        *,
        norm_layer: NormLayer | None = nn.BatchNorm1d,
    ) -> None:
        super().__init__()
        norm_layer = nn.BatchNorm1d if norm_layer is None else norm_layer
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        d = in_features
        for h in hidden:
            blocks[f"block{len(blocks) + 1}"] = LinearBlock(d, h, norm_layer)
            d = h
        self.features = nn.Sequential(blocks)
        self.feature_dim: int = d
        self.register_load_state_dict_pre_hook(_upgrade_legacy_keys)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, feature_dim)."""
        return self.features(x.flatten(1))

    @staticmethod
    def _legacy_key(key: str) -> str | None:
        # Earlier versions: one flat ``net`` Sequential of [Linear, BatchNorm1d, ReLU] per layer.
        match = re.fullmatch(r"net\.(\d+)\.(.+)", key)
        if match is None:
            return None
        block, layer = divmod(int(match[1]), 3)
        if layer == 2:
            return None
        return f"features.block{block + 1}.{'linear' if layer == 0 else 'norm'}.{match[2]}"


def _upgrade_legacy_keys(module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    """``load_state_dict`` pre-hook: renames keys saved by earlier versions (``net.*``) in place.

    Keys already in the current layout are left alone, so old and new checkpoints both load.
    """
    for key in [k for k in state_dict if k.startswith(prefix + "net.")]:
        new = module._legacy_key(key[len(prefix):])  # type: ignore[operator]
        if new is not None and prefix + new not in state_dict:
            state_dict[prefix + new] = state_dict.pop(key)


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------


def _resnet(
    depth: int, in_channels: int, image_size: int, cifar_stem: bool | None, norm_layer: NormLayer | None
) -> ResNetBackbone:
    """ResNet builders' shared body: ``cifar_stem=None`` means "CIFAR stem at 64 px or less"."""
    stem = image_size <= 64 if cifar_stem is None else cifar_stem
    return ResNetBackbone(depth, in_channels, stem, norm_layer=norm_layer)


def resnet18(
    in_channels: int,
    image_size: int,
    *,
    cifar_stem: bool | None = None,
    norm_layer: NormLayer = nn.BatchNorm2d,
) -> ResNetBackbone:
    """ResNet18 backbone for (B, in_channels, image_size, image_size) -> (B, 512).

    Parameters
    ----------
    in_channels : int
        Channels C of the input images.
    image_size : int
        Side S of the input images; only used to choose the stem.
    cifar_stem : bool or None
        Use the 3x3 stride-1 stem without max-pool; ``None`` chooses it for S <= 64.
    norm_layer : callable
        ``num_features -> nn.Module`` for every normalization layer (default ``nn.BatchNorm2d``).

    Returns
    -------
    ResNetBackbone
        With ``feature_dim == 512``.

    Examples
    --------
    >>> import torch
    >>> net = resnet18(3, 8).eval()
    >>> net(torch.zeros(1, 3, 8, 8)).shape
    torch.Size([1, 512])
    """
    return _resnet(18, in_channels, image_size, cifar_stem, norm_layer)


def resnet34(
    in_channels: int,
    image_size: int,
    *,
    cifar_stem: bool | None = None,
    norm_layer: NormLayer = nn.BatchNorm2d,
) -> ResNetBackbone:
    """ResNet34 backbone for (B, in_channels, image_size, image_size) -> (B, 512).

    Parameters are those of :func:`resnet18`.

    Returns
    -------
    ResNetBackbone
        With ``feature_dim == 512``.

    Examples
    --------
    >>> import torch
    >>> net = resnet34(1, 8).eval()
    >>> net(torch.zeros(1, 1, 8, 8)).shape
    torch.Size([1, 512])
    """
    return _resnet(34, in_channels, image_size, cifar_stem, norm_layer)


def resnet50(
    in_channels: int,
    image_size: int,
    *,
    cifar_stem: bool | None = None,
    norm_layer: NormLayer = nn.BatchNorm2d,
) -> ResNetBackbone:
    """ResNet50 backbone for (B, in_channels, image_size, image_size) -> (B, 2048).

    Parameters are those of :func:`resnet18`.

    Returns
    -------
    ResNetBackbone
        With ``feature_dim == 2048``.

    Examples
    --------
    >>> import torch
    >>> net = resnet50(3, 8).eval()
    >>> net(torch.zeros(1, 3, 8, 8)).shape
    torch.Size([1, 2048])
    """
    return _resnet(50, in_channels, image_size, cifar_stem, norm_layer)


def smallcnn(
    in_channels: int, image_size: int, *, width: int = 32, norm_layer: NormLayer = nn.BatchNorm2d
) -> SmallCNN:
    """:class:`SmallCNN` for (B, in_channels, image_size, image_size) -> (B, feature_dim).

    Parameters
    ----------
    in_channels : int
        Channels C of the input images.
    image_size : int
        Side S of the input images, at least 4.
    width : int
        Channels of the first stage (doubling per stage).
    norm_layer : callable
        ``num_features -> nn.Module`` after every convolution (default ``nn.BatchNorm2d``).

    Returns
    -------
    SmallCNN

    Examples
    --------
    >>> import torch
    >>> net = smallcnn(1, 28)
    >>> net.feature_dim, net(torch.zeros(2, 1, 28, 28)).shape
    (256, torch.Size([2, 256]))
    """
    return SmallCNN(in_channels, image_size, width, norm_layer=norm_layer)


def mlp(
    in_channels: int,
    image_size: int,
    *,
    hidden: tuple[int, ...] = (512, 512),
    norm_layer: NormLayer = nn.BatchNorm1d,
) -> MLP:
    """:class:`MLP` on flattened (B, in_channels, image_size, image_size) -> (B, hidden[-1]).

    Parameters
    ----------
    in_channels : int
        Channels C of the inputs.
    image_size : int
        Side S of the inputs; the MLP takes C * S * S features (use S = 1 for vectors of C).
    hidden : tuple of int
        Widths of the layers.
    norm_layer : callable
        ``num_features -> nn.Module`` after every linear layer (default ``nn.BatchNorm1d``).

    Returns
    -------
    MLP

    Examples
    --------
    >>> import torch
    >>> net = mlp(1, 4, hidden=(8,))
    >>> net(torch.zeros(2, 1, 4, 4)).shape
    torch.Size([2, 8])
    """
    return MLP(in_channels * image_size * image_size, hidden, norm_layer=norm_layer)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

BACKBONES: dict[str, BackboneBuilder] = {
    "smallcnn": smallcnn,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "mlp": mlp,
}
"""Backbone name -> builder ``(in_channels, image_size, **options) -> nn.Module``."""

_RESERVED = frozenset({"auto"})  # methods resolve "auto" themselves (see default_backbone)


def register_backbone(name: str, builder: BackboneBuilder, *, overwrite: bool = False) -> BackboneBuilder:
    """Adds ``builder`` to :data:`BACKBONES` under ``name``.

    Parameters
    ----------
    name : str
        The name methods and :func:`build_backbone` will accept; not "auto".
    builder : callable
        ``builder(in_channels, image_size, **options) -> nn.Module``; the module maps a batch to
        (B, feature_dim) and has a ``feature_dim`` attribute.
    overwrite : bool
        Replace a builder already registered under ``name`` instead of refusing.

    Returns
    -------
    callable
        ``builder``, unchanged.

    Raises
    ------
    ValueError
        If ``name`` is taken (and ``overwrite`` is false), empty or reserved.
    TypeError
        If ``builder`` is not callable.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> def tiny(in_channels, image_size, norm_layer=nn.BatchNorm1d):
    ...     return MLP(in_channels * image_size**2, (4,), norm_layer=norm_layer)
    >>> _ = register_backbone("tiny-doc", tiny)
    >>> build_backbone("tiny-doc", 1, 2)(torch.zeros(2, 1, 2, 2)).shape
    torch.Size([2, 4])
    >>> register_backbone("tiny-doc", tiny)
    Traceback (most recent call last):
    ...
    ValueError: backbone 'tiny-doc' is already registered; pass overwrite=True to replace it
    >>> del BACKBONES["tiny-doc"]
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a backbone name must be a non-empty string, got {name!r}")
    if name in _RESERVED:
        raise ValueError(f"{name!r} is reserved and cannot name a backbone")
    if not callable(builder):
        raise TypeError(f"a backbone builder must be callable, got {type(builder).__name__}")
    if name in BACKBONES and not overwrite:
        raise ValueError(f"backbone {name!r} is already registered; pass overwrite=True to replace it")
    BACKBONES[name] = builder
    return builder


def default_backbone(channels: int, image_size: int) -> str:
    """The backbone "auto" resolves to: "smallcnn" for grayscale images of at most 32 px (the
    range it is made for), else "resnet18" (whatever the size; :func:`build_backbone` gives it
    the CIFAR stem at 64 px or less).

    Parameters
    ----------
    channels : int
        Channels C of the images.
    image_size : int
        Side S of the images.

    Returns
    -------
    str
        A key of :data:`BACKBONES`.

    Examples
    --------
    >>> default_backbone(1, 32), default_backbone(1, 33), default_backbone(3, 224)
    ('smallcnn', 'resnet18', 'resnet18')
    """
    if channels == 1 and image_size <= 32:
        return "smallcnn"
    return "resnet18"


def build_backbone(name: str, in_channels: int, image_size: int, **kwargs: Any) -> nn.Module:
    """Builds backbone ``name`` for inputs (B, in_channels, image_size, image_size).

    Parameters
    ----------
    name : str
        A key of :data:`BACKBONES`.
    in_channels : int
        Channels C of the inputs.
    image_size : int
        Side S of the inputs.
    **kwargs
        Options of that builder, e.g. ``norm_layer=``, ``cifar_stem=`` (ResNets; ``None``
        chooses the CIFAR stem for images of 64 px or less), ``width=`` (smallcnn),
        ``hidden=`` (mlp).

    Returns
    -------
    nn.Module
        Mapping (B, C, S, S) to (B, feature_dim), with a ``feature_dim`` attribute.

    Raises
    ------
    ValueError
        If ``name`` is not registered.

    Examples
    --------
    >>> import torch
    >>> net = build_backbone("smallcnn", 1, 8, width=4)
    >>> net(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 8])
    >>> build_backbone("vgg", 3, 32)
    Traceback (most recent call last):
    ...
    ValueError: unknown backbone 'vgg'; choose one of smallcnn, resnet18, resnet34, resnet50, mlp
    """
    builder = BACKBONES.get(name) if isinstance(name, str) else None
    if builder is None:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return builder(in_channels, image_size, **kwargs)
