"""Train the peer (Ultralytics YOLO, from its yaml, no weights) on a COCO-format set; score it with pycocotools.

A measuring stick only: Ultralytics (AGPL) is imported here, in a script outside the package, from
an environment of its own (``../shared/BENCHMARKING.md``), e.g.

    pip install --target /tmp/ultra --no-deps ultralytics ultralytics-thop py-cpuinfo pandas psutil polars
    PYTHONPATH=/tmp/ultra YOLO_OFFLINE=1 python bench/peer_train.py --train-ann A --train-images D \\
        --val-ann B --val-images E --out peer.json

It converts the COCO json to YOLO labels (boxes; class = the category's rank by id), trains with one
optimizer step per batch of 8 (``nbs=8``, the tuned peer recipe of ``docs/recipes.md``), predicts the
validation images with the last (EMA) weights, maps the classes back to COCO ids and scores
``predictions.json`` with pycocotools, as the project scores its own runs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path


def to_yolo(ann_file: Path, image_dir: Path, out: Path) -> list[int]:
    """Symlink the images into ``out/images`` and write ``out/labels``; returns the COCO ids by class."""
    coco = json.loads(ann_file.read_text())
    category_ids = sorted(c["id"] for c in coco["categories"])
    rank = {cid: i for i, cid in enumerate(category_ids)}
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    lines: dict[int, list[str]] = {image["id"]: [] for image in coco["images"]}
    sizes = {image["id"]: (image["width"], image["height"]) for image in coco["images"]}
    for ann in coco["annotations"]:
        if ann.get("iscrowd", 0):
            continue
        x, y, w, h = ann["bbox"]
        width, height = sizes[ann["image_id"]]
        cx, cy = (x + w / 2) / width, (y + h / 2) / height
        lines[ann["image_id"]].append(
            f"{rank[ann['category_id']]} {cx:.6f} {cy:.6f} {w / width:.6f} {h / height:.6f}"
        )
    for image in coco["images"]:
        link = out / "images" / Path(image["file_name"]).name
        if not link.exists():
            link.symlink_to((image_dir / image["file_name"]).resolve())
        (out / "labels" / f"{link.stem}.txt").write_text("\n".join(lines[image["id"]]))
    return category_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-ann", type=Path, required=True)
    parser.add_argument("--train-images", type=Path, required=True)
    parser.add_argument("--val-ann", type=Path, required=True)
    parser.add_argument("--val-images", type=Path, required=True)
    parser.add_argument("--model", default="yolov8n.yaml")
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("peer_runs"))
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the metrics")
    args = parser.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    # The project's environment has MLflow and W&B (its own loggers); the peer would log to them too.
    for logger in ("mlflow", "wandb", "clearml", "comet_ml", "dvclive", "neptune"):
        sys.modules[logger] = None  # type: ignore[assignment]
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    from ultralytics import YOLO

    work = args.work.resolve()
    category_ids = to_yolo(args.train_ann, args.train_images, work / "data" / "train")
    to_yolo(args.val_ann, args.val_images, work / "data" / "val")
    coco_val = json.loads(args.val_ann.read_text())
    names = {c["id"]: c["name"] for c in coco_val["categories"]}
    data_yaml = work / "data" / "data.yaml"
    data_yaml.write_text(
        json.dumps(
            {
                "path": str(work / "data"),
                "train": "train/images",
                "val": "val/images",
                "names": {i: names[cid] for i, cid in enumerate(category_ids)},
            }
        )
    )
    start = time.perf_counter()
    model = YOLO(args.model)
    model.train(
        data=str(data_yaml),
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        nbs=args.batch,  # one optimizer step per batch
        workers=0,
        device="cpu",
        cache="ram",
        val=False,
        plots=False,
        seed=args.seed,
        project=str(work / "runs"),
        name="train",
        exist_ok=True,
        verbose=False,
    )
    train_s = time.perf_counter() - start
    weights = work / "runs" / "train" / "weights" / "last.pt"
    trained = YOLO(str(weights))
    by_name = {Path(image["file_name"]).name: image["id"] for image in coco_val["images"]}
    detections = []
    paths = [str(args.val_images / image["file_name"]) for image in coco_val["images"]]
    for result in trained.predict(
        paths, imgsz=args.imgsz, conf=0.001, iou=0.7, max_det=100, device="cpu", verbose=False, stream=True
    ):
        image_id = by_name[Path(result.path).name]
        for (x0, y0, x1, y1), score, cls in zip(
            result.boxes.xyxy.tolist(), result.boxes.conf.tolist(), result.boxes.cls.tolist()
        ):
            detections.append(
                {
                    "image_id": image_id,
                    "category_id": category_ids[int(cls)],
                    "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                    "score": round(score, 5),
                }
            )
    (work / "predictions.json").write_text(json.dumps(detections))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(args.val_ann))
        evaluator = COCOeval(gt, gt.loadRes(detections) if detections else COCO(), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    metrics = {
        "model": args.model,
        "epochs": args.epochs,
        "batch": args.batch,
        "seed": args.seed,
        "train_s": round(train_s, 1),
        "bbox/AP": round(float(stats[0]), 4),
        "bbox/AP50": round(float(stats[1]), 4),
        "bbox/APs": round(float(stats[3]), 4),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(metrics, indent=1))
    print(json.dumps(metrics), file=sys.stderr)


if __name__ == "__main__":
    main()
