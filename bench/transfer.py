"""Does pre-training pay? Classification pre-training on one shapes style, detection fine-tuning on another.

    python bench/transfer.py --backbones cspdarknet_n resnet18 vit_t \\
        --pretrain-style dense --pretrain-images 2000 --pretrain-epochs 8 \\
        --finetune-style plain --finetune-images 100 --finetune-epochs 40 --val-every 4 \\
        --out docs/transfer.json

For each backbone:
1. ``tools/train.py head=classify``: object crops of a generated set of ``--pretrain-style``;
2. ``tools/train.py`` (the detector) on ``--finetune-images`` images of ``--finetune-style``,
   validated every ``--val-every`` epochs, once with ``init_from=`` the classifier and once from
   scratch, with the same seed, steps and recipe.

Recorded per backbone (appended to ``--out`` as each finishes): the classifier's top-1, the
validation AP curve of both detectors, AP at equal steps (the last validation), and the steps each
needs to reach the from-scratch run's final AP. Runs go one after the other, nothing else running
(``../shared/BENCHMARKING.md``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    return Path(os.environ.get("DETECT_DATA_DIR", Path.home() / ".cache" / "detect"))


def run(overrides: list[str], run_dir: Path) -> float:
    """One ``tools/train.py`` run into ``run_dir``; its wall time in seconds."""
    start = time.perf_counter()
    command = [sys.executable, str(REPO / "tools" / "train.py"), *overrides, f"hydra.run.dir={run_dir}"]
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def curve(run_dir: Path, key: str = "val/bbox_AP") -> list[tuple[int, float]]:
    """``(step, value)`` of each validation in the run's CSV log."""
    points = []
    for path in sorted((run_dir / "csv").glob("version_*/metrics.csv")):
        with path.open() as file:
            for row in csv.DictReader(file):
                if row.get(key):
                    points.append((int(row["step"]), float(row[key])))
    return points


def steps_to(points: list[tuple[int, float]], target: float) -> int | None:
    # The CSV log keeps float32: the run's own final AP may read a hair under metrics.json's.
    return next((step for step, value in points if value >= target - 1e-6), None)


def table(records: list[dict]) -> str:
    """The transfer table of ``docs/transfer.md``, one row per recorded backbone."""

    def at(points: list, step: int) -> tuple[int, float]:
        return min(points, key=lambda point: abs(point[0] - step))

    rows = [
        "| backbone | pre-training: top-1, wall | AP at half the steps (scratch / pre-trained) "
        "| AP at the end | AP50 at the end | steps to scratch's final AP | fine-tune wall (each) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        scratch, pre = r["scratch"], r["pretrained"]
        steps = r["steps_to_scratch_final_AP"]
        half, before = at(scratch["curve"], scratch["curve"][-1][0] // 2)
        after = dict(pre["curve"]).get(half, float("nan"))
        rows.append(
            f"| {r['backbone']} | {r['pretrain']['top1']:.3f}, {r['pretrain']['wall_s'] / 60:.1f} min "
            f"| {before:.3f} / **{after:.3f}** (step {half}) "
            f"| {scratch['bbox/AP']:.3f} / **{pre['bbox/AP']:.3f}** "
            f"| {scratch.get('bbox/AP50', float('nan')):.3f} / {pre.get('bbox/AP50', float('nan')):.3f} "
            f"| {steps['scratch']} / **{steps['pretrained']}** "
            f"| {scratch['wall_s'] / 60:.1f} / {pre['wall_s'] / 60:.1f} min |"
        )
    return "\n".join(rows)


def plot(records: list[dict], path: Path) -> None:
    """Validation AP against optimizer steps, pre-trained (solid) and from scratch (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for r, colour in zip(records, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")):
        for name, style in (("pretrained", "-"), ("scratch", "--")):
            steps, values = zip(*r[name]["curve"])
            axes.plot(steps, values, style, color=colour, label=f"{r['backbone']} {name}")
    first = records[0]
    axes.set_xlabel(
        f"optimizer steps (batch 8) on {first['finetune']['images']} {first['finetune']['style']} images"
    )
    axes.set_ylabel("validation bbox AP")
    axes.set_title(f"classification pre-training on {first['pretrain']['style']} crops, then detection")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["cspdarknet_n", "resnet18", "vit_t"])
    parser.add_argument("--pretrain-style", default="dense")
    parser.add_argument("--pretrain-images", type=int, default=2000)
    parser.add_argument("--pretrain-epochs", type=int, default=8)
    parser.add_argument("--finetune-style", default="plain")
    parser.add_argument("--finetune-images", type=int, default=100)
    parser.add_argument("--finetune-epochs", type=int, default=40)
    parser.add_argument("--val-every", type=int, default=4)
    # The table in docs/transfer.md was measured at 0.002 after 300 warm-up steps, before the
    # detect head's default became 0.006 after 600; both detectors of a pair share whichever is given.
    parser.add_argument("--finetune-lr", type=float, default=0.002)
    parser.add_argument("--finetune-warmup", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    # The measured runs predate mosaics in the default recipe: 0 repeats them.
    parser.add_argument(
        "--mosaic", type=float, default=0.0, help="data.augment.mosaic of the fine-tuning runs"
    )
    parser.add_argument("--work", type=Path, default=Path("outputs/transfer"))
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "transfer.json")
    parser.add_argument(
        "--table", action="store_true", help="print the table of --out, plot its curves beside it, and stop"
    )
    args = parser.parse_args()
    if args.table:
        records = json.loads(args.out.read_text())
        print(table(records))
        plot(records, args.out.with_suffix(".png"))
        return
    work = args.work.resolve()
    records = json.loads(args.out.read_text()) if args.out.is_file() else []
    finetune_data = [
        f"data.synthetic.style={args.finetune_style}",
        f"data.synthetic.num_train={args.finetune_images}",
        # Its own folder: the set differs from the default-size one of the same style.
        f"data.root={data_dir()}/shapes-v1-{args.finetune_style}-s0-n{args.finetune_images}",
        f"trainer.max_epochs={args.finetune_epochs}",
        f"trainer.check_val_every_n_epoch={args.val_every}",
        f"seed={args.seed}",
        f"data.augment.mosaic={args.mosaic}",
        f"optim.lr={args.finetune_lr}",
        f"sched.warmup_steps={args.finetune_warmup}",
        "num_visualizations=0",
    ]
    for backbone in args.backbones:
        pre_dir = work / f"pretrain-{backbone}"
        pre_s = run(
            [
                "head=classify",
                f"backbone={backbone}",
                f"data.synthetic.style={args.pretrain_style}",
                f"data.synthetic.num_train={args.pretrain_images}",
                f"trainer.max_epochs={args.pretrain_epochs}",
                f"seed={args.seed}",
            ],
            pre_dir,
        )
        top1 = json.loads((pre_dir / "metrics.json").read_text())["cls/top1"]
        runs = {}
        for name, extra in (
            ("scratch", []),
            ("pretrained", [f"init_from={pre_dir / 'checkpoints' / 'last.ckpt'}"]),
        ):
            run_dir = work / f"finetune-{backbone}-{name}"
            wall = run([f"backbone={backbone}", *finetune_data, *extra], run_dir)
            metrics = json.loads((run_dir / "metrics.json").read_text())
            runs[name] = {
                "wall_s": round(wall, 1),
                "bbox/AP": metrics["bbox/AP"],
                "bbox/AP50": metrics["bbox/AP50"],
                "curve": curve(run_dir),
            }
        target = runs["scratch"]["bbox/AP"]
        record = {
            "backbone": backbone,
            "pretrain": {
                "style": args.pretrain_style,
                "images": args.pretrain_images,
                "epochs": args.pretrain_epochs,
                "top1": top1,
                "wall_s": round(pre_s, 1),
            },
            "finetune": {
                "style": args.finetune_style,
                "images": args.finetune_images,
                "epochs": args.finetune_epochs,
                "mosaic": args.mosaic,
                "lr": args.finetune_lr,
                "warmup_steps": args.finetune_warmup,
            },
            **runs,
            "steps_to_scratch_final_AP": {name: steps_to(r["curve"], target) for name, r in runs.items()},
            "date": time.strftime("%Y-%m-%d"),
        }
        records.append(record)
        args.out.write_text(json.dumps(records, indent=1))
        print(
            f"{backbone}: top-1 {top1:.3f}; AP scratch {runs['scratch']['bbox/AP']:.3f}, "
            f"pre-trained {runs['pretrained']['bbox/AP']:.3f}; steps to {target:.3f}: "
            f"{record['steps_to_scratch_final_AP']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
