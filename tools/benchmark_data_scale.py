"""COCO-sized data in bounded time and memory: load time and the RSS / PSS of a loader's processes.

    python tools/benchmark_data_scale.py                       # 118,287 images, 860,001 annotations
    python tools/benchmark_data_scale.py --workers 0 2 8 --batches 150 --out docs/data_scale.json

Generates (once, into --root) a COCO-train2017-sized json with polygons, crowds in RLE and 80
category ids with COCO's gaps, and image files as hard links to a few real-size JPEGs (so 118k
files cost a few MB of disk). Then, for each worker count, a fresh process builds the training
dataset (the data doctor's checks included), and a DataLoader draws --batches batches of 640 px
augmented images; the memory of the main process and of every worker is read from
/proc/<pid>/smaps_rollup. RSS counts a shared page once per process that maps it; PSS shares it
out, so the sum of PSS is what the processes really take.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# COCO's 80 category ids (1..90 with gaps).
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
TEMPLATES = [(640, 480), (480, 640), (640, 427), (500, 375), (640, 360), (427, 640), (612, 612), (640, 512)]


def generate(root: Path, num_images: int, num_annotations: int, seed: int = 0) -> Path:
    """The json and the image folder; reused when already there with the same sizes."""
    ann_file = root / "instances_train.json"
    stamp = root / "done.json"
    wanted = {"images": num_images, "annotations": num_annotations, "seed": seed}
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        return ann_file
    import cv2

    rng = np.random.default_rng(seed)
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    templates = []
    for t, (width, height) in enumerate(TEMPLATES):
        # Smooth noise with shapes: JPEGs of a photo's size and decode cost.
        canvas = cv2.resize(
            rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8), (width, height)
        )
        for _ in range(12):
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            color = tuple(int(c) for c in rng.integers(0, 255, 3))
            cv2.circle(canvas, (x, y), int(rng.integers(10, 120)), color, -1)
        path = images_dir / f"template_{t}.jpg"
        cv2.imwrite(str(path), canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
        templates.append(path)
    images, annotations = [], []
    per_image = rng.multinomial(num_annotations, np.full(num_images, 1 / num_images))
    template_of = rng.integers(0, len(TEMPLATES), num_images)
    ann_id = 1
    for i in range(num_images):
        image_id = 1 + i * 3  # ids with gaps, as real sets have
        width, height = TEMPLATES[template_of[i]]
        name = f"{image_id:012d}.jpg"
        link = images_dir / name
        if not link.exists():
            os.link(templates[template_of[i]], link)
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        for _ in range(per_image[i]):
            w = float(rng.uniform(4, width / 2))
            h = float(rng.uniform(4, height / 2))
            x = float(rng.uniform(0, width - w))
            y = float(rng.uniform(0, height - h))
            crowd = rng.random() < 0.01
            if crowd:
                start, run = int(rng.integers(0, height * width // 2)), int(w * h) // 2
                counts = [start, run, height * width - start - run]
                segmentation: list | dict = {"counts": counts, "size": [height, width]}
            else:
                points = int(rng.integers(8, 25))
                angles = np.sort(rng.uniform(0, 2 * np.pi, points))
                xs = x + w / 2 + np.cos(angles) * w / 2
                ys = y + h / 2 + np.sin(angles) * h / 2
                segmentation = [np.round(np.stack([xs, ys], 1).reshape(-1), 2).tolist()]
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": int(rng.choice(COCO_IDS)),
                    "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                    "area": round(w * h * 0.7, 2),
                    "iscrowd": int(crowd),
                    "segmentation": segmentation,
                }
            )
            ann_id += 1
    categories = [{"id": c, "name": f"class{c}", "supercategory": "thing"} for c in COCO_IDS]
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    stamp.write_text(json.dumps(wanted))
    return ann_file


def _memory(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":")
        values[key] = int(value.split()[0]) * 1024
    return values


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


class AnnotationEpoch:
    """What a training epoch does to the annotation index, without decoding images: each image's
    boxes and labels looked up once, in the workers (150 image batches touch ~1% of a COCO-sized set)."""

    def __init__(self, dataset) -> None:  # noqa: ANN001  (any version's CocoDetection)
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> int:
        if hasattr(self.dataset, "index"):
            return len(self.dataset.annotations(i)[0])
        return len(self.dataset.annotations(self.dataset.image_ids[i])[0])  # versions keyed by image id


def _sample(peak: dict[str, float], prefix: str = "") -> dict[str, float]:
    pids = [os.getpid(), *_children(os.getpid())]
    sample = [_memory(pid) for pid in pids]
    now = {
        "rss_total_gb": sum(m["Rss"] for m in sample) / 2**30,
        "pss_total_gb": sum(m["Pss"] for m in sample) / 2**30,
        "rss_main_gb": sample[0]["Rss"] / 2**30,
        "rss_worker_max_gb": max((m["Rss"] for m in sample[1:]), default=0) / 2**30,
        "private_worker_max_gb": max((m["Private_Clean"] + m["Private_Dirty"] for m in sample[1:]), default=0)
        / 2**30,
        "processes": len(pids),
    }
    return {**peak, **{prefix + k: max(v, peak.get(prefix + k, 0)) for k, v in now.items()}}


def measure(ann_file: Path, images: Path, workers: int, batches: int, image_size: int, cache: str) -> dict:
    """In this (fresh) process: build the dataset, draw batches, read the memory of all processes."""
    import torch
    from torch.utils.data import DataLoader

    from detect.data.coco import CocoDetection
    from detect.data.collate import collate
    from detect.data.transforms import AugmentConfig, build_transforms

    torch.set_num_threads(1)
    started = time.perf_counter()
    dataset = CocoDetection(
        ann_file,
        images,
        build_transforms(image_size, AugmentConfig()),
        image_size,
        cache_images="auto" if cache == "auto" else False,
        hflip=0.5,
    )
    load_s = time.perf_counter() - started
    after_load = _memory(os.getpid())
    loader = DataLoader(dataset, batch_size=8, shuffle=True, num_workers=workers, collate_fn=collate)
    peak: dict[str, float] = {}
    started = time.perf_counter()
    seen = 0
    for step, batch in enumerate(loader, 1):
        seen += 0 if batch is None else len(batch)
        if step % 10 == 0 or step == batches:
            peak = _sample(peak)
        if step == batches:
            break
    images_per_s = seen / (time.perf_counter() - started)
    del loader
    epoch = DataLoader(AnnotationEpoch(dataset), batch_size=512, num_workers=workers)
    boxes = 0
    for step, counts in enumerate(epoch, 1):
        boxes += int(counts.sum())
        if step % 20 == 0 or step == len(epoch):
            peak = _sample(peak, "epoch_")
    index = getattr(dataset, "index", None)  # older versions held pycocotools' COCO only
    annotations = int(index.ann_start[-1]) if index is not None else len(dataset.coco.anns)
    return {
        "workers": workers,
        "images": len(dataset),
        "annotations": annotations,
        "cached_images": len(getattr(dataset, "_cache", {})),
        "load_s": round(load_s, 1),
        "rss_after_load_gb": round(after_load["Rss"] / 2**30, 3),
        "images_per_s": round(images_per_s, 1),
        "epoch_boxes": boxes,
        **{k: round(v, 3) if isinstance(v, float) else v for k, v in peak.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=118_287)
    parser.add_argument("--annotations", type=int, default=860_001)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2, 8])
    parser.add_argument("--batches", type=int, default=150)
    parser.add_argument("--image-size", type=int, default=640)
    parser.add_argument("--root", type=Path, default=Path("/tmp/detect-coco-scale"))
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose detect/ is measured")
    parser.add_argument(
        "--cache",
        choices=["auto", "false"],
        default="auto",
        help="false for versions without cache_images=auto",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the results here as json")
    parser.add_argument("--measure", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    ann_file = args.root / "instances_train.json"
    if args.measure is not None:
        print(
            json.dumps(
                measure(
                    ann_file, args.root / "images", args.measure, args.batches, args.image_size, args.cache
                )
            )
        )
        return
    started = time.perf_counter()
    generate(args.root, args.images, args.annotations)
    print(
        f"data: {ann_file} ({ann_file.stat().st_size / 2**20:.0f} MB, ready in {time.perf_counter() - started:.0f} s)"
    )
    results = []
    for workers in args.workers:
        command = [sys.executable, __file__, "--measure", str(workers), "--root", str(args.root)]
        command += [
            "--batches",
            str(args.batches),
            "--image-size",
            str(args.image_size),
            "--cache",
            args.cache,
        ]
        env = {**os.environ, "PYTHONPATH": str(args.code)}
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=args.code)
        if done.returncode != 0:
            print(f"workers={workers}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(result)
        print(json.dumps(result))
    if args.out is not None:
        args.out.write_text(json.dumps({"code": str(args.code), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
