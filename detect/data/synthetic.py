"""The embedded ``shapes`` dataset: COCO-format images generated on first use, no download.

Each 320 px image shows 1-8 objects of seven categories (six geometric shapes and a stick
``person`` with six keypoints) on textured, cluttered backgrounds. Objects are 8-160 px across,
may be partly occluded by later objects or cut by the image border, and come with polygon masks of
their visible part, tight boxes and, for persons, keypoints with COCO visibility flags.
Generation is deterministic for a given seed.

A *style* changes how the images look, never what is labelled: ``default`` is the set above;
``plain``, ``small``, ``dense``, ``lighting``, ``wide`` and ``noisy`` (see :data:`STYLES`) are the
other looks a user's data may have, so that a recipe tuned on one style can be measured on others.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "CATEGORIES",
    "STYLES",
    "ShapesConfig",
    "Style",
    "ensure_shapes",
    "generate_shapes",
    "render_sample",
    "shapes_ready",
]

log = logging.getLogger(__name__)

KEYPOINT_NAMES = ["head", "left_hand", "right_hand", "hip", "left_foot", "right_foot"]
SKELETON = [[1, 4], [1, 2], [1, 3], [4, 5], [4, 6]]
CATEGORIES = [
    {"id": 1, "name": "circle", "supercategory": "shape"},
    {"id": 2, "name": "triangle", "supercategory": "shape"},
    {"id": 3, "name": "square", "supercategory": "shape"},
    {"id": 4, "name": "star", "supercategory": "shape"},
    {"id": 5, "name": "hexagon", "supercategory": "shape"},
    {"id": 6, "name": "cross", "supercategory": "shape"},
    {"id": 7, "name": "person", "supercategory": "figure", "keypoints": KEYPOINT_NAMES, "skeleton": SKELETON},
]
_VERSION = 1


@dataclass(frozen=True)
class Style:
    """How a style draws its images.

    Attributes:
        objects: range of the number of objects per image.
        sizes: range of object sizes in pixels (drawn log-uniformly).
        background: ``textured`` (gradient, blotches, stripes or checks, clutter lines), ``plain``
            (a near-flat colour) or ``noisy`` (strong noise, both textures, twice the clutter).
        inside: the smallest part of an object kept inside the image (the rest is cut by the border).
        occlusion: the largest part of an object's visible area a later object may hide.
        distractors: range of the number of unlabelled filled blobs drawn before the objects.
        lighting: a colour cast, gamma, contrast loss, vignette and blur over the whole image.
        aspect: width / height; ``image_size`` is the longer side.
    """

    objects: tuple[int, int] = (1, 8)
    sizes: tuple[float, float] = (8.0, 160.0)
    background: str = "textured"
    inside: float = 0.6
    occlusion: float = 0.5
    distractors: tuple[int, int] = (0, 0)
    lighting: bool = False
    aspect: float = 1.0


STYLES: dict[str, Style] = {
    "default": Style(),
    # Large, clean objects on flat colour: an easy look, far from the default's clutter.
    "plain": Style(objects=(1, 6), sizes=(24.0, 160.0), background="plain"),
    # Many small objects.
    "small": Style(objects=(8, 24), sizes=(6.0, 40.0)),
    # Crowds: heavy occlusion, objects cut by the border, unlabelled blobs among them.
    "dense": Style(objects=(10, 20), sizes=(16.0, 100.0), inside=0.35, occlusion=0.8, distractors=(4, 12)),
    # The default scene under colour casts, dim or harsh light, vignetting and blur.
    "lighting": Style(lighting=True),
    # Landscape frames (16:9), as from a video camera.
    "wide": Style(sizes=(8.0, 120.0), aspect=16 / 9),
    # Noisy textured backgrounds, mostly small objects, occlusion and border cuts.
    "noisy": Style(objects=(4, 16), sizes=(6.0, 64.0), background="noisy", inside=0.35, occlusion=0.7),
}


@dataclass(frozen=True)
class ShapesConfig:
    """Parameters of the generated set; any change produces a different dataset.

    ``min_objects`` ... ``max_size`` left at None take the style's values.
    """

    num_train: int = 600
    num_val: int = 200
    image_size: int = 320
    min_objects: int | None = None
    max_objects: int | None = None
    min_size: float | None = None
    max_size: float | None = None
    seed: int = 0
    style: str = "default"

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"unknown shapes style {self.style!r}: choose one of {', '.join(STYLES)}")

    def resolved(self) -> Style:
        """The style with this config's explicit object counts and sizes applied."""
        style = STYLES[self.style]
        objects = (_given(self.min_objects, style.objects[0]), _given(self.max_objects, style.objects[1]))
        sizes = (_given(self.min_size, style.sizes[0]), _given(self.max_size, style.sizes[1]))
        return Style(**{**asdict(style), "objects": objects, "sizes": sizes})

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the images."""
        aspect = STYLES[self.style].aspect
        if aspect >= 1:
            return int(round(self.image_size / aspect / 2) * 2), self.image_size
        return self.image_size, int(round(self.image_size * aspect / 2) * 2)


def _given(value, default):  # type: ignore[no-untyped-def]
    return default if value is None else value


def shapes_ready(root: str | Path, config: ShapesConfig) -> bool:
    """Whether ``root`` already holds the set generated with ``config``."""
    marker = Path(root) / "dataset.json"
    if not marker.is_file():
        return False
    return json.loads(marker.read_text()) == {"version": _VERSION, **asdict(config)}


def ensure_shapes(root: str | Path, config: ShapesConfig) -> Path:
    """Generate the set into ``root`` unless it is already there; returns ``root``."""
    root = Path(root)
    if shapes_ready(root, config):
        return root
    log.info("generating the shapes dataset in %s (once)", root)
    # Written aside and renamed into place, so concurrent jobs (sweeps, DDP ranks) never read half a set.
    staging = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    generate_shapes(staging, config)
    if root.exists() and not shapes_ready(root, config):
        shutil.rmtree(root)
    try:
        staging.rename(root)
    except OSError:
        if not shapes_ready(root, config):
            raise
        shutil.rmtree(staging, ignore_errors=True)
    return root


def generate_shapes(root: str | Path, config: ShapesConfig = ShapesConfig()) -> Path:
    """Write ``images/{train,val}/*.jpg`` and ``annotations/instances_{train,val}.json`` under ``root``.

    Returns:
        ``root`` as a Path.
    """
    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split, count, split_seed in (("train", config.num_train, 0), ("val", config.num_val, 1)):
        image_dir = root / "images" / split
        image_dir.mkdir(parents=True, exist_ok=True)
        # One process: worker processes were measured slower here, as each one re-imports torch.
        rendered = [_render_to_file((config, split, split_seed, index, image_dir)) for index in range(count)]
        images, annotations = [], []
        for image, objects in rendered:
            images.append(image)
            for obj in objects:
                obj.update(id=len(annotations) + 1, image_id=image["id"], iscrowd=0)
                annotations.append(obj)
        coco = {
            "info": {"description": f"detect synthetic shapes v{_VERSION}", **asdict(config)},
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": CATEGORIES,
        }
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
    (root / "dataset.json").write_text(json.dumps({"version": _VERSION, **asdict(config)}))
    log.info(
        "generated shapes dataset in %s (%d train, %d val images)", root, config.num_train, config.num_val
    )
    return root


def _render_to_file(job: tuple[ShapesConfig, str, int, int, Path]) -> tuple[dict, list[dict]]:
    config, split, split_seed, index, image_dir = job
    rng = np.random.default_rng([config.seed, split_seed, index, *_style_key(config.style)])
    image, objects = _render_image(rng, config)
    image_id = index + 1
    file_name = f"{split}_{image_id:06d}.jpg"
    cv2.imwrite(str(image_dir / file_name), image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
    return {
        "id": image_id,
        "file_name": file_name,
        "width": image.shape[1],
        "height": image.shape[0],
    }, objects


def _style_key(style: str) -> list[int]:
    """Extra seed words of a style: two styles never share a background or a layout."""
    return [] if style == "default" else [zlib.crc32(style.encode())]


def _random_color(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float32)


def _xy(rng: np.random.Generator, height: int, width: int) -> tuple[int, int]:
    """A random pixel; square images draw as the first version of the set did, so it stays the same."""
    if height == width:
        return tuple(int(v) for v in rng.integers(0, width, 2))  # type: ignore[return-value]
    return int(rng.integers(0, width)), int(rng.integers(0, height))


def _background(rng: np.random.Generator, height: int, width: int, kind: str = "textured") -> np.ndarray:
    """Gradient + low-frequency blotches + a texture + clutter lines, as float32 HxWx3."""
    # Coordinates over the longer side, so that square images are drawn as before styles existed.
    side = max(height, width)
    ys, xs = np.meshgrid(
        np.arange(height, dtype=np.float32) / side, np.arange(width, dtype=np.float32) / side, indexing="ij"
    )
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (np.cos(angle) * xs + np.sin(angle) * ys)[..., None]
    ramp = (ramp - ramp.min()) / (np.ptp(ramp) + 1e-6)
    image = (_random_color(rng) * (1 - ramp) + _random_color(rng) * ramp).astype(np.float32)
    if kind == "plain":
        # A flat colour with a gentle gradient and faint sensor noise, nothing else.
        base = _random_color(rng)
        image = image * np.float32(0.15) + base * np.float32(0.85)
        image += rng.standard_normal(size=image.shape, dtype=np.float32) * np.float32(rng.uniform(1, 4))
        return image
    blotches = rng.normal(0, 1, size=(6, 6, 3)).astype(np.float32)
    image += cv2.resize(blotches, (width, height), interpolation=cv2.INTER_CUBIC) * np.float32(
        rng.uniform(10, 35)
    )
    textures = [0, 1] if kind == "noisy" else [int(rng.integers(0, 3))]
    for texture in textures:
        if texture == 0:
            period = rng.uniform(6, 24)
            phase = rng.uniform(0, 2 * math.pi)
            direction = rng.uniform(0, math.pi)
            stripes = np.sin(
                (np.cos(direction) * xs + np.sin(direction) * ys) * side * 2 * math.pi / period + phase
            )
            image += stripes[..., None] * np.float32(rng.uniform(8, 30))
        elif texture == 1:
            cell = int(rng.integers(8, 32))
            checker = ((np.arange(height)[:, None] // cell + np.arange(width)[None] // cell) % 2).astype(
                np.float32
            )
            image += (checker[..., None] - 0.5) * np.float32(rng.uniform(10, 40))
    noise = (3, 12) if kind != "noisy" else (15, 35)
    image += rng.standard_normal(size=image.shape, dtype=np.float32) * np.float32(rng.uniform(*noise))
    lines = (4, 16) if kind != "noisy" else (8, 32)
    for _ in range(int(rng.integers(*lines))):
        p1 = _xy(rng, height, width)
        p2 = _xy(rng, height, width)
        cv2.line(image, p1, p2, _random_color(rng).tolist(), int(rng.integers(1, 4)), cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 6))):
        center = _xy(rng, height, width)
        axes = tuple(int(v) for v in rng.integers(4, 30, 2))
        start = float(rng.uniform(0, 360))
        cv2.ellipse(
            image, center, axes, 0, start, start + rng.uniform(60, 200), _random_color(rng).tolist(), 2
        )
    return image


def _distractor(rng: np.random.Generator, image: np.ndarray, sizes: tuple[float, float]) -> None:
    """An unlabelled filled blob (an irregular polygon) of an object's size and colours."""
    height, width = image.shape[:2]
    center = np.array([rng.uniform(0, width), rng.uniform(0, height)])
    radius = math.exp(rng.uniform(math.log(sizes[0]), math.log(sizes[1]))) / 2
    count = int(rng.integers(5, 10))
    angles = np.sort(rng.uniform(0, 2 * math.pi, count))
    radii = radius * rng.uniform(0.4, 1.0, count)
    points = center + np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(mask, [_poly(points)], 1)
    if mask.any():
        _paint(rng, image, mask)


def _relight(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Colour cast, gamma, contrast loss, vignette and sometimes blur, on a float32 0-255 image."""
    height, width = image.shape[:2]
    image = np.clip(image, 0, 255) / 255.0
    image = image * rng.uniform(0.6, 1.4, size=3).astype(np.float32)  # white balance off
    image = np.clip(image, 0, 1) ** np.float32(math.exp(rng.uniform(math.log(0.5), math.log(2.0))))
    contrast = np.float32(rng.uniform(0.45, 1.0))
    image = (image - image.mean()) * contrast + image.mean() * np.float32(rng.uniform(0.6, 1.2))
    ys, xs = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
    vignette = 1 - rng.uniform(0.0, 0.6) * np.clip(xs**2 + ys**2, 0, 2) / 2
    image = image * vignette[..., None].astype(np.float32)
    if rng.random() < 0.5:
        image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), rng.uniform(0.6, 1.6))
    return (image * 255).astype(np.float32)


def _regular_polygon(
    center: np.ndarray, radius: float, sides: int, angle: float, inner: float = 0.0
) -> np.ndarray:
    """Vertices of a regular polygon, or of a star when ``inner`` (inner radius ratio) is set."""
    if inner:
        angles = angle + np.arange(2 * sides) * math.pi / sides
        radii = np.where(np.arange(2 * sides) % 2 == 0, radius, radius * inner)
    else:
        angles = angle + np.arange(sides) * 2 * math.pi / sides
        radii = np.full(sides, radius)
    return center + np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)


def _shape_mask(
    rng: np.random.Generator, name: str, center: np.ndarray, size: float, canvas: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Full (unoccluded) uint8 mask of one object, and its ``(6, 2)`` keypoints for persons."""
    mask = np.zeros(canvas, dtype=np.uint8)
    radius = size / 2
    angle = rng.uniform(0, 2 * math.pi)
    keypoints = None
    if name == "circle":
        cv2.ellipse(
            mask,
            _pt(center),
            (_i(radius), _i(radius * rng.uniform(0.85, 1.0))),
            math.degrees(angle),
            0,
            360,
            1,
            -1,
        )
    elif name == "triangle":
        cv2.fillPoly(mask, [_poly(_regular_polygon(center, radius, 3, angle))], 1)
    elif name == "square":
        cv2.fillPoly(mask, [_poly(_regular_polygon(center, radius, 4, angle))], 1)
    elif name == "star":
        cv2.fillPoly(mask, [_poly(_regular_polygon(center, radius, 5, angle, inner=0.45))], 1)
    elif name == "hexagon":
        cv2.fillPoly(mask, [_poly(_regular_polygon(center, radius, 6, angle))], 1)
    elif name == "cross":
        arm = radius * rng.uniform(0.28, 0.4)
        bar = np.array([[-radius, -arm], [radius, -arm], [radius, arm], [-radius, arm]])
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        for points in (bar, bar[:, ::-1]):
            cv2.fillPoly(mask, [_poly(center + points @ rotation.T)], 1)
    elif name == "person":
        keypoints = _person(rng, mask, center, size)
    else:
        raise ValueError(f"unknown shape {name!r}")
    return mask, keypoints


def _person(rng: np.random.Generator, mask: np.ndarray, center: np.ndarray, height: float) -> np.ndarray:
    """Draw an upright stick figure ``height`` px tall; the viewer sees its left side on the right."""
    thickness = max(2, _i(height / 10))
    head_radius = height * 0.12
    head = center + np.array([rng.uniform(-0.05, 0.05) * height, -0.5 * height + head_radius])
    neck = head + np.array([0.0, head_radius])
    hip = center + np.array([rng.uniform(-0.04, 0.04) * height, 0.1 * height])
    shoulder = neck + (hip - neck) * 0.25
    arm_length, leg_length = 0.38 * height, 0.42 * height
    left_hand = shoulder + arm_length * _unit(rng.uniform(-0.3, 1.6))
    right_hand = shoulder + arm_length * _unit(math.pi - rng.uniform(-0.3, 1.6))
    left_foot = hip + leg_length * _unit(math.pi / 2 - rng.uniform(0.15, 0.7))
    right_foot = hip + leg_length * _unit(math.pi / 2 + rng.uniform(0.15, 0.7))
    cv2.circle(mask, _pt(head), _i(head_radius), 1, -1)
    for start, end in (
        (neck, hip),
        (shoulder, left_hand),
        (shoulder, right_hand),
        (hip, left_foot),
        (hip, right_foot),
    ):
        cv2.line(mask, _pt(start), _pt(end), 1, thickness)
    return np.stack([head, left_hand, right_hand, hip, left_foot, right_foot])


def _unit(angle: float) -> np.ndarray:
    return np.array([math.cos(angle), math.sin(angle)])


def _i(value: float) -> int:
    return max(1, int(round(value)))


def _pt(point: np.ndarray) -> tuple[int, int]:
    return int(round(point[0])), int(round(point[1]))


def _poly(points: np.ndarray) -> np.ndarray:
    return np.round(points).astype(np.int32).reshape(-1, 1, 2)


def _paint(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> None:
    """Fill ``mask`` with a colour that stands out from the pixels beneath, with shading and noise."""
    region = mask.astype(bool)
    beneath = image[region].mean(axis=0)
    for _ in range(10):
        color = _random_color(rng)
        if np.abs(color - beneath).sum() > 120:
            break
    ys, xs = np.nonzero(region)
    shade = 1.0 + rng.uniform(-0.25, 0.25) * (xs - xs.mean()) / (np.ptp(xs) + 1)
    pixels = color[None] * shade[:, None] + rng.normal(0, rng.uniform(2, 10), size=(len(xs), 3))
    image[ys, xs] = pixels
    if rng.random() < 0.5:
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(image, contours, -1, (color * rng.uniform(0.3, 0.7)).tolist(), 1, cv2.LINE_AA)


def render_sample(config: ShapesConfig, seed: int) -> tuple[np.ndarray, list[dict]]:
    """One ``(H, W, 3)`` uint8 image drawn as the generator draws the set, and its objects."""
    return _render_image(np.random.default_rng([seed, *_style_key(config.style)]), config)


def _render_image(rng: np.random.Generator, config: ShapesConfig) -> tuple[np.ndarray, list[dict]]:
    style = config.resolved()
    height, width = config.shape
    image = _background(rng, height, width, style.background)
    if style.distractors[1] > 0:
        for _ in range(int(rng.integers(style.distractors[0], style.distractors[1] + 1))):
            _distractor(rng, image, style.sizes)
    names = [category["name"] for category in CATEGORIES]
    placed: list[tuple[str, np.ndarray, np.ndarray | None]] = []
    occupied = np.zeros((height, width), dtype=np.int32) - 1  # index of the object on top at each pixel
    target = int(rng.integers(style.objects[0], style.objects[1] + 1))
    attempts = 0
    while len(placed) < target and attempts < 20 * target:
        attempts += 1
        name = names[int(rng.integers(len(names)))]
        object_size = math.exp(rng.uniform(math.log(style.sizes[0]), math.log(style.sizes[1])))
        if height == width:
            center = rng.uniform(-0.15 * object_size, width + 0.15 * object_size, size=2)
        else:
            center = rng.uniform(-0.15 * object_size, np.array([width, height]) + 0.15 * object_size)
        # Drawn on a padded canvas so that the part cut off by the border is known.
        pad = int(object_size) + 2
        full_mask, keypoints = _shape_mask(
            rng, name, center + pad, object_size, (height + 2 * pad, width + 2 * pad)
        )
        mask = np.ascontiguousarray(full_mask[pad : pad + height, pad : pad + width])
        if keypoints is not None:
            keypoints = keypoints - pad
        area = int(mask.sum())
        # Keep at least part of the object inside the image (60 % by default), the rest cut by the border ...
        if area < 12 or area < style.inside * full_mask.sum():
            continue
        # ... and never hide more than part (half by default) of what is still visible of an earlier object.
        covered = occupied[mask.astype(bool)]
        covered = covered[covered >= 0]
        if covered.size:
            ids, counts = np.unique(covered, return_counts=True)
            visible_before = np.bincount(occupied[occupied >= 0], minlength=len(placed))
            if np.any(counts > style.occlusion * visible_before[ids]):
                continue
        occupied[mask.astype(bool)] = len(placed)
        placed.append((name, mask, keypoints))
        _paint(rng, image, mask)
    if style.lighting:
        image = _relight(rng, image)
    image = np.clip(image, 0, 255).astype(np.uint8)
    objects = []
    for index, (name, _mask, keypoints) in enumerate(placed):
        visible = (occupied == index).astype(np.uint8)
        ys, xs = np.nonzero(visible)
        if len(xs) < 12:
            continue
        x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
        contours, _ = cv2.findContours(visible, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        polygons = [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]
        if not polygons:
            continue
        obj = {
            "category_id": names.index(name) + 1,
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "area": float(len(xs)),
            "segmentation": polygons,
        }
        if keypoints is not None:
            triplets = []
            for x, y in keypoints:
                inside = 0 <= x < width and 0 <= y < height
                if not inside:
                    triplets += [0.0, 0.0, 0]
                else:
                    seen = occupied[int(y), int(x)] == index
                    triplets += [round(float(x), 2), round(float(y), 2), 2 if seen else 1]
            obj["keypoints"] = triplets
            obj["num_keypoints"] = sum(1 for v in triplets[2::3] if v > 0)
        objects.append(obj)
    return image, objects
