"""What a model file must say about itself so that the file alone is enough to predict."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from detect import __version__
from detect.data.coco import CategoryMap
from detect.models.heads.postprocess import PostprocessConfig

__all__ = ["METADATA_KEY", "METADATA_FORMAT", "ModelInfo"]

# The key under which the JSON below is stored (ONNX metadata_props, TorchScript extra file,
# OpenVINO rt_info).
METADATA_KEY = "detect"
# Bumped when a file written by this version can no longer be read by an older one.
METADATA_FORMAT = 1


@dataclass(frozen=True)
class ModelInfo:
    """A model's contract: its input, its classes, and how its outputs become detections.

    Attributes:
        task: ``"detect"``, ``"segment"`` or ``"pose"``.
        categories: ``[{"id", "name", ...}]`` in contiguous-label order, keypoint names, skeleton
            and sigmas included where the data has them (:meth:`CategoryMap.to_list`).
        image_size: side of the square network input; images are letterboxed to it (longer side
            scaled to it, padded at the bottom and right with ``pad_value``).
        strides: strides of the levels the head predicts on.
        pixel_mean, pixel_std: normalisation of ``[0, 1]`` images, applied inside the model.
        postprocess: thresholds and the keypoint refiner's reading.
        outputs: output names in order.
        nms: whether selection and NMS are inside the model (its outputs are then detections).
        components: the config names of the backbone, neck and head.
        input_name, input_dtype: the model input (``(B, 3, H, W)`` RGB).
        pad_value: the letterbox's padding grey level.
        detect_version: the version that wrote the file.
        format: the metadata format.
    """

    task: str
    categories: list[dict[str, Any]]
    image_size: int
    strides: list[int]
    pixel_mean: list[float]
    pixel_std: list[float]
    postprocess: PostprocessConfig
    outputs: list[str]
    nms: bool = False
    components: dict[str, str] = field(default_factory=dict)
    input_name: str = "images"
    input_dtype: str = "uint8"
    pad_value: int = 114
    detect_version: str = __version__
    format: int = METADATA_FORMAT

    @property
    def category_map(self) -> CategoryMap:
        return CategoryMap.from_list(self.categories)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(str(c["name"]) for c in self.categories)

    def to_json(self) -> str:
        values = asdict(self)
        values["postprocess"] = self.postprocess.to_dict()
        return json.dumps(values, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "the model file") -> ModelInfo:
        """Parse and check the metadata of ``source``; a ``ValueError`` names what is wrong."""
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"the detect metadata in {source} is not valid JSON ({error})") from error
        if not isinstance(values, dict):
            raise ValueError(f"the detect metadata in {source} is not a JSON object")
        if int(values.get("format", 0)) > METADATA_FORMAT:
            raise ValueError(
                f"{source} was exported by detect {values.get('detect_version')} (metadata format "
                f"{values['format']}); this detect ({__version__}) reads format {METADATA_FORMAT}: upgrade detect"
            )
        required = (
            "task",
            "categories",
            "image_size",
            "strides",
            "pixel_mean",
            "pixel_std",
            "postprocess",
            "outputs",
        )
        missing = [key for key in required if key not in values]
        if missing:
            raise ValueError(f"the detect metadata in {source} lacks {missing}")
        known = set(cls.__dataclass_fields__)
        values = {key: value for key, value in values.items() if key in known}
        values["postprocess"] = PostprocessConfig.from_dict(values["postprocess"])
        return cls(**values)
