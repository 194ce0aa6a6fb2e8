"""``tools/check_data.py``: read a dataset's json and every image, and report each fault found."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from detect.data.doctor import KINDS, DataError, FaultLog, check_coco, read_coco_json
from detect.data.images import ImageFault, decode_image
from detect.tasks.charts import pyplot, save_figure

__all__ = ["SplitReport", "check_data", "check_split"]

log = logging.getLogger(__name__)


@dataclass
class SplitReport:
    """What one split (a json and its image folder) holds, and its faults."""

    split: str
    ann_file: str
    image_dir: str
    faults: FaultLog
    images: int = 0
    images_usable: int = 0
    annotations: int = 0
    annotations_usable: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)
    box_sides: list[float] = field(default_factory=list)
    box_aspects: list[float] = field(default_factory=list)
    fatal: str | None = None

    @property
    def status(self) -> str:
        if self.fatal or self.faults.kinds("fatal"):
            return "fatal"
        if self.faults.has_errors:
            return "errors"
        return "warnings" if self.faults.kinds("mend", "note") else "clean"

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "ann_file": self.ann_file,
            "image_dir": self.image_dir,
            "status": self.status,
            "fatal": self.fatal,
            "images": self.images,
            "images_usable": self.images_usable,
            "annotations": self.annotations,
            "annotations_usable": self.annotations_usable,
            "objects_per_class": self.class_counts,
            "faults": self.faults.to_dict(),
        }


def check_split(
    split: str, ann_file: str | Path, image_dir: str | Path, progress: bool = True
) -> SplitReport:
    """Check one json and decode every image it lists (the whole file, not only the header)."""
    faults = FaultLog(str(ann_file))
    report = SplitReport(split, str(ann_file), str(image_dir), faults)
    try:
        content = read_coco_json(ann_file)
        report.images = len(content.get("images") or []) if isinstance(content.get("images"), list) else 0
        raw = content.get("annotations")
        report.annotations = len(raw) if isinstance(raw, list) else 0
        clean, _ = check_coco(content, str(ann_file), faults)
    except (DataError, FileNotFoundError) as error:
        report.fatal = str(error)
        return report
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        report.fatal = f"image folder not found: {image_dir}"
        return report
    usable: set[int] = set()
    for info in tqdm(clean["images"], desc=f"{split}: decoding images", unit="img", disable=not progress):
        try:
            image, mended = decode_image(image_dir / info["file_name"])
        except ImageFault as fault:
            faults.add(fault.kind, info["id"], f"{info['file_name']}: {fault.detail}")
            continue
        for kind, detail in mended:
            faults.add(kind, info["id"], f"{info['file_name']}: {detail}")
        height, width = image.shape[:2]
        if "width" in info and (info["width"], info["height"]) != (width, height):
            faults.add(
                "image_size_mismatch",
                info["id"],
                f"{info['file_name']}: json {info['width']}x{info['height']}, file {width}x{height}",
            )
        usable.add(info["id"])
    report.images_usable = len(usable)
    if not usable:
        faults.add("no_images_left", "-", "no image could be decoded")
    names = {category["id"]: str(category["name"]) for category in clean["categories"]}
    counts: Counter[str] = Counter({name: 0 for name in names.values()})
    for ann in clean["annotations"]:
        if ann["image_id"] not in usable:
            continue
        report.annotations_usable += 1
        counts[names[ann["category_id"]]] += 1
        width, height = ann["bbox"][2], ann["bbox"][3]
        report.box_sides.append(math.sqrt(width * height))
        report.box_aspects.append(width / height)
    report.class_counts = dict(counts)
    return report


def _plots(reports: list[SplitReport], output_dir: Path) -> list[Path]:
    plt = pyplot()
    if plt is None:
        return []
    written = []
    figure, axis = plt.subplots(figsize=(8, 0.35 * max(len(r.class_counts) for r in reports) + 2))
    height = 0.8 / len(reports)
    for offset, report in enumerate(reports):
        names = list(report.class_counts)
        positions = np.arange(len(names)) + offset * height
        axis.barh(positions, [report.class_counts[n] for n in names], height=height, label=report.split)
        axis.set_yticks(np.arange(len(names)) + 0.4 - height / 2, names)
    axis.set_xlabel("objects")
    axis.set_title("objects per class")
    axis.legend()
    written.append(save_figure(figure, output_dir / "objects_per_class.png", dpi=100))
    figure, (sides, aspects) = plt.subplots(1, 2, figsize=(12, 4.5))
    for report in reports:
        if report.box_sides:
            sides.hist(report.box_sides, bins=40, alpha=0.6, label=report.split)
            aspects.hist(np.log2(report.box_aspects), bins=40, alpha=0.6, label=report.split)
    sides.set_xlabel("box size, sqrt(width x height) in pixels")
    sides.axvline(32, color="gray", linestyle="--")
    sides.axvline(96, color="gray", linestyle="--")
    sides.set_title("box sizes (COCO small < 32 < medium < 96 < large)")
    aspects.set_xlabel("log2(width / height)")
    aspects.set_title("box aspect ratios")
    for axis in (sides, aspects):
        axis.set_ylabel("boxes")
        axis.legend()
    written.append(save_figure(figure, output_dir / "box_sizes.png", dpi=100))
    return written


def _markdown(reports: list[SplitReport], plots: list[Path], first: int) -> str:
    lines = ["# Data check", ""]
    for report in reports:
        lines += [
            f"## {report.split}: {report.status}",
            "",
            f"- json: `{report.ann_file}`",
            f"- images: `{report.image_dir}`",
        ]
        if report.fatal:
            lines += [f"- **stopped**: {report.fatal}", ""]
            continue
        lines += [
            f"- {report.images_usable} of {report.images} images usable, "
            f"{report.annotations_usable} of {report.annotations} annotations",
            "",
        ]
        if report.faults:
            lines += ["| fault | severity | count | what | done | first ids |", "|---|---|---|---|---|---|"]
            for kind, entry in report.faults.to_dict().items():
                ids = ", ".join(str(e["id"]) for e in entry["first"][:first])
                lines.append(
                    f"| `{kind}` | {entry['severity']} | {entry['count']} | {entry['what']} | "
                    f"{entry['action']} | {ids} |"
                )
            lines.append("")
        lines += ["| class | objects |", "|---|---|"]
        lines += [f"| {name} | {count} |" for name, count in report.class_counts.items()]
        lines.append("")
    lines += [f"![{plot.stem}]({plot.name})" for plot in plots]
    return "\n".join(lines) + "\n"


def _splits(cfg: DictConfig) -> list[tuple[str, str, str]]:
    data = cfg.data
    if "synthetic" in data and "root" in data:
        # The embedded set: generate it first, as training would.
        instantiate(data)
    splits = []
    for split in cfg.splits:
        ann = OmegaConf.select(data, f"{split}_ann", default=None, throw_on_missing=False)
        images = OmegaConf.select(data, f"{split}_images", default=None, throw_on_missing=False)
        if ann is not None or images is not None:
            if ann is None or images is None:
                raise ValueError(f"set both data.{split}_ann and data.{split}_images (or neither)")
            splits.append((split, str(ann), str(images)))
    if not splits:
        raise ValueError("nothing to check: set data.train_ann and data.train_images (and/or the val ones)")
    return splits


def check_data(cfg: DictConfig) -> int:
    """Check every split the data config names; write ``report.md``, ``report.json`` and plots.

    Returns:
        The exit status: 0 when the data is clean or has only warnings (mends and notes), 1 when
        anything would be skipped or loading would stop.
    """
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    reports = [check_split(*split, progress=cfg.get("progress", True)) for split in _splits(cfg)]
    first = int(cfg.get("first", 5))
    for report in reports:
        print(f"\n{report.split}: {report.ann_file} — {report.status}")
        if report.fatal:
            print(f"  stopped: {report.fatal}")
            continue
        print(
            f"  {report.images_usable}/{report.images} images usable, "
            f"{report.annotations_usable}/{report.annotations} annotations"
        )
        for kind in report.faults.to_dict():
            print(f"  [{KINDS[kind].severity}] {report.faults.describe(kind, first)}")
    plots = (
        _plots([r for r in reports if not r.fatal], output_dir) if any(not r.fatal for r in reports) else []
    )
    (output_dir / "report.md").write_text(_markdown(reports, plots, first))
    (output_dir / "report.json").write_text(json.dumps([r.to_dict() for r in reports], indent=2))
    failed = any(report.status in ("fatal", "errors") for report in reports)
    print(f"\nreport: {output_dir / 'report.md'}\n{'errors found' if failed else 'no errors'}")
    return 1 if failed else 0
