"""Properties of the data transforms, checked on random images, boxes, masks and keypoints.

Boxes are continuous ``xyxy`` pixels (the image spans ``[0, width]``); keypoints are pixel
indices, as in COCO. Albumentations draws its own random zoom and shift, so every test seeds the
pipeline from a Hypothesis-drawn integer: a failing example then replays exactly.
"""

from __future__ import annotations

from types import SimpleNamespace

import albumentations as A
import numpy as np
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from detect.data import CocoDetection, build_transforms
from detect.data.transforms import PAD_VALUE, AugmentConfig, letterbox_params
from detect.inference.predictor import Predictor
from detect.structures import Detections, ImageMeta, KeypointInfo

# No example database: runs stay independent, and a failure prints the example that replays it.
EXAMPLES = settings(max_examples=60, deadline=None, database=None)

sides = st.integers(8, 200)
image_sizes = st.integers(16, 96)
seeds = st.integers(0, 2**32 - 1)


@st.composite
def scenes(draw: st.DrawFn, integer: bool = False) -> tuple[int, int, np.ndarray]:
    """An image's ``(height, width)`` and ``(N, 4)`` xyxy boxes inside it, each at least 1 px a side."""
    height, width = draw(sides), draw(sides)
    boxes = []
    for _ in range(draw(st.integers(1, 4))):
        if integer:
            x0, y0 = draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1))
            x1, y1 = draw(st.integers(x0 + 1, width)), draw(st.integers(y0 + 1, height))
        else:
            x0, y0 = draw(st.floats(0, width - 1)), draw(st.floats(0, height - 1))
            x1, y1 = draw(st.floats(x0 + 1, width)), draw(st.floats(y0 + 1, height))
        boxes.append((x0, y0, x1, y1))
    return height, width, np.asarray(boxes, np.float32)


@st.composite
def zoom_and_shift(draw: st.DrawFn, low: float, high: float, color_p: float = 0.0) -> AugmentConfig:
    """An augmentation that always zooms and shifts, by a random range within ``[low, high]``."""
    smallest = draw(st.floats(low, high))
    return AugmentConfig(
        hflip=0.0,
        scale=(smallest, draw(st.floats(smallest, high))),
        translate=draw(st.floats(0.0, 0.3)),
        affine_p=1.0,
        color_p=color_p,
    )


def run(
    transform: A.Compose,
    seed: int,
    image: np.ndarray,
    boxes: np.ndarray,
    keypoints: np.ndarray | None = None,
    masks: list[np.ndarray] | None = None,
) -> dict:
    """The pipeline's output, with the labels ``10 + i`` and instance ids ``i`` the dataset passes."""
    transform.set_random_seed(seed)
    inputs = {
        "image": image,
        "bboxes": boxes,
        "labels": np.arange(len(boxes)) + 10,
        "instances": np.arange(len(boxes)),
        "keypoints": np.zeros((0, 2), np.float32) if keypoints is None else keypoints,
    }
    if masks is not None:
        inputs["masks"] = masks
    return transform(**inputs)


def box_masks(height: int, width: int, boxes: np.ndarray) -> list[np.ndarray]:
    """One filled mask per integer box: the widest mask a box can hold."""
    masks = []
    for x0, y0, x1, y1 in boxes.astype(int):
        mask = np.zeros((height, width), np.uint8)
        mask[y0:y1, x0:x1] = 1
        masks.append(mask)
    return masks


def overflow(mask: np.ndarray, box: np.ndarray) -> float:
    """How far (px) the mask's pixels, each the square ``[c, c + 1)``, reach outside ``box``; 0 if inside."""
    rows, cols = np.nonzero(mask)
    if not len(cols):
        return 0.0
    x0, y0, x1, y1 = box
    return float(max(0.0, x0 - cols.min(), cols.max() + 1 - x1, y0 - rows.min(), rows.max() + 1 - y1))


@EXAMPLES
@given(scene=scenes(), size=image_sizes, augment=zoom_and_shift(0.25, 2.0, color_p=0.8), seed=seeds)
def test_boxes_stay_inside_the_image(
    scene: tuple[int, int, np.ndarray], size: int, augment: AugmentConfig, seed: int
) -> None:
    """Every box out of the training pipeline lies in ``[0, size]`` with positive width and height,
    and keeps the label of the instance it came from."""
    height, width, boxes = scene
    out = run(build_transforms(size, augment), seed, np.full((height, width, 3), 60, np.uint8), boxes)
    assert out["image"].shape == (size, size, 3)
    out_boxes = np.asarray(out["bboxes"], np.float64).reshape(-1, 4)
    kept = np.asarray(out["instances"], np.int64)
    assert len(kept) == len(out_boxes) <= len(boxes)
    assert ((out_boxes >= 0) & (out_boxes <= size)).all(), out_boxes
    assert (out_boxes[:, 2] > out_boxes[:, 0]).all() and (out_boxes[:, 3] > out_boxes[:, 1]).all(), out_boxes
    assert np.asarray(out["labels"]).tolist() == (kept + 10).tolist()


@EXAMPLES
@given(
    scene=scenes(integer=True),
    size=image_sizes,
    zoom=st.floats(0.5, 1.5),
    shift=st.floats(0, 0.3),
    seed=seeds,
)
def test_masks_stay_inside_their_boxes(
    scene: tuple[int, int, np.ndarray], size: int, zoom: float, shift: float, seed: int
) -> None:
    """After letterbox, zoom and shift, each kept instance's mask lies inside its box, up to the
    rounding of two nearest-neighbour resamplings."""
    height, width, boxes = scene
    augment = AugmentConfig(hflip=0.0, scale=(zoom, zoom), translate=shift, affine_p=1.0, color_p=0.0)
    out = run(
        build_transforms(size, augment),
        seed,
        np.zeros((height, width, 3), np.uint8),
        boxes,
        masks=box_masks(height, width, boxes),
    )
    masks = np.asarray(out["masks"])
    assert masks.shape == (len(boxes), size, size)
    # Half a pixel from the letterbox's nearest-neighbour resize, which the zoom then scales; the
    # affine's own nearest-neighbour adds half a pixel.
    tolerance = 0.5 * zoom + 0.5 + 1e-4
    for box, instance in zip(np.asarray(out["bboxes"]).reshape(-1, 4), out["instances"]):
        assert overflow(masks[instance], box) <= tolerance, (instance, box)


@EXAMPLES
@example(scene=(8, 9, np.asarray([[0, 0, 1, 3]], np.float32)), size=16)
@given(scene=scenes(integer=True), size=image_sizes)
def test_letterboxed_masks_are_centred_on_their_boxes(scene: tuple[int, int, np.ndarray], size: int) -> None:
    """With no augmentation, a filled box mask covers exactly the pixels whose centres lie in the
    letterboxed box, so it reaches at most half a pixel past the box on any side."""
    height, width, boxes = scene
    out = run(
        build_transforms(size),
        0,
        np.zeros((height, width, 3), np.uint8),
        boxes,
        masks=box_masks(height, width, boxes),
    )
    masks = np.asarray(out["masks"])
    for box, instance in zip(np.asarray(out["bboxes"]).reshape(-1, 4), out["instances"]):
        assert overflow(masks[instance], box) <= 0.5 + 1e-4, (instance, box)


@EXAMPLES
@given(scene=scenes(), size=image_sizes, augment=zoom_and_shift(0.5, 1.5), seed=seeds)
def test_keypoints_move_with_their_boxes(
    scene: tuple[int, int, np.ndarray], size: int, augment: AugmentConfig, seed: int
) -> None:
    """Keypoints at a box's corners still span its box after letterbox, zoom and shift (while the box
    is not cut by the border), and one at its centre stays at the centre, inside the box."""
    height, width, boxes = scene
    x0, y0, x1, y1 = boxes.T
    corners_and_centre = np.stack([(x0, y0), (x1, y0), (x0, y1), (x1, y1), ((x0 + x1) / 2, (y0 + y1) / 2)])
    keypoints = corners_and_centre.transpose(2, 0, 1).reshape(-1, 2)  # (N * 5, 2), box by box
    out = run(build_transforms(size, augment), seed, np.zeros((height, width, 3), np.uint8), boxes, keypoints)
    moved = np.asarray(out["keypoints"], np.float64)[:, :2]
    assert moved.shape == keypoints.shape  # remove_invisible=False: none dropped, order kept
    moved = moved.reshape(-1, 5, 2)
    # An affine map keeps midpoints.
    np.testing.assert_allclose(moved[:, 4], moved[:, :4].mean(axis=1), atol=1e-3)
    # Boxes scale by round(width * scale) / width (the resized image's true ratio), keypoints by
    # scale: up to 0.5 px apart, 0.75 after a 1.5x zoom; the affine's pixel-centre convention for
    # keypoints adds |zoom - 1| / 2 <= 0.25.
    tolerance = 1.0 + 1e-4
    for box, instance in zip(np.asarray(out["bboxes"], np.float64).reshape(-1, 4), out["instances"]):
        corners, centre = moved[instance, :4], moved[instance, 4]
        if not ((corners >= 0) & (corners <= size)).all():
            continue  # cut by the border: the box was clipped, the keypoints were not
        np.testing.assert_allclose(box, [*corners.min(axis=0), *corners.max(axis=0)], atol=tolerance)
        assert box[0] - tolerance <= centre[0] <= box[2] + tolerance
        assert box[1] - tolerance <= centre[1] <= box[3] + tolerance


@st.composite
def flip_inputs(draw: st.DrawFn) -> tuple[KeypointInfo, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Keypoint names (left/right pairs and unpaired ones, shuffled), an image, boxes, masks and
    ``(N, K, 3)`` keypoints at pixel indices, zeroed where invisible as the dataset leaves them."""
    pairs, unpaired = draw(st.integers(0, 3)), draw(st.integers(0, 2))
    names = [f"{side}_{i}" for i in range(pairs) for side in ("left", "right")] + [
        f"mid_{i}" for i in range(unpaired)
    ]
    names = draw(st.permutations(names))
    height, width, boxes = draw(scenes())
    rng = np.random.default_rng(draw(seeds))
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    masks = rng.integers(0, 2, (len(boxes), height, width), dtype=np.uint8)
    keypoints = np.zeros((len(boxes), len(names), 3), np.float32)
    keypoints[..., 0] = rng.integers(0, width, keypoints.shape[:2])
    keypoints[..., 1] = rng.integers(0, height, keypoints.shape[:2])
    keypoints[..., 2] = rng.integers(0, 3, keypoints.shape[:2])
    keypoints[keypoints[..., 2] == 0] = 0
    return KeypointInfo(names=tuple(names)), image, boxes, masks, keypoints


def flipper(info: KeypointInfo) -> CocoDetection:
    """A dataset holding only what ``_flip`` reads, without a json or images on disk."""
    dataset = CocoDetection.__new__(CocoDetection)
    dataset.keypoint_info = info
    return dataset


@EXAMPLES
@given(inputs=flip_inputs())
def test_flip_mirrors_boxes_keypoints_and_masks(
    inputs: tuple[KeypointInfo, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """The dataset's flip maps box edges x0, x1 to width - x1, width - x0 and keypoint x to
    width - 1 - x, swapping left and right; a flipped keypoint sits on the same image content,
    and flipping twice changes nothing."""
    info, image, boxes, masks, keypoints = inputs
    dataset = flipper(info)
    width = image.shape[1]
    flipped_image, flipped_boxes, flipped_masks, flipped_keypoints = dataset._flip(
        image, boxes, masks, keypoints
    )

    np.testing.assert_array_equal(flipped_image, image[:, ::-1])
    np.testing.assert_array_equal(flipped_masks, masks[:, :, ::-1])
    np.testing.assert_allclose(flipped_boxes[:, [0, 2]], width - boxes[:, [2, 0]], atol=1e-4)
    np.testing.assert_array_equal(flipped_boxes[:, [1, 3]], boxes[:, [1, 3]])
    assert (flipped_boxes[:, 2] > flipped_boxes[:, 0]).all()

    source = keypoints[:, info.flip_index]  # keypoint j of the flipped image is its mirror's
    visible = source[..., 2] > 0
    np.testing.assert_array_equal(flipped_keypoints[..., 0], np.where(visible, width - 1 - source[..., 0], 0))
    np.testing.assert_array_equal(flipped_keypoints[..., 1:], source[..., 1:])
    for instance, joint in zip(*np.nonzero(visible)):
        x, y = source[instance, joint, :2].astype(int)
        flipped_x = int(flipped_keypoints[instance, joint, 0])
        np.testing.assert_array_equal(flipped_image[y, flipped_x], image[y, x])

    again = dataset._flip(flipped_image, flipped_boxes, flipped_masks, flipped_keypoints)
    np.testing.assert_array_equal(again[0], image)
    np.testing.assert_allclose(again[1], boxes, atol=1e-4)
    np.testing.assert_array_equal(again[2], masks)
    np.testing.assert_array_equal(again[3], keypoints)


def predictor(image_size: int) -> Predictor:
    """A predictor without a model: enough for its letterbox."""
    return Predictor(SimpleNamespace(info=SimpleNamespace(image_size=image_size)))


@EXAMPLES
@given(scene=scenes(), size=st.integers(16, 1280))
def test_letterbox_and_rescale_round_trip(scene: tuple[int, int, np.ndarray], size: int) -> None:
    """Boxes and keypoints taken to the network input with the predictor's letterbox
    (``xy * scale + offset``) come back to original pixels through ``Detections.rescale``."""
    height, width, boxes = scene
    _, meta = predictor(size).letterbox(np.zeros((height, width, 3), np.uint8))
    assert meta.orig_size == (height, width)
    assert (meta.scale, meta.offset) == letterbox_params(height, width, size)
    offset = np.asarray(meta.offset, np.float32)
    keypoints = np.stack([boxes[:, :2], boxes[:, 2:], (boxes[:, :2] + boxes[:, 2:]) / 2], axis=1)  # (N, 3, 2)
    confidences = np.full(keypoints.shape[:2] + (1,), 0.5, np.float32)
    forward = Detections(
        torch.from_numpy(boxes * meta.scale + np.tile(offset, 2)),
        torch.ones(len(boxes)),
        torch.zeros(len(boxes), dtype=torch.long),
        keypoints=torch.from_numpy(np.concatenate([keypoints * meta.scale + offset, confidences], axis=-1)),
    )
    back = forward.rescale(meta)
    np.testing.assert_allclose(back.boxes.numpy(), boxes, atol=1e-3)
    np.testing.assert_allclose(back.keypoints[..., :2].numpy(), keypoints, atol=1e-3)
    np.testing.assert_array_equal(back.keypoints[..., 2].numpy(), confidences[..., 0])


@EXAMPLES
@given(scene=scenes(), size=image_sizes)
def test_training_letterbox_moves_targets_as_letterbox_params_says(
    scene: tuple[int, int, np.ndarray], size: int
) -> None:
    """The pipeline without augmentation takes keypoints to ``xy * scale + offset`` and boxes to within
    half a pixel of it, so the predictor's inverse brings them back to the original pixels."""
    height, width, boxes = scene
    keypoints = boxes.reshape(-1, 2)
    out = run(build_transforms(size), 0, np.zeros((height, width, 3), np.uint8), boxes, keypoints)
    scale, offset = letterbox_params(height, width, size)
    np.testing.assert_allclose(np.asarray(out["keypoints"])[:, :2], keypoints * scale + offset, atol=1e-3)
    kept = np.asarray(out["instances"], np.int64)
    # The image is resized to round(width * scale) px, and boxes with it: at most 0.5 px off.
    np.testing.assert_allclose(
        np.asarray(out["bboxes"]).reshape(-1, 4), boxes[kept] * scale + np.tile(offset, 2), atol=0.5 + 1e-4
    )


@EXAMPLES
@given(
    height=sides,
    width=sides,
    size=image_sizes,
    value=st.integers(0, 255).filter(lambda value: value != PAD_VALUE),
)
def test_letterbox_puts_the_image_top_left(height: int, width: int, size: int, value: int) -> None:
    """The letterboxed image is ``(size, size, 3)``: the content fills the top-left
    ``round(height * scale) x round(width * scale)`` and padding the rest; a full mask comes back
    full through ``Detections.rescale``."""
    image = np.full((height, width, 3), value, np.uint8)
    out = run(
        build_transforms(size),
        0,
        image,
        np.zeros((0, 4), np.float32),
        masks=[np.ones((height, width), np.uint8)],
    )
    scale, offset = letterbox_params(height, width, size)
    rows, cols = round(height * scale), round(width * scale)
    letterboxed, mask = out["image"], np.asarray(out["masks"])[0]
    assert letterboxed.shape == (size, size, 3) and max(rows, cols) == size
    assert (letterboxed[:rows, :cols] == value).all()
    assert (letterboxed[rows:] == PAD_VALUE).all() and (letterboxed[:, cols:] == PAD_VALUE).all()
    assert mask[:rows, :cols].all() and mask.sum() == rows * cols

    found = Detections(
        torch.zeros(1, 4),
        torch.ones(1),
        torch.zeros(1, dtype=torch.long),
        masks=torch.from_numpy(mask[None]).bool(),
    )
    back = found.rescale(ImageMeta(0, (height, width), scale, offset))
    assert back.masks.shape == (1, height, width) and bool(back.masks.all())
