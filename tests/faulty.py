"""Build COCO sets with the faults users' exports hold, from generated images or real photos.

``python -m tests.faulty DST [--photos DIR --ann JSON]`` writes one such set; the tests import
:func:`broken_copy` and :data:`IMAGE_FAULTS` / :data:`ANNOTATION_FAULTS`.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["ANNOTATION_FAULTS", "IMAGE_FAULTS", "base_set", "broken_copy", "truncate"]


def truncate(path: Path) -> None:
    """Cut a file to half its bytes: the header still opens, the pixels do not decode."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _save_as(path: Path, mode: str, exif_orientation: int | None = None) -> None:
    """Re-save an image in another mode (or with an EXIF orientation), keeping its name."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    if mode == "I;16":
        gray = np.asarray(rgb.convert("L"), np.uint16) * 257
        Image.fromarray(gray).save(path.with_suffix(".png"))
        return
    converted = rgb if mode == "RGB" else rgb.convert(mode)
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        converted.save(path, exif=exif.tobytes())
    elif mode in ("RGBA", "P"):
        converted.save(path.with_suffix(".png"))
    else:
        converted.save(path)


def base_set(root: Path, count: int = 24, size: tuple[int, int] = (96, 128), seed: int = 0) -> Path:
    """A small clean set of generated images (rectangles on noise), two classes; returns the json."""
    rng = np.random.default_rng(seed)
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    height, width = size
    for image_id in range(1, count + 1):
        pixels = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
        for k in range(2):
            w, h = (int(v) for v in rng.integers(16, 40, 2))
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            pixels[y : y + h, x : x + w] = (200, 60, 60) if k == 0 else (60, 200, 60)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": k + 1,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                    "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
                }
            )
        name = f"{image_id:04d}.jpg"
        Image.fromarray(pixels).save(images_dir / name, quality=95)
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
    categories = [{"id": 1, "name": "red"}, {"id": 2, "name": "green"}]
    ann_file = root / "annotations.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return ann_file


def _image(content: dict, index: int) -> dict:
    return content["images"][index]


def _ann(content: dict, k: int) -> dict:
    """The ``k``-th annotation a fault is put in (every other one, so no two faults share one)."""
    return content["annotations"][2 * k + 1]


def _last_image(content: dict) -> dict:
    """The image of the last annotation: far from the annotations that :func:`_ann` picks."""
    image_id = content["annotations"][-1]["image_id"]
    return next(image for image in content["images"] if image["id"] == image_id)


# Each fault: (kind the doctor reports, how to put it in a copy: f(content, image_dir)).
# Image faults use images 1..11 (by id order), annotation faults one annotation each.
IMAGE_FAULTS: dict[str, Callable[[dict, Path], None]] = {
    "image_missing": lambda c, d: (d / _image(c, 1)["file_name"]).unlink(),
    "image_empty": lambda c, d: (d / _image(c, 2)["file_name"]).write_bytes(b""),
    "image_corrupt": lambda c, d: truncate(d / _image(c, 3)["file_name"]),
    "image_not_image": lambda c, d: (d / _image(c, 4)["file_name"]).write_text("not an image\n"),
    "image_size_mismatch": lambda c, d: _image(c, 5).update(width=_image(c, 5)["width"] + 17),
    "image_exif_rotated": lambda c, d: _save_as(d / _image(c, 6)["file_name"], "RGB", exif_orientation=3),
    "image_mode": lambda c, d: _save_as(d / _image(c, 7)["file_name"], "L"),
    "image_size_missing": lambda c, d: [_image(c, 8).pop(k) for k in ("width", "height")],
}

# Further image modes, each also reported as image_mode (one image each: RGBA, palette, CMYK, 16-bit).
MODE_FAULTS = {"RGBA": 9, "P": 10, "CMYK": 11, "I;16": 0}


def _set_box(k: int, value: object) -> Callable[[dict, Path], None]:
    return lambda c, d: _ann(c, k).update(bbox=value)


ANNOTATION_FAULTS: dict[str, Callable[[dict, Path], None]] = {
    "box_non_numeric": _set_box(0, ["a", 1, 2, 3]),
    "box_not_finite": _set_box(1, [float("nan"), 1, 10, 10]),
    "box_wrong_length": _set_box(2, [1, 2, 3]),
    "box_empty": _set_box(3, [5, 5, -3, 10]),
    "box_outside": _set_box(4, [5000, 5000, 10, 10]),
    "box_partly_outside": _set_box(5, [-20, -20, 60, 80]),
    "annotation_unknown_category": lambda c, d: _ann(c, 6).update(category_id=99999),
    "annotation_unknown_image": lambda c, d: _ann(c, 7).update(image_id=999999),
    "duplicate_annotation_id": lambda c, d: _ann(c, 8).update(id=_ann(c, 9)["id"]),
    "polygon_invalid": lambda c, d: _ann(c, 10).update(segmentation=[[1, 2, 3, 4]]),
    "rle_size_mismatch": lambda c, d: _ann(c, 11).update(segmentation={"size": [7, 7], "counts": "0"}),
    "box_missing": lambda c, d: [_ann(c, 12).pop(k, None) for k in ("bbox", "segmentation")],
    "image_without_annotations": lambda c, d: c.update(
        annotations=[a for a in c["annotations"] if a["image_id"] != _last_image(c)["id"]]
    ),
    "class_without_annotations": lambda c, d: c["categories"].append({"id": 99998, "name": "unseen"}),
}


def broken_copy(
    ann_file: Path, image_dir: Path, dst: Path, kinds: list[str] | None = None
) -> tuple[Path, Path]:
    """Copy a set and put faults in it (all of :data:`IMAGE_FAULTS` and :data:`ANNOTATION_FAULTS`,
    or ``kinds``); the set needs at least 26 images. Returns the new json and image folder."""
    content = json.loads(Path(ann_file).read_text())
    content["images"] = sorted(content["images"], key=lambda image: image["id"])
    if len(content["images"]) < 26:
        raise ValueError(f"{ann_file} has {len(content['images'])} images; broken_copy needs 26")
    images = dst / "images"
    shutil.rmtree(dst, ignore_errors=True)
    images.mkdir(parents=True)
    for image in content["images"]:
        target = images / image["file_name"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(image_dir) / image["file_name"], target)
    chosen = [*IMAGE_FAULTS, *ANNOTATION_FAULTS, "modes"] if kinds is None else kinds
    for kind in chosen:
        if kind == "modes":
            for mode, index in MODE_FAULTS.items():
                _save_as(images / _image(content, index)["file_name"], mode)
                if mode in ("RGBA", "P", "I;16"):
                    image = _image(content, index)
                    (images / image["file_name"]).unlink()
                    image["file_name"] = str(Path(image["file_name"]).with_suffix(".png"))
            continue
        (IMAGE_FAULTS.get(kind) or ANNOTATION_FAULTS[kind])(content, images)
    out = dst / "annotations.json"
    # NaN is what a broken exporter writes; json.dumps writes it as the bare token NaN.
    out.write_text(json.dumps(copy.deepcopy(content)))
    return out, images


def jpeg_bytes(size: tuple[int, int] = (32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 30, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--ann", type=Path, help="a COCO json to copy (default: a generated set)")
    parser.add_argument("--images", type=Path, help="its image folder")
    args = parser.parse_args()
    if args.ann is None:
        ann, images = base_set(args.dst / "clean", count=32), args.dst / "clean" / "images"
    else:
        ann, images = args.ann, args.images
    out, out_images = broken_copy(ann, images, args.dst / "broken")
    print(f"{out}\n{out_images}")


if __name__ == "__main__":
    main()
