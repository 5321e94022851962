"""Backbones f: torchvision ResNets (optionally with the CIFAR stem), a small CNN for small
grayscale images, and an MLP for feature vectors. Each builder returns a module mapping a batch
to features h of shape (B, feature_dim) and exposes ``feature_dim``."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

__all__ = ["BACKBONES", "build_backbone", "ResNetBackbone", "SmallCNN", "MLP", "default_backbone"]


class ResNetBackbone(nn.Module):
    """A torchvision ResNet without its classifier: (B, C, H, W) float → (B, 512 or 2048).

    ``cifar_stem`` replaces the 7×7/2 convolution and the max-pool with a 3×3/1 convolution, as
    the CoHiClust reference does for 32×32 images.
    """

    def __init__(self, depth: int = 18, in_channels: int = 3, cifar_stem: bool = False) -> None:
        super().__init__()
        builders = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34, 50: torchvision.models.resnet50}
        if depth not in builders:
            raise ValueError(f"ResNet depth must be one of {sorted(builders)}, got {depth}")
        net = builders[depth](weights=None)
        if cifar_stem:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.feature_dim = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """A compact CNN for 8–32 px images (digits, MNIST): (B, C, H, W) → (B, feature_dim).

    Stages of two 3×3 conv blocks, halving the resolution between stages until it is ≤ 4 px,
    then global average pooling. Widths double per stage starting at ``width``.
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, width: int = 32) -> None:
        super().__init__()
        if image_size < 4:
            raise ValueError(f"SmallCNN needs images of at least 4 px, got {image_size}")
        layers: list[nn.Module] = []
        c, size = in_channels, image_size
        while True:
            layers += [_conv_block(c, width), _conv_block(width, width)]
            c = width
            if size <= 4:
                break
            layers.append(nn.MaxPool2d(2))
            size //= 2
            width *= 2
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.net = nn.Sequential(*layers)
        self.feature_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MLP(nn.Module):
    """Fully connected backbone for feature vectors: (B, D) → (B, hidden[-1])."""

    def __init__(self, in_features: int, hidden: tuple[int, ...] = (512, 512)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_features
        for h in hidden:
            layers += [nn.Linear(d, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(inplace=True)]
            d = h
        self.net = nn.Sequential(*layers)
        self.feature_dim = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


BACKBONES = ("smallcnn", "resnet18", "resnet34", "resnet50", "mlp")


def default_backbone(channels: int, image_size: int) -> str:
    """The backbone "auto" resolves to: a small CNN up to 28 px grayscale, else a ResNet
    (ResNet18 with the CIFAR stem at ≤ 32 px, ResNet34 above, as in SPEC.md §1.6)."""
    if channels == 1 and image_size <= 28:
        return "smallcnn"
    return "resnet18"


def build_backbone(
    name: str,
    in_channels: int,
    image_size: int,
    cifar_stem: bool | None = None,
    width: int = 32,
) -> nn.Module:
    """Builds backbone ``name`` (one of BACKBONES) for inputs (B, in_channels, image_size, image_size).

    ``cifar_stem=None`` chooses the CIFAR stem for images of 64 px or less.
    """
    if name == "smallcnn":
        return SmallCNN(in_channels, image_size, width)
    if name.startswith("resnet") and name[6:] in {"18", "34", "50"}:
        stem = image_size <= 64 if cifar_stem is None else cifar_stem
        return ResNetBackbone(int(name[6:]), in_channels, stem)
    if name == "mlp":
        return MLP(in_channels * image_size * image_size)
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
