"""Data: COCO datasets, the embedded shapes set, transforms and loaders. Knows nothing of the model.

The Lightning DataModules load on first use, so that inference (which reads images with
:func:`read_image` and letterboxes them) runs without Lightning installed.
"""

from importlib import import_module
from typing import Any

from detect.data.coco import CategoryMap, CocoDetection, Sample, load_coco
from detect.data.collate import collate
from detect.data.doctor import DataError, FaultLog, check_coco
from detect.data.images import ImageFault, decode_image, read_image
from detect.data.synthetic import CATEGORIES, ShapesConfig, generate_shapes
from detect.data.transforms import AugmentConfig, build_transforms

__all__ = [
    "CATEGORIES",
    "AugmentConfig",
    "CategoryMap",
    "CocoDataModule",
    "CocoDetection",
    "DataError",
    "FaultLog",
    "ImageFault",
    "Sample",
    "ShapesConfig",
    "ShapesDataModule",
    "build_transforms",
    "check_coco",
    "collate",
    "decode_image",
    "generate_shapes",
    "load_coco",
    "read_image",
]

_LAZY = {"CocoDataModule": "detect.data.datamodule", "ShapesDataModule": "detect.data.datamodule"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'detect.data' has no attribute {name!r}")
