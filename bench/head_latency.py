"""Batch-1 latency of several checkpoints against YOLOv8n, interleaved in one process.

    PYTHONPATH=/tmp/ultra YOLO_OFFLINE=1 python bench/head_latency.py \\
        default=<run>/checkpoints/last.ckpt cheap=<other run>/checkpoints/last.ckpt

For comparing model variants (a cheaper head, a narrower neck) before training them in full: a
2-step run of each (``tools/train.py ... trainer.max_steps=2``) gives a checkpoint whose latency is
the trained model's. Each checkpoint runs as ``bench/speed.py`` runs ours (``TorchRuntime`` in
eager fp32, its ONNX export in ONNX Runtime) and YOLOv8n as it is run there; the table gives
milliseconds and each model / YOLOv8n, median of ``--rounds`` interleaved rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import _peer, _peer_onnx, _session, time_interleaved  # noqa: E402

PEER = "yolov8n"


def _calls(mode: str, size: int, checkpoints: dict[str, str], threads: int, folder: Path) -> dict:
    from detect.export import export_model
    from detect.inference.runtimes import TorchRuntime

    image_u8 = np.full((1, 3, size, size), 114, dtype=np.uint8)
    image_f = torch.full((1, 3, size, size), 114 / 255.0)
    calls = {}
    if mode == "fp32":
        for name, path in checkpoints.items():
            runtime = TorchRuntime(path, precision="fp32", image_size=size)
            calls[name] = lambda runtime=runtime: runtime(image_u8)
        peer = _peer(PEER)

        def run_peer() -> object:
            with torch.inference_mode():
                return peer(image_f.contiguous(memory_format=torch.channels_last))

        calls[PEER] = run_peer
        return calls
    for name, path in checkpoints.items():
        session = _session(
            str(export_model(path, "onnx", folder / f"{name}{size}.onnx", image_size=size)), threads
        )
        calls[name] = lambda session=session: session.run(None, {"images": image_u8})
    session = _session(_peer_onnx(PEER, size, folder), threads)
    feed = {session.get_inputs()[0].name: image_f.numpy()}
    calls[PEER] = lambda: session.run(None, feed)
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoints", nargs="+", help="name=path of each checkpoint to time")
    parser.add_argument("--sizes", type=int, nargs="*", default=[320, 640])
    parser.add_argument(
        "--modes", nargs="*", default=["fp32", "onnxruntime"], choices=["fp32", "onnxruntime"]
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    checkpoints = dict(item.split("=", 1) for item in args.checkpoints)
    torch.set_num_threads(args.threads)
    folder = Path(tempfile.mkdtemp())
    print("| size | mode | " + " | ".join([*checkpoints, PEER]) + " |", flush=True)
    print("|---" * (len(checkpoints) + 3) + "|", flush=True)
    for size in args.sizes:
        for mode in args.modes:
            times = time_interleaved(_calls(mode, size, checkpoints, args.threads, folder), args.rounds)
            medians = {name: statistics.median(values) for name, values in times.items()}
            cells = [f"{ms:.1f} ms ({ms / medians[PEER]:.3f})" for ms in medians.values()]
            print(f"| {size} | {mode} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
