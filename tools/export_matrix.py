"""Parity matrix: every catalogue backbone x head x export format against eager, on real photos.

    python tools/export_matrix.py --realdata ../shared/realdata --out docs/export_matrix.md
    python tools/export_matrix.py --backbones cspdarknet_n resnet18 --heads detect --formats onnx

The table (pass, max error, latency per cell) goes to ``--out`` with ``.csv``/``.json`` beside it.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from detect.data.coco import CategoryMap
from detect.export.matrix import parity_matrix, write_matrix

CONF = Path(__file__).resolve().parents[1] / "conf"
# head -> (annotation json, image folder) under the realdata folder
DATA = {
    "detect": ("coco128/annotations/instances_val2017.json", "coco128/images/val2017"),
    "segment": ("coco8-seg/annotations/instances_val.json", "coco8-seg/images/val"),
    "pose": ("coco8-pose/annotations/person_keypoints_val.json", "coco8-pose/images/val"),
}


def build(backbone: str, head: str, categories: CategoryMap) -> torch.nn.Module:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"backbone={backbone}", f"head={head}"])
    return instantiate(cfg.model)(num_classes=len(categories), keypoints=categories.keypoints)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--realdata", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "realdata"
    )
    parser.add_argument(
        "--backbones", nargs="*", default=sorted(p.stem for p in (CONF / "backbone").glob("*.yaml"))
    )
    parser.add_argument("--heads", nargs="*", default=list(DATA))
    parser.add_argument("--formats", nargs="*", default=["onnx", "torchscript", "openvino"])
    parser.add_argument("--images", type=int, default=4, help="photos per head")
    parser.add_argument("--image-size", type=int, default=320)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("docs/export_matrix.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    heads = {}
    for head in args.heads:
        ann, images = (args.realdata / part for part in DATA[head])
        if not ann.is_file():
            sys.exit(f"error: {ann} not found; pass --realdata")
        coco = json.loads(ann.read_text())
        files = [images / info["file_name"] for info in coco["images"]][: args.images]
        heads[head] = (CategoryMap.from_coco(coco["categories"]), files)

    def show(cell):  # type: ignore[no-untyped-def]
        mark = "pass" if cell.passed else "FAIL"
        error = "-" if cell.max_error is None else f"{cell.max_error:.1e}"
        print(
            f"{cell.backbone:20s} {cell.head:8s} {cell.format:12s} {mark} err {error} {cell.reason}",
            flush=True,
        )

    results = parity_matrix(build, args.backbones, heads, args.formats, args.image_size, on_result=show)
    machine = (
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.threads} threads."
    )
    write_matrix(results, args.out, machine)
    print(f"{sum(r.passed for r in results)}/{len(results)} cells pass -> {args.out}")


if __name__ == "__main__":
    main()
