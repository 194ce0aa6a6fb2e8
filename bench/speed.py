"""Batch-1 latency of the default model against Ultralytics YOLO, side by side in one process.

    pip install --target /tmp/ultra --no-deps ultralytics ultralytics-thop py-cpuinfo pandas psutil polars
    PYTHONPATH=/tmp/ultra YOLO_OFFLINE=1 python bench/speed.py --ckpt <run>/checkpoints/last.ckpt \\
        --photos ../shared/realdata/coco128/images/val2017 --out docs/speed.json

Ultralytics is a measuring stick only (AGPL): it is imported here, outside the package, and only
when installed. For each size and mode, our model and the peers (YOLOv8n, YOLO11n, YOLO26n) are
timed round by round, interleaved, so that the machine's drift falls on all of them alike; the
table reports medians (with p25..p75) and ours / YOLOv8n.

Modes:
- ``fp32``: eager PyTorch. Ours through ``TorchRuntime`` (what ``detect.load("last.ckpt")`` runs:
  BatchNorm folded, channels-last, oneDNN fused conv + activation, uint8 in, decode included);
  peers fused (``YOLO(...).model.fuse()``), channels-last (their fastest layout here), decode included;
  and YOLOv8n in NCHW as Ultralytics' predictor runs it (``yolov8n-nchw``, not the reference).
- ``bf16``: the same under bf16 autocast; run only where the CPU has native bf16 (AVX512-BF16 /
  AMX; elsewhere it is emulated and says nothing), unless ``--modes`` names it.
- ``onnxruntime``: ours exported by ``tools/export.py``; each peer through Ultralytics' own ONNX
  export; fp32, ONNX Runtime's CPU provider, spinning off so no session's idle threads take the
  cores from the next model timed.
- ``int8``: ours quantized (``int8=true``, calibrated on ``--calib`` images) against our own fp32
  file (``ours-fp32``) and the same peers' fp32 ONNX files (no INT8 export of theirs is timed).

``--photos``: also the whole predict path (read, letterbox, forward, decode, NMS, drawing) in
images/s over that folder, for the checkpoint and the exported files.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

PEERS = ("yolov8n", "yolo11n", "yolo26n")
OURS = "ours"
NCHW_PEER = "yolov8n-nchw"
OURS_FP32 = "ours-fp32"


def _peer(name: str) -> torch.nn.Module:
    from ultralytics import YOLO

    return YOLO(f"{name}.yaml").model.eval().fuse().to(memory_format=torch.channels_last)


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
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (oneDNN's test: AVX512-BF16 / AMX / AVX-NE-CONVERT)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _calls(mode: str, size: int, args: argparse.Namespace, folder: Path) -> dict[str, Callable[[], object]]:
    """What to time in ``mode``: one zero-argument call per model."""
    from detect.export import export_model
    from detect.inference.runtimes import TorchRuntime

    image_u8 = np.full((1, 3, size, size), 114, dtype=np.uint8)
    image_f = torch.full((1, 3, size, size), 114 / 255.0)
    calls: dict[str, Callable[[], object]] = {}
    if mode in ("fp32", "bf16"):
        ours = TorchRuntime(args.ckpt, precision=mode, image_size=size)
        calls[OURS] = lambda: ours(image_u8)
        for peer in PEERS:
            model = _peer(peer)
            autocast = (
                torch.autocast("cpu", dtype=torch.bfloat16) if mode == "bf16" else contextlib.nullcontext()
            )

            def run(model=model, autocast=autocast):  # type: ignore[no-untyped-def]
                with torch.inference_mode(), autocast:
                    return model(image_f.contiguous(memory_format=torch.channels_last))

            calls[peer] = run
        # As Ultralytics' own predictor runs it (NCHW): what a YOLOv8n user ships without tuning.
        nchw = _peer("yolov8n").to(memory_format=torch.contiguous_format)

        def run_nchw(autocast=autocast):  # type: ignore[no-untyped-def]
            with torch.inference_mode(), autocast:
                return nchw(image_f)

        calls[NCHW_PEER] = run_nchw
        return calls
    path = export_model(args.ckpt, "onnx", folder / f"ours{size}.onnx", image_size=size)
    if mode == "int8":
        from detect.tasks.export import calibration_source, export_int8

        # Our fp32 file in the same block, so that INT8 / fp32 is read side by side too.
        fp32_session = _session(str(path), args.threads)
        calls[OURS_FP32] = lambda: fp32_session.run(None, {"images": image_u8})
        path = export_int8(path, calibration_source(args.ckpt, args.calib), args.calib_count)
    session = _session(str(path), args.threads)
    calls[OURS] = lambda: session.run(None, {"images": image_u8})
    for peer in PEERS:
        peer_session = _session(_peer_onnx(peer, size, folder), args.threads)
        name = peer_session.get_inputs()[0].name
        feed = image_f.numpy()
        calls[peer] = lambda s=peer_session, n=name, f=feed: s.run(None, {n: f})
    return calls


def time_interleaved(
    calls: dict[str, Callable[[], object]], rounds: int, warmup: int = 5
) -> dict[str, list[float]]:
    """Milliseconds per call, every model once per round, in turn."""
    for call in calls.values():  # oneDNN and ORT pick and cache their kernels on the first calls
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {key: [] for key in calls}
    for _ in range(rounds):
        for key, call in calls.items():
            start = time.perf_counter()
            call()
            times[key].append(1000 * (time.perf_counter() - start))
    return times


def predict_path(args: argparse.Namespace, folder: Path) -> list[dict]:
    """Images/s of ``detect.load(model).predict`` over ``--photos`` with every result drawn."""
    import detect
    from detect.export import export_model
    from detect.tasks.export import calibration_source, export_int8

    onnx_path = export_model(args.ckpt, "onnx", folder / "predict.onnx")
    models = {"checkpoint (PyTorch fp32)": args.ckpt, "ONNX Runtime fp32": onnx_path}
    with contextlib.suppress(Exception):  # INT8 needs calibration images
        models["ONNX Runtime INT8"] = export_int8(
            onnx_path, calibration_source(args.ckpt, args.calib), args.calib_count
        )
    files = sorted(p for p in Path(args.photos).rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    rows = []
    for name, path in models.items():
        model = detect.load(path)
        model.predict(files[:3])  # warm-up
        start = time.perf_counter()
        count = 0
        for result in model.stream(files):
            result.plot()
            count += 1
        seconds = time.perf_counter() - start
        rows.append(
            {
                "model": name,
                "images": count,
                "seconds": round(seconds, 2),
                "img_per_s": round(count / seconds, 1),
            }
        )
        print(
            f"predict path, {name}: {count} images in {seconds:.1f} s, {count / seconds:.1f} img/s",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt", required=True, help="the default model's checkpoint")
    parser.add_argument("--sizes", type=int, nargs="*", default=[320, 640])
    parser.add_argument(
        "--modes", nargs="*", default=None, help="fp32 bf16 onnxruntime int8 (default: all that apply)"
    )
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--calib", default=None, help="INT8 calibration images (default: the checkpoint's training images)"
    )
    parser.add_argument("--calib-count", type=int, default=64)
    parser.add_argument("--photos", default=None, help="a folder of photos for the whole predict path")
    parser.add_argument("--out", type=Path, default=Path("docs/speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["DETECT_THREADS"] = str(args.threads)
    modes = args.modes or ["fp32", *(["bf16"] if native_bf16() else []), "onnxruntime", "int8"]
    print(
        f"{cpu_name()}, {args.threads} threads, native bf16: {native_bf16()}, torch {torch.__version__}",
        flush=True,
    )

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for size in args.sizes:
            for mode in modes:
                times = time_interleaved(_calls(mode, size, args, folder), args.rounds)
                peer_ms = statistics.median(times["yolov8n"])
                for model, values in times.items():
                    quartiles = statistics.quantiles(values, n=4)
                    ms = statistics.median(values)
                    rows.append(
                        {
                            "size": size,
                            "mode": mode,
                            "model": model,
                            "ms": round(ms, 2),
                            "p25": round(quartiles[0], 2),
                            "p75": round(quartiles[2], 2),
                            "ratio_to_yolov8n": round(ms / peer_ms, 3),
                        }
                    )
                    print(f"{size} {mode:12s} {model:12s} {ms:8.2f} ms  x{ms / peer_ms:.3f}", flush=True)
        predict_rows = predict_path(args, folder) if args.photos else []
    result = {
        "cpu": cpu_name(),
        "threads": args.threads,
        "native_bf16": native_bf16(),
        "torch": torch.__version__,
        "onnxruntime": __import__("onnxruntime").__version__,
        "rounds": args.rounds,
        "latency": rows,
        "predict_path": predict_rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(
        "\n| size | mode | ours | YOLOv8n | YOLO11n | YOLO26n | ours / YOLOv8n |\n|---|---|---|---|---|---|---|"
    )
    by = {(r["size"], r["mode"], r["model"]): r for r in rows}
    for size in args.sizes:
        for mode in modes:
            cells = [by[(size, mode, m)]["ms"] for m in (OURS, *PEERS)]
            ratio = by[(size, mode, OURS)]["ratio_to_yolov8n"]
            print(f"| {size} | {mode} | " + " | ".join(f"{c:.1f}" for c in cells) + f" | {ratio:.2f} |")


if __name__ == "__main__":
    main()
