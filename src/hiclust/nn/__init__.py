"""Networks: backbones and heads."""

from hiclust.nn.backbones import (
    BACKBONES,
    MLP,
    InputSpace,
    ResNetBackbone,
    SmallCNN,
    build_backbone,
    default_backbone,
    register_backbone,
)
from hiclust.nn.heads import ClusterHead, ProjectionHead, TreeHead

__all__ = [
    "BACKBONES", "build_backbone", "register_backbone", "default_backbone", "ResNetBackbone", "SmallCNN", "MLP", "InputSpace",
    "ProjectionHead", "TreeHead", "ClusterHead",
]
