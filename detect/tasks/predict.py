"""Prediction entry: a checkpoint and images in, drawn images and ``predictions.json`` out."""

from __future__ import annotations

import glob
import json
import logging
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from detect.data.coco import CategoryMap, read_image
from detect.data.transforms import build_transforms, letterbox_params
from detect.eval.coco import encode_masks
from detect.structures import Detections, ImageMeta
from detect.tasks.checkpoint import load_task
from detect.tasks.visualize import draw_detections

__all__ = ["find_images", "predict", "prediction_entry"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}


def find_images(source: str | Path) -> list[Path]:
    """Image files named by ``source``: one file, every image in a folder, or a glob pattern."""
    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
        files = sorted(Path(p) for p in glob.glob(str(source), recursive=True) if Path(p).is_file())
    if not files:
        raise FileNotFoundError(f"no images found at {source}")
    return files


def _device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


@torch.inference_mode()
def predict(cfg: DictConfig) -> list[dict]:
    """Detect objects in every image of ``cfg.source``.

    Returns:
        One entry per readable image: file, size and its detections (xyxy boxes in original pixels,
        scores, category ids and names; RLE ``masks`` and flat x, y, score ``keypoints`` when the
        model predicts them).
    """
    device = _device(cfg.device)
    task = load_task(cfg.ckpt_path, device)
    model = task.model.to(device)
    image_size = int(cfg.image_size or task.config.data.image_size)
    model.check_input_size(image_size, image_size)
    transform = build_transforms(image_size)

    def letterbox(image: np.ndarray) -> dict:
        return transform(
            image=image, bboxes=np.zeros((0, 4)), labels=[], instances=[], keypoints=np.zeros((0, 2))
        )

    output_dir = Path(cfg.paths.output_dir)
    drawn_dir = output_dir / "images"
    drawn_dir.mkdir(parents=True, exist_ok=True)
    entries, skipped = [], 0
    for path in tqdm(find_images(cfg.source), desc="predict", unit="img"):
        try:
            image = read_image(path)
        except (OSError, UnidentifiedImageError) as error:
            log.warning("skipping %s: cannot read it (%s)", path, error)
            skipped += 1
            continue
        height, width = image.shape[:2]
        scale, offset = letterbox_params(height, width, image_size)
        tensor = torch.from_numpy(letterbox(image=image)["image"])
        tensor = tensor.permute(2, 0, 1).unsqueeze(0).to(device)
        (detections,) = model.postprocess(model(tensor), [(image_size, image_size)])
        detections = detections.rescale(ImageMeta(path.name, (height, width), scale, offset))
        detections = detections.select(detections.scores >= cfg.score_thresh).to("cpu")
        drawn = draw_detections(
            image,
            detections,
            task.categories.names,
            cfg.score_thresh,
            skeleton=task.skeleton,
            keypoint_labels=task.keypoint_labels,
        )
        Image.fromarray(drawn).save(drawn_dir / f"{path.stem}.jpg")
        entries.append(prediction_entry(path, width, height, detections, task.categories))
    (output_dir / "predictions.json").write_text(json.dumps(entries, indent=1))
    print(f"{len(entries)} images -> {drawn_dir}; predictions: {output_dir / 'predictions.json'}")
    if skipped:
        print(f"skipped {skipped} unreadable files (see the log)")
    return entries


def prediction_entry(
    path: Path, width: int, height: int, detections: Detections, categories: CategoryMap
) -> dict:
    """One image's ``predictions.json`` record: boxes, scores, classes, and masks or keypoints."""
    labels = detections.labels.tolist()
    entry = {
        "file": str(path),
        "width": width,
        "height": height,
        "boxes": [[round(v, 2) for v in box] for box in detections.boxes.tolist()],
        "scores": [round(v, 4) for v in detections.scores.tolist()],
        "category_ids": [categories.ids[i] for i in labels],
        "category_names": [categories.names[i] for i in labels],
    }
    if detections.masks is not None:
        entry["masks"] = encode_masks(detections.masks.numpy())
    if detections.keypoints is not None:
        # (N, K, 3) -> one flat x, y, confidence list per detection; N may be 0.
        entry["keypoints"] = [[round(v, 2) for v in kp] for kp in detections.keypoints.flatten(1).tolist()]
    return entry
