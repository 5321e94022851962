"""hiclust: contrastive hierarchical clustering (CoHiClust) and the methods it is measured against.

>>> from hiclust import CoHiClust, load_dataset
>>> data = load_dataset("digits", split="all")
>>> model = CoHiClust(n_clusters=10, depth=4, epochs=100).fit(data)   # doctest: +SKIP
>>> model.labels_, model.hierarchy_.to_linkage()                        # doctest: +SKIP
"""

from hiclust.data import ImageDataset, load_dataset
from hiclust.hierarchy import Hierarchy
from hiclust.methods import DEC, IDEC, METHODS, CoHiClust, ContrastiveClustering, DeepECT, SimCLR

__version__ = "0.1.0"
__all__ = ["CoHiClust", "ContrastiveClustering", "DEC", "IDEC", "DeepECT", "SimCLR", "Hierarchy", "ImageDataset", "load_dataset", "METHODS", "__version__"]
