"""The data doctor: the faults a COCO json and its images can hold, found, mended or skipped, and counted.

:func:`check_coco` reads a json's content and returns a clean copy that pycocotools and the
datasets can index, recording every fault in a :class:`FaultLog`. The same log takes the faults
found when an image is decoded (:mod:`detect.data.images`). Severities:

- ``fatal``: nothing sensible is left to train on; loading stops with one line (:class:`DataError`).
- ``skip``: an image, an annotation or a part of one (a polygon, keypoints) is left out.
- ``mend``: fixed in place (a box clipped to the image, EXIF applied, a mode converted, an id renumbered).
- ``note``: kept as it is, worth knowing (images without annotations, classes without any).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any

__all__ = ["KINDS", "DataError", "FaultKind", "FaultLog", "check_coco", "read_coco_json"]

log = logging.getLogger(__name__)


class DataError(ValueError):
    """A dataset that cannot be used at all, or a fault under ``data.strict=true``: one line."""


@dataclass(frozen=True)
class FaultKind:
    """One kind of fault: how bad it is, what it is, and what is done about it."""

    severity: str
    what: str
    action: str
    unit: str = "annotation"


KINDS: dict[str, FaultKind] = {
    # The file as a whole.
    "json_invalid": FaultKind("fatal", "not valid JSON", "stopped", "file"),
    "json_not_coco": FaultKind("fatal", "not a COCO json", "stopped", "file"),
    "no_images": FaultKind("fatal", "no images listed", "stopped", "file"),
    "no_categories": FaultKind("fatal", "no categories listed", "stopped", "file"),
    "no_images_left": FaultKind("fatal", "no usable image left", "stopped", "file"),
    "duplicate_image_id": FaultKind("fatal", "image id listed twice", "stopped", "image"),
    "duplicate_category_id": FaultKind("fatal", "category id listed twice", "stopped", "category"),
    "category_invalid": FaultKind("fatal", "category without an integer id or a name", "stopped", "category"),
    # Images.
    "image_invalid": FaultKind(
        "skip", "image entry without an integer id or a file_name", "skipped", "image"
    ),
    "image_missing": FaultKind("skip", "image file missing", "skipped", "image"),
    "image_empty": FaultKind("skip", "image file empty (0 bytes)", "skipped", "image"),
    "image_not_image": FaultKind("skip", "file is not an image", "skipped", "image"),
    "image_corrupt": FaultKind("skip", "image truncated or corrupt", "skipped", "image"),
    "image_size_mismatch": FaultKind(
        "mend", "json width/height differ from the file", "the file's size used", "image"
    ),
    "image_size_missing": FaultKind("mend", "json width/height missing", "read from the file", "image"),
    "image_exif_rotated": FaultKind("mend", "EXIF orientation", "rotation applied", "image"),
    "image_mode": FaultKind(
        "mend", "not RGB (gray, RGBA, palette, CMYK, 16-bit)", "converted to RGB", "image"
    ),
    "image_without_annotations": FaultKind(
        "note", "image without annotations", "kept as background", "image"
    ),
    # Annotations.
    "annotation_invalid": FaultKind("skip", "annotation without image_id / category_id", "skipped"),
    "annotation_unknown_image": FaultKind("skip", "annotation of an image id not listed", "skipped"),
    "annotation_unknown_category": FaultKind("skip", "annotation of a category id not listed", "skipped"),
    "duplicate_annotation_id": FaultKind("mend", "annotation id used twice", "given a new id"),
    "box_missing": FaultKind("skip", "no bbox and no usable segmentation", "skipped"),
    "box_from_segmentation": FaultKind("mend", "no bbox", "box taken from the segmentation"),
    "box_non_numeric": FaultKind("skip", "bbox with non-numeric values", "skipped"),
    "box_wrong_length": FaultKind("skip", "bbox without exactly 4 values", "skipped"),
    "box_not_finite": FaultKind("skip", "bbox with NaN or inf", "skipped"),
    "box_empty": FaultKind("skip", "bbox with negative or zero size", "skipped"),
    "box_outside": FaultKind("skip", "bbox wholly outside its image", "skipped"),
    "box_partly_outside": FaultKind("mend", "bbox partly outside its image", "clipped to the image"),
    "polygon_invalid": FaultKind("skip", "polygon empty or under 3 points", "segmentation dropped, box kept"),
    "rle_size_mismatch": FaultKind(
        "skip", "RLE size differs from its image", "segmentation dropped, box kept"
    ),
    "segmentation_invalid": FaultKind(
        "skip", "segmentation neither polygons nor RLE", "segmentation dropped, box kept"
    ),
    "keypoints_wrong_length": FaultKind(
        "skip", "keypoints not 3 values per declared keypoint", "keypoints dropped, box kept"
    ),
    "keypoints_out_of_range": FaultKind(
        "mend", "keypoint outside its image, non-finite or with a visibility not 0/1/2", "marked not labelled"
    ),
    # Categories.
    "class_without_annotations": FaultKind("note", "class without any annotation", "kept", "category"),
}

_FIRST = 20  # ids kept per kind: enough to find them, bounded on a 100k-image set


class FaultLog:
    """Faults by kind: the count and the first ids of each, for one source (a json, a split).

    Args:
        source: what the faults belong to, named in every message (the json's path).
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[tuple[Any, str]]] = {}

    def add(self, kind: str, ref: Any, detail: str = "") -> None:
        if kind not in KINDS:
            raise KeyError(f"unknown fault kind {kind!r}")
        self.counts[kind] = self.counts.get(kind, 0) + 1
        examples = self.examples.setdefault(kind, [])
        if len(examples) < _FIRST:
            examples.append((ref, detail))

    def __bool__(self) -> bool:
        return bool(self.counts)

    def kinds(self, *severities: str) -> list[str]:
        return [kind for kind in self.counts if KINDS[kind].severity in severities]

    @property
    def has_errors(self) -> bool:
        """Anything fatal or skipped: data that will not be used as the file states it."""
        return bool(self.kinds("fatal", "skip"))

    def describe(self, kind: str, first: int = 5) -> str:
        """``box_not_finite (bbox with NaN or inf): 3 annotations, skipped: id 12, 15, 40; first: ...``."""
        info, count = KINDS[kind], self.counts[kind]
        refs = ", ".join(str(ref) for ref, _ in self.examples[kind][:first])
        more = " ..." if count > first else ""
        unit = (
            info.unit
            if count == 1
            else (info.unit[:-1] + "ies" if info.unit.endswith("y") else info.unit + "s")
        )
        detail = self.examples[kind][0][1]
        hint = f"; first: {detail}" if detail else ""
        return f"{kind} ({info.what}): {count} {unit}, {info.action}: id {refs}{more}{hint}"

    def warn(self, logger: logging.Logger = log) -> None:
        """One warning per kind that is not a note, one info line per note."""
        for kind in self.counts:
            level = logging.INFO if KINDS[kind].severity == "note" else logging.WARNING
            logger.log(level, "%s: %s", self.source, self.describe(kind))

    def raise_if_strict(self) -> None:
        """Under ``data.strict=true``: the first skip (or fatal fault) as a :class:`DataError`."""
        kinds = self.kinds("fatal", "skip")
        if kinds:
            raise DataError(
                f"{self.source}: {self.describe(kinds[0])} (data.strict=true turns every skip into an error)"
            )

    def to_dict(self) -> dict[str, dict]:
        return {
            kind: {
                "severity": KINDS[kind].severity,
                "what": KINDS[kind].what,
                "action": KINDS[kind].action,
                "count": count,
                "first": [{"id": ref, "detail": detail} for ref, detail in self.examples[kind]],
            }
            for kind, count in sorted(self.counts.items(), key=lambda item: _ORDER[KINDS[item[0]].severity])
        }


_ORDER = {"fatal": 0, "skip": 1, "mend": 2, "note": 3}


def read_coco_json(path: str | Path) -> dict:
    """Read a json file, one-line :class:`DataError` when it is missing, unreadable or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        with path.open("rb") as file:
            content = json.load(file)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(content, dict):
        raise DataError(
            f"{path} is not a COCO json: its top level is a {type(content).__name__}, not an object"
        )
    return content


_PLAIN_NUMBERS = (int, float)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _numbers(values: Any) -> list[float] | None:
    if not isinstance(values, (list, tuple)):
        return None
    # json gives int and float: checked by exact type first, since an ABC check (Real) per
    # coordinate made the doctor a minute long on COCO train2017's 860k annotations.
    if not all(type(v) in _PLAIN_NUMBERS for v in values) and not all(
        isinstance(v, Real) and not isinstance(v, bool) for v in values
    ):
        return None
    return [float(v) for v in values]


def _fatal(log_: FaultLog, kind: str, ref: Any, message: str) -> DataError:
    log_.add(kind, ref, message)
    return DataError(f"{log_.source}: {message}")


def _check_categories(categories: Any, faults: FaultLog) -> list[dict]:
    if not isinstance(categories, list) or not categories:
        raise _fatal(faults, "no_categories", "-", "no categories: the 'categories' list is missing or empty")
    seen: set[int] = set()
    for category in categories:
        if not isinstance(category, dict) or not _is_int(category.get("id")) or "name" not in category:
            raise _fatal(
                faults,
                "category_invalid",
                repr(category)[:60],
                f"category without an integer id or a name: {category!r:.80}",
            )
        if category["id"] in seen:
            raise _fatal(
                faults,
                "duplicate_category_id",
                category["id"],
                f"category id {category['id']} is listed twice",
            )
        seen.add(category["id"])
    return categories


def _check_images(images: Any, faults: FaultLog) -> dict[int, dict]:
    if not isinstance(images, list) or not images:
        raise _fatal(faults, "no_images", "-", "no images: the 'images' list is missing or empty")
    by_id: dict[int, dict] = {}
    for image in images:
        if (
            not isinstance(image, dict)
            or not _is_int(image.get("id"))
            or not isinstance(image.get("file_name"), str)
        ):
            faults.add("image_invalid", repr(image)[:60])
            continue
        if image["id"] in by_id:
            raise _fatal(
                faults,
                "duplicate_image_id",
                image["id"],
                f"image id {image['id']} is listed twice ({by_id[image['id']]['file_name']} and {image['file_name']})",
            )
        image = dict(image)
        width, height = image.get("width"), image.get("height")
        if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
            # Read from the file when the image is first decoded.
            image.pop("width", None), image.pop("height", None)
            faults.add("image_size_missing", image["id"])
        by_id[image["id"]] = image
    if not by_id:
        raise _fatal(
            faults, "no_images_left", "-", "no usable image entry (each needs an integer id and a file_name)"
        )
    return by_id


def _check_box(ann: dict, image: dict, faults: FaultLog) -> list[float] | None:
    ref = ann.get("id")
    raw = ann.get("bbox")
    if raw is None:
        return None
    if isinstance(raw, (list, tuple)) and len(raw) != 4:
        faults.add("box_wrong_length", ref, f"{len(raw)} values")
        return []
    box = _numbers(raw)
    if box is None:
        faults.add("box_non_numeric", ref, f"bbox {raw!r:.60}")
        return []
    if not all(math.isfinite(v) for v in box):
        faults.add("box_not_finite", ref, f"bbox {box}")
        return []
    x, y, w, h = box
    if w <= 0 or h <= 0:
        faults.add("box_empty", ref, f"width {w:g}, height {h:g}")
        return []
    width, height = image.get("width"), image.get("height")
    if width and height:
        x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, width), min(y + h, height)
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            faults.add("box_outside", ref, f"bbox {box} in a {width}x{height} image")
            return []
        if (x0, y0, x1, y1) != (x, y, x + w, y + h):
            faults.add("box_partly_outside", ref, f"bbox {box} in a {width}x{height} image")
            return [x0, y0, x1 - x0, y1 - y0]
    return box


def _polygons_ok(segmentation: list) -> bool:
    if not segmentation:
        return False
    for polygon in segmentation:
        values = _numbers(polygon)
        # The sum is finite exactly when every value is (one C loop instead of one call each).
        if values is None or len(values) < 6 or len(values) % 2 or not math.isfinite(sum(values)):
            return False
    return True


def _check_segmentation(ann: dict, image: dict, faults: FaultLog) -> None:
    """Drop a segmentation that pycocotools cannot rasterise (the box stays)."""
    segmentation, ref = ann.get("segmentation"), ann.get("id")
    if segmentation is None or segmentation == []:
        # Box-only annotations: many exporters write an empty list; not a fault.
        ann.pop("segmentation", None)
        return
    if isinstance(segmentation, list):
        if not _polygons_ok(segmentation):
            faults.add(
                "polygon_invalid",
                ref,
                f"{len(segmentation)} polygon(s), point counts {[len(p) // 2 if isinstance(p, list) else '?' for p in segmentation][:4]}",
            )
            ann.pop("segmentation")
        return
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        size = segmentation["size"]
        expected = [image.get("height"), image.get("width")]
        if None not in expected and list(size) != expected:
            faults.add("rle_size_mismatch", ref, f"RLE size {list(size)}, image {expected}")
            ann.pop("segmentation")
        return
    faults.add("segmentation_invalid", ref, f"{type(segmentation).__name__}")
    ann.pop("segmentation")


def _box_of_polygons(segmentation: Any) -> list[float] | None:
    if not isinstance(segmentation, list) or not _polygons_ok(segmentation):
        return None
    xs = [v for polygon in segmentation for v in polygon[0::2]]
    ys = [v for polygon in segmentation for v in polygon[1::2]]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def _check_keypoints(ann: dict, image: dict, count: int, faults: FaultLog) -> None:
    if "keypoints" not in ann or count == 0:
        return
    ref = ann.get("id")
    values = _numbers(ann["keypoints"])
    if values is None or len(values) != 3 * count:
        length = (
            len(ann["keypoints"]) if isinstance(ann["keypoints"], list) else type(ann["keypoints"]).__name__
        )
        faults.add("keypoints_wrong_length", ref, f"{length} values for {count} keypoints")
        ann.pop("keypoints")
        ann["num_keypoints"] = 0
        return
    width, height = image.get("width"), image.get("height")
    fixed = False
    for i in range(count):
        x, y, v = values[3 * i : 3 * i + 3]
        bad_v = v not in (0, 1, 2)
        outside = v > 0 and width and height and not (0 <= x < width and 0 <= y < height)
        if bad_v or outside or not (math.isfinite(x) and math.isfinite(y)):
            values[3 * i : 3 * i + 3] = [0.0, 0.0, 0.0]
            fixed = True
    if fixed:
        faults.add("keypoints_out_of_range", ref)
        ann["keypoints"] = values
        ann["num_keypoints"] = sum(1 for v in values[2::3] if v > 0)


def check_coco(content: dict, source: str, faults: FaultLog | None = None) -> tuple[dict, FaultLog]:
    """Check a COCO json's content; return a clean copy and the faults found.

    The copy keeps only what can be used: images with an id and a file name, annotations of
    listed images and categories with a finite, non-empty box (clipped to the image where it
    crosses the border), segmentations pycocotools can read, keypoints of the declared length.
    Duplicate annotation ids are renumbered, so no annotation is silently merged into another.

    Raises:
        DataError: the content has nothing sensible to train on (no images or categories,
            duplicate image or category ids): one line naming ``source`` and the problem.
    """
    faults = FaultLog(source) if faults is None else faults
    for key in ("images", "annotations", "categories"):
        if key in content and not isinstance(content[key], list):
            raise _fatal(
                faults, "json_not_coco", key, f"'{key}' is a {type(content[key]).__name__}, not a list"
            )
    categories = _check_categories(content.get("categories"), faults)
    images = _check_images(content.get("images"), faults)
    keypoint_counts = {
        c["id"]: len(c["keypoints"]) for c in categories if isinstance(c.get("keypoints"), list)
    }
    category_ids = {category["id"] for category in categories}
    annotations, ids, used_categories, annotated = [], set(), set(), set()
    raw_annotations = content.get("annotations") or []
    next_id = 1 + max(
        (a["id"] for a in raw_annotations if isinstance(a, dict) and _is_int(a.get("id"))), default=0
    )
    for raw in raw_annotations:
        if (
            not isinstance(raw, dict)
            or not _is_int(raw.get("image_id"))
            or not _is_int(raw.get("category_id"))
        ):
            faults.add(
                "annotation_invalid", f"ann {raw.get('id') if isinstance(raw, dict) else repr(raw)[:40]}"
            )
            continue
        ann = dict(raw)
        ref = ann.get("id")
        image = images.get(ann["image_id"])
        if image is None:
            faults.add("annotation_unknown_image", ref, f"image id {ann['image_id']}")
            continue
        if ann["category_id"] not in category_ids:
            faults.add("annotation_unknown_category", ref, f"category id {ann['category_id']}")
            continue
        if not _is_int(ann.get("id")) or ann["id"] in ids:
            faults.add("duplicate_annotation_id", ref, f"renumbered {next_id}")
            ann["id"], next_id = next_id, next_id + 1
        _check_segmentation(ann, image, faults)
        box = _check_box(ann, image, faults)
        if box == []:
            continue
        if box is None:
            box = _box_of_polygons(ann.get("segmentation"))
            if box is None or box[2] <= 0 or box[3] <= 0:
                faults.add("box_missing", ref)
                continue
            faults.add("box_from_segmentation", ref)
        ann["bbox"] = box
        if not isinstance(ann.get("area"), Real) or not math.isfinite(ann["area"]) or ann["area"] <= 0:
            ann["area"] = box[2] * box[3]
        ann["iscrowd"] = 1 if ann.get("iscrowd") else 0
        _check_keypoints(ann, image, keypoint_counts.get(ann["category_id"], 0), faults)
        ids.add(ann["id"])
        used_categories.add(ann["category_id"])
        annotated.add(ann["image_id"])
        annotations.append(ann)
    for image_id in images:
        if image_id not in annotated:
            faults.add("image_without_annotations", image_id)
    for category in categories:
        if category["id"] not in used_categories:
            faults.add("class_without_annotations", category["id"], str(category["name"]))
    clean = {
        key: value for key, value in content.items() if key not in ("images", "annotations", "categories")
    }
    clean.update(images=list(images.values()), annotations=annotations, categories=categories)
    return clean, faults
