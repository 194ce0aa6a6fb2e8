"""The function a deployed model computes: a uint8 image batch in, decoded predictions out.

:class:`DeployModel` is what every runtime runs: eagerly in PyTorch, and traced into ONNX or
TorchScript by the exporters, so the eager predictor and an exported file compute one function.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from detect.data.coco import CategoryMap
from detect.inference.metadata import ModelInfo
from detect.models.detector import Detector
from detect.models.heads.postprocess import Decoded, PostprocessConfig, finish, select

__all__ = ["NMS_OUTPUTS", "DeployModel", "describe", "task_of"]

# Outputs of a model with selection inside (nms=True): flat over the batch.
NMS_OUTPUTS = ("boxes", "scores", "labels", "batch_index")


def task_of(detector: Detector) -> str:
    """``"segment"``, ``"pose"`` or ``"detect"``, from what the head predicts."""
    fields = detector.head.target_fields
    return "segment" if "masks" in fields else "pose" if "keypoints" in fields else "detect"


class DeployModel(nn.Module):
    """A :class:`Detector` with its decoding: ``(B, 3, H, W)`` uint8 RGB letterboxed images in.

    Without ``nms``, the outputs are per-anchor tensors (:class:`Decoded`: ``boxes``, ``scores``
    and, as the head predicts them, ``mask_coefs``/``protos`` or ``keypoints``/``heatmaps``);
    selection, NMS, mask assembly and keypoint refinement then run on them outside
    (:func:`~detect.models.heads.postprocess.finalize`). With ``nms``, all of that is inside and
    the outputs are the detections, flat over the batch: ``boxes`` ``(N, 4)``, ``scores``,
    ``labels``, ``batch_index`` ``(N,)``, then ``masks`` ``(N, H, W)`` uint8 or ``keypoints``
    ``(N, K, 3)``, all in the input frame.

    Args:
        detector: a trained detector (put in eval mode here).
        nms: put selection and NMS inside.
    """

    def __init__(self, detector: Detector, nms: bool = False) -> None:
        super().__init__()
        self.detector = detector.eval()
        self.nms = nms
        self.task = task_of(detector)

    @property
    def postprocess_config(self) -> PostprocessConfig:
        return self.detector.head.postprocess_config

    def output_names(self) -> list[str]:
        """Names of :meth:`forward`'s outputs, in order."""
        if self.nms:
            extra = {"segment": ["masks"], "pose": ["keypoints"]}.get(self.task, [])
            return [*NMS_OUTPUTS, *extra]
        size = 2 * self.detector.size_divisibility
        with torch.inference_mode():
            probe = torch.zeros(1, 3, size, size, dtype=torch.uint8, device=self.detector.pixel_mean.device)
            return list(self.decode(probe).tensors())

    def decode(self, images: Tensor) -> Decoded:
        return self.detector.head.decode(self.detector(images))

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        decoded = self.decode(images)
        if not self.nms:
            return tuple(decoded.tensors().values())
        size = (int(images.shape[-2]), int(images.shape[-1]))
        config = self.postprocess_config
        selection = select(decoded.boxes, decoded.scores, size, config)
        extras = finish(decoded, selection, size, config, per_image=False)
        outputs = [selection.boxes, selection.scores, selection.labels, selection.batch_index]
        if "masks" in extras:
            outputs.append(extras["masks"].to(torch.uint8))
        if "keypoints" in extras:
            outputs.append(extras["keypoints"])
        return tuple(outputs)


def describe(
    model: DeployModel,
    categories: CategoryMap,
    image_size: int,
    components: dict[str, str] | None = None,
) -> ModelInfo:
    """The :class:`ModelInfo` of ``model`` at ``image_size``: what an exported file stores about itself."""
    detector = model.detector
    detector.check_input_size(image_size, image_size)
    return ModelInfo(
        task=model.task,
        categories=categories.to_list(),
        image_size=int(image_size),
        strides=[int(spec.stride) for spec in detector.head.specs],
        pixel_mean=[float(v) for v in detector.pixel_mean.flatten()],
        pixel_std=[float(v) for v in detector.pixel_std.flatten()],
        postprocess=model.postprocess_config,
        outputs=model.output_names(),
        nms=model.nms,
        components=dict(components or {}),
    )
