"""``tools/predict.py`` on a video and on a folder of thousands of images: throughput and memory.

    python bench/predict_stream.py --model <run>/checkpoints/last.ckpt \\
        --photos ../shared/realdata/coco128/images/train2017 --images 2000 --frames 300 --out docs/predict_stream.json

Builds a video (``--frames`` frames cycled from ``--photos``, resized to 640x480, 25 fps) and a
folder of ``--images`` files (the photos copied round-robin under new names, in nested folders),
both in a temporary folder, then runs the real command line on each, sampling the resident memory
of the process every 0.2 s. Memory is constant when the end of the run holds no more than its
first quarter: the report gives the RSS at each quarter of the run and its peak.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_predict(model: str, source: Path, output: Path, extra: list[str]) -> dict:
    """Run tools/predict.py, sampling its RSS; returns wall time, samples and its printed summary."""
    command = [
        sys.executable,
        str(REPO / "tools" / "predict.py"),
        f"model={model}",
        f"source={source}",
        f"hydra.run.dir={output}",
        *extra,
    ]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    samples: list[float] = []
    while process.poll() is None:
        rss = _rss_mb(process.pid)
        if rss is not None:
            samples.append(rss)
        time.sleep(0.2)
    log = process.stdout.read() if process.stdout else ""
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"predict failed ({process.returncode}):\n{log[-2000:]}")
    return {
        "wall_s": round(seconds, 1),
        # Resident memory at a quarter, half, three quarters and the end of the run: flat when
        # nothing accumulates (the first quarter includes the imports and the model's loading).
        "rss_quartiles_mb": [
            round(samples[min(len(samples) - 1, len(samples) * q // 4)], 1) for q in (1, 2, 3, 4)
        ],
        "rss_peak_mb": round(max(samples), 1),
        "summary": [line for line in log.splitlines() if "img/s" in line or "frames" in line][-3:],
    }


def make_video(photos: list[Path], path: Path, frames: int) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (640, 480))
    images = [cv2.resize(cv2.imread(str(p)), (640, 480)) for p in photos[: min(len(photos), 50)]]
    for index in range(frames):
        writer.write(images[index % len(images)])
    writer.release()
    return path


def make_folder(photos: list[Path], root: Path, count: int) -> Path:
    for index in range(count):
        source = photos[index % len(photos)]
        target = root / f"part{index // 500}" / f"img{index:05d}{source.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="a checkpoint or an exported file")
    parser.add_argument("--photos", required=True, help="a folder of photos to build the inputs from")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("docs/predict_stream.json"))
    args = parser.parse_args()
    photos = sorted(p for p in Path(args.photos).rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not photos:
        raise SystemExit(f"no photos in {args.photos}")
    report = {"model": str(args.model)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        video = make_video(photos, folder / "clip.mp4", args.frames)
        report["video"] = {"frames": args.frames, **run_predict(args.model, video, folder / "out_video", [])}
        lines = (folder / "out_video" / "videos" / "clip.jsonl").read_text().splitlines()
        report["video"]["jsonl_lines"] = len(lines)
        report["video"]["frames_per_s"] = round(args.frames / report["video"]["wall_s"], 1)
        print(json.dumps(report["video"], indent=1), flush=True)
        images = make_folder(photos, folder / "images", args.images)
        run = run_predict(args.model, images, folder / "out_images", [])
        written = json.loads((folder / "out_images" / "predictions.json").read_text())
        report["folder"] = {"images": args.images, "records": len(written), **run}
        report["folder"]["images_per_s"] = round(args.images / run["wall_s"], 1)
        print(json.dumps(report["folder"], indent=1), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
