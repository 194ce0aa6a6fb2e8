"""Mosaic: four training images tiled into one, with their boxes, masks and keypoints.

Each image of the mosaic is first drawn through the dataset's own pipeline (letterbox, zoom,
flip, colour), so a mosaic tiles four ordinary training samples on a canvas of twice the input
side and cuts one input-sized window around the canvas centre, at a random zoom. Objects then
appear in new contexts, cut by new borders and beside other images' objects: more variety per
step on small sets. Training usually ends with a few epochs without it ("close mosaic"), so that
the last steps see images drawn like the validation ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from detect.data.coco import Sample
from detect.data.sampler import SampleKey, generator_for
from detect.data.transforms import PAD_VALUE
from detect.structures import Targets

__all__ = ["Mosaic"]

# An object cut by the window keeps its label only if this share of its box remains visible
# (the same floor as the letterbox pipeline's min_visibility).
MIN_VISIBLE = 0.3
MIN_SIDE = 2.0


class Mosaic(Dataset):
    """Wraps a detection dataset: with probability ``p`` an item is a mosaic of four samples.

    Args:
        dataset: yields :class:`detect.data.coco.Sample` of ``image_size`` squares (or ``None``
            for a skipped image).
        p: probability that an item is a mosaic; 0 returns the dataset's items unchanged and
            draws no random numbers.
        image_size: side of the samples and of the mosaic.
        scale: range of the zoom of the cut window (1: objects keep their size).
    """

    def __init__(
        self, dataset: Dataset, p: float, image_size: int, scale: tuple[float, float] = (0.75, 1.25)
    ) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"data.augment.mosaic must be a probability in [0, 1], got {p!r}")
        low, high = (float(v) for v in scale)
        if not 0.5 <= low <= high <= 2.0:
            raise ValueError(f"data.augment.mosaic_scale must be [low, high] within [0.5, 2], got {scale!r}")
        self.dataset = dataset
        self.p = float(p)
        self.image_size = image_size
        self.scale = (low, high)
        # Shared memory, so that switching it off reaches persistent loader workers too.
        self._on = torch.ones(1).share_memory_()

    def enable(self, on: bool) -> None:
        """Mosaics on or off (off for the last epochs of a run)."""
        self._on[0] = float(on)

    @property
    def enabled(self) -> bool:
        return self.p > 0 and bool(self._on[0] > 0)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | SampleKey) -> Sample | None:
        index, generator = generator_for(key)
        if not self.enabled or torch.rand((), generator=generator).item() >= self.p:
            return self.dataset[self._child(index, generator)]
        others = torch.randint(0, len(self.dataset), (3,), generator=generator).tolist()
        samples = [self.dataset[self._child(i, generator)] for i in [index, *others]]
        if any(sample is None for sample in samples):
            # A skipped image (named in the log by the dataset) makes no mosaic.
            return samples[0]
        return self._tile(samples, generator)

    @staticmethod
    def _child(index: int, generator: torch.Generator | None) -> int | SampleKey:
        """A tile's key: its own seed, so that its draws do not repeat the mosaic's."""
        if generator is None:
            return index
        return SampleKey(index, int(torch.randint(0, 2**62, (), generator=generator).item()))

    def _tile(self, samples: list[Sample], generator: torch.Generator | None = None) -> Sample:
        size = self.image_size
        canvas = torch.full((3, 2 * size, 2 * size), PAD_VALUE, dtype=torch.uint8)
        # Whole pixels, so that the cut image and the moved targets agree exactly.
        zoom = torch.empty(()).uniform_(*self.scale, generator=generator).item()
        side = min(int(round(size / zoom)), 2 * size)
        # The canvas centre lies at a random point of the window's middle half, so the window
        # shows parts of all four images.
        rx, ry = torch.empty(2).uniform_(0.25, 0.75, generator=generator).tolist()
        x0 = min(max(int(round(size - rx * side)), 0), 2 * size - side)
        y0 = min(max(int(round(size - ry * side)), 0), 2 * size - side)
        factor = size / side

        boxes, labels, areas, masks, keypoints = [], [], [], [], []
        with_masks = samples[0].targets.masks is not None
        with_keypoints = samples[0].targets.keypoints is not None
        for k, sample in enumerate(samples):
            ox, oy = (k % 2) * size, (k // 2) * size
            canvas[:, oy : oy + size, ox : ox + size] = sample.image
            t = sample.targets
            shift = torch.tensor([ox - x0, oy - y0, ox - x0, oy - y0], dtype=torch.float32)
            moved = t.boxes + shift
            clipped = moved.clamp(0, side)
            full = (moved[:, 2] - moved[:, 0]) * (moved[:, 3] - moved[:, 1])
            seen = (clipped[:, 2] - clipped[:, 0]).clamp(min=0) * (clipped[:, 3] - clipped[:, 1]).clamp(min=0)
            out = clipped * factor
            keep = (
                (seen >= MIN_VISIBLE * full.clamp(min=1e-6))
                & ((out[:, 2] - out[:, 0]) >= MIN_SIDE)
                & ((out[:, 3] - out[:, 1]) >= MIN_SIDE)
            )
            boxes.append(out[keep])
            labels.append(t.labels[keep])
            share = seen / full.clamp(min=1e-6)
            area = t.areas if t.areas is not None else full
            areas.append((area * share * factor**2)[keep])
            if with_masks:
                placed = torch.zeros((int(keep.sum()), 2 * size, 2 * size), dtype=torch.uint8)
                placed[:, oy : oy + size, ox : ox + size] = t.masks[keep]
                masks.append(placed)
            if with_keypoints:
                points = t.keypoints[keep].clone()
                visible = points[..., 2] > 0
                xy = (points[..., :2] + shift[:2]) * factor
                inside = (xy >= 0).all(-1) & (xy < size).all(-1) & visible
                points[..., :2] = torch.where(inside[..., None], xy, torch.zeros_like(xy))
                points[..., 2] = torch.where(inside, points[..., 2], torch.zeros_like(points[..., 2]))
                keypoints.append(points)

        window = canvas[:, y0 : y0 + side, x0 : x0 + side]
        image = F.interpolate(window[None].float(), size=(size, size), mode="bilinear", antialias=True)
        image = image[0].round().clamp(0, 255).to(torch.uint8)
        mask_out = None
        if with_masks:
            stacked = torch.cat(masks)
            cut = stacked[:, y0 : y0 + side, x0 : x0 + side]
            mask_out = (
                F.interpolate(cut[None].float(), size=(size, size), mode="nearest-exact")[0].to(torch.uint8)
                if len(cut)
                else torch.zeros((0, size, size), dtype=torch.uint8)
            )
        return Sample(
            image=image,
            targets=Targets(
                torch.cat(boxes).reshape(-1, 4),
                torch.cat(labels),
                masks=mask_out,
                keypoints=torch.cat(keypoints) if with_keypoints else None,
                areas=torch.cat(areas),
            ),
            meta=samples[0].meta,
        )
