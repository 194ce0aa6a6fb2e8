"""Batch-1 latency of the default model against Ultralytics YOLO, side by side in one process.

    PYTHONPATH=/tmp/ultra YOLO_OFFLINE=1 python bench/speed.py --ckpt runs/last.ckpt

Ultralytics is a measuring stick only (AGPL): it is imported here, outside the package, and only
when installed (``pip install --target /tmp/ultra --no-deps ultralytics ultralytics-thop
py-cpuinfo pandas psutil polars``). Every model is timed round by round, interleaved, so that the
machine's drift falls on all of them alike; the table reports medians and ours / YOLOv8n.
Modes: eager fp32, eager bf16 autocast, ONNX Runtime fp32 (each peer through its own exporter).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

PEERS = ("yolov8n", "yolo11n", "yolo26n")


def _peer(name: str) -> torch.nn.Module:
    from ultralytics import YOLO

    return YOLO(f"{name}.yaml").model.eval().fuse()


def _peer_onnx(name: str, size: int, folder: Path) -> str:
    from ultralytics import YOLO

    model = YOLO(f"{name}.yaml")
    # Ultralytics writes the export next to the model's name, in the working directory.
    here = os.getcwd()
    os.chdir(folder)
    try:
        return str(
            Path(folder)
            / model.export(format="onnx", imgsz=size, dynamic=False, simplify=True, verbose=False)
        )
    finally:
        os.chdir(here)


def _session(path: str, threads: int):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # ORT's worker threads otherwise spin after each run and steal the cores from the next model timed.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt", required=True, help="the default model's checkpoint")
    parser.add_argument("--sizes", type=int, nargs="*", default=[320, 640])
    parser.add_argument("--modes", nargs="*", default=["fp32", "bf16", "onnxruntime"])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("docs/speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from detect.export import export_model
    from detect.inference.runtimes import TorchRuntime

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes:
            calls: dict[tuple[str, str], object] = {}
            image_u8 = np.full((1, 3, size, size), 114, dtype=np.uint8)
            image_f = torch.full((1, 3, size, size), 114 / 255.0)
            for mode in args.modes:
                if mode in ("fp32", "bf16"):
                    ours = TorchRuntime(args.ckpt, precision=mode, image_size=size)
                    calls[("detect (ours)", mode)] = lambda ours=ours, x=image_u8: ours(x)
                    for peer in PEERS:
                        model = _peer(peer).to(memory_format=torch.channels_last)
                        autocast = (
                            torch.autocast("cpu", dtype=torch.bfloat16)
                            if mode == "bf16"
                            else contextlib.nullcontext()
                        )

                        def run(model=model, autocast=autocast, x=image_f):  # type: ignore[no-untyped-def]
                            with torch.inference_mode(), autocast:
                                return model(x.contiguous(memory_format=torch.channels_last))

                        calls[(peer, mode)] = run
                else:
                    path = export_model(args.ckpt, "onnx", Path(folder) / f"ours{size}.onnx", image_size=size)
                    session = _session(str(path), args.threads)
                    calls[("detect (ours)", mode)] = lambda s=session, x=image_u8: s.run(None, {"images": x})
                    for peer in PEERS:
                        peer_session = _session(_peer_onnx(peer, size, Path(folder)), args.threads)
                        name = peer_session.get_inputs()[0].name
                        feed = image_f.numpy()
                        calls[(peer, mode)] = lambda s=peer_session, n=name, f=feed: s.run(None, {n: f})
            for call in calls.values():  # warm-up: oneDNN and ORT pick kernels on the first calls
                for _ in range(3):
                    call()
            times: dict[tuple[str, str], list[float]] = {key: [] for key in calls}
            for _ in range(args.rounds):
                for key, call in calls.items():
                    start = time.perf_counter()
                    call()
                    times[key].append(1000 * (time.perf_counter() - start))
            for (model, mode), values in times.items():
                rows.append(
                    {"size": size, "model": model, "mode": mode, "ms": round(statistics.median(values), 2)}
                )
                print(f"{size} {mode:12s} {model:14s} {rows[-1]['ms']:8.2f} ms", flush=True)
    by = {(r["size"], r["model"], r["mode"]): r["ms"] for r in rows}
    for row in rows:
        peer = by.get((row["size"], "yolov8n", row["mode"]))
        row["ratio_to_yolov8n"] = round(row["ms"] / peer, 3) if peer else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print("\n| size | mode | model | ms | / YOLOv8n |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['size']} | {row['mode']} | {row['model']} | {row['ms']} | {row['ratio_to_yolov8n']} |")


if __name__ == "__main__":
    main()
