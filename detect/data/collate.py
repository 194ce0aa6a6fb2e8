"""Stack samples of equal size into a :class:`Batch`."""

import torch

from detect.data.coco import Sample
from detect.structures import Batch

__all__ = ["collate"]


def collate(samples: list[Sample | None]) -> Batch | None:
    """Stack the samples; ``None`` (an image the dataset skipped) is left out, ``None`` if all are."""
    samples = [sample for sample in samples if sample is not None]
    if not samples:
        return None
    return Batch(
        images=torch.stack([sample.image for sample in samples]),
        targets=[sample.targets for sample in samples],
        metas=[sample.meta for sample in samples],
    )
