"""Datasets (whole uint8 tensors in memory) and batched GPU-friendly augmentation."""

from hiclust.data.augment import (
    DATASET_AUGMENTATION,
    BatchAugment,
    augmentation_preset,
    available_presets,
    preset_for_dataset,
    to_float,
)
from hiclust.data.datasets import (
    CorruptImageError,
    DatasetNotFoundError,
    ImageDataset,
    available_datasets,
    default_data_root,
    load_dataset,
)
from hiclust.data.feature_files import FeatureDataset, load_feature_file, model_input

__all__ = [
    "ImageDataset",
    "FeatureDataset",
    "load_dataset",
    "load_feature_file",
    "model_input",
    "available_datasets",
    "default_data_root",
    "DatasetNotFoundError",
    "CorruptImageError",
    "BatchAugment",
    "augmentation_preset",
    "available_presets",
    "preset_for_dataset",
    "DATASET_AUGMENTATION",
    "to_float",
]
