"""Data: COCO datasets, the embedded shapes set, transforms and loaders. Knows nothing of the model."""

from detect.data.coco import CategoryMap, CocoDetection, Sample, load_coco, read_image
from detect.data.collate import collate
from detect.data.datamodule import CocoDataModule, ShapesDataModule
from detect.data.synthetic import CATEGORIES, ShapesConfig, generate_shapes
from detect.data.transforms import AugmentConfig, build_transforms

__all__ = [
    "CATEGORIES",
    "AugmentConfig",
    "CategoryMap",
    "CocoDataModule",
    "CocoDetection",
    "Sample",
    "ShapesConfig",
    "ShapesDataModule",
    "build_transforms",
    "collate",
    "generate_shapes",
    "load_coco",
    "read_image",
]
