"""The default recipe against the tuned YOLOv8n on shapes styles, back to back, same data, same epochs.

    python bench/heldout.py --ultra /tmp/ultra --styles noisy dense --epochs 14 --out docs/heldout.json

For each style, ``python tools/train.py data.synthetic.style=S trainer.max_epochs=E`` (which
generates the style's set on first use), then ``bench/peer_train.py`` on the same json files, one
after the other with nothing else running (``../shared/BENCHMARKING.md``). Results are appended to
``--out`` (one record per run, so an interrupted sweep keeps what it measured) and printed as a table.
A variant of our recipe, without the peer: ``python bench/heldout.py --peer '' --styles noisy dense
data.augment.mosaic=0.5`` (its runs go to their own folders, named after the overrides).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    return Path(os.environ.get("DETECT_DATA_DIR", Path.home() / ".cache" / "detect"))


def run_ours(style: str, epochs: int, seed: int, work: Path, extra: list[str]) -> dict:
    # Each set of overrides its own folder: a variant must not overwrite the default's run.
    tag = "".join(f"-{o.partition('=')[0].rsplit('.', 1)[-1]}{o.partition('=')[2]}" for o in extra)
    run_dir = work / f"ours-{style}-e{epochs}-s{seed}{tag}"
    command = [
        sys.executable,
        str(REPO / "tools" / "train.py"),
        f"data.synthetic.style={style}",
        f"trainer.max_epochs={epochs}",
        f"seed={seed}",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]
    start = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - start
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "who": "ours",
        "style": style,
        "epochs": epochs,
        "seed": seed,
        "overrides": extra,
        "wall_s": round(wall, 1),
        **{k: round(metrics[k], 4) for k in ("bbox/AP", "bbox/AP50", "bbox/APs")},
    }


def run_peer(style: str, epochs: int, seed: int, work: Path, model: str, ultra: Path) -> dict:
    root = data_dir() / f"shapes-v1-{style}-s0"
    out = work / f"peer-{style}-e{epochs}-s{seed}.json"
    command = [
        sys.executable,
        str(REPO / "bench" / "peer_train.py"),
        f"--train-ann={root}/annotations/instances_train.json",
        f"--train-images={root}/images/train",
        f"--val-ann={root}/annotations/instances_val.json",
        f"--val-images={root}/images/val",
        f"--model={model}",
        f"--epochs={epochs}",
        f"--seed={seed}",
        f"--work={work / f'peer-{style}-e{epochs}-s{seed}'}",
        f"--out={out}",
    ]
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ultra), "YOLO_OFFLINE": "1"}
    subprocess.run(command, check=True, cwd=work, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - start
    metrics = json.loads(out.read_text())
    return {
        "who": model.removesuffix(".yaml"),
        "style": style,
        "epochs": epochs,
        "seed": seed,
        "wall_s": round(wall, 1),
        **{k: metrics[k] for k in ("bbox/AP", "bbox/AP50", "bbox/APs")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles", nargs="+", default=["noisy", "small"])
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peer", default="yolov8n.yaml", help="'' to skip the peer")
    parser.add_argument(
        "--ultra", type=Path, default=Path("/tmp/ultra"), help="where Ultralytics is installed"
    )
    parser.add_argument("--work", type=Path, default=Path("outputs/heldout"))
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "heldout.json")
    parser.add_argument("overrides", nargs="*", help="extra overrides for our runs")
    args = parser.parse_args()
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    records = json.loads(args.out.read_text()) if args.out.is_file() else []
    for style in args.styles:
        runs = [partial(run_ours, style, args.epochs, args.seed, args.work, args.overrides)]
        if args.peer:
            runs.append(partial(run_peer, style, args.epochs, args.seed, args.work, args.peer, args.ultra))
        for run in runs:
            record = {**run(), "date": time.strftime("%Y-%m-%d")}
            records.append(record)
            args.out.write_text(json.dumps(records, indent=1))
            print(json.dumps(record), flush=True)
    print("| style | who | epochs | seed | wall s | AP | AP50 | APs |")
    print("|---|---|---|---|---|---|---|---|")
    for r in records:
        print(
            f"| {r['style']} | {r['who']} | {r['epochs']} | {r['seed']} | {r['wall_s']} | "
            f"{r['bbox/AP']:.3f} | {r['bbox/AP50']:.3f} | {r['bbox/APs']:.3f} |"
        )


if __name__ == "__main__":
    main()
