"""Batch-1 latency of the shipped predictor with and without the input normalization folded into
the first convolution (``TorchRuntime(fold_input=...)``), interleaved in one process.

    python bench/fold_input.py --ckpt <run>/checkpoints/last.ckpt --sizes 320 640

Prints the median ms of each and their ratio per size and precision (``docs/speed.md``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from detect.inference.runtimes import TorchRuntime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--sizes", type=int, nargs="*", default=[320, 640])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    native_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    precisions = ["fp32", *(["bf16"] if native_bf16 else [])]
    for size in args.sizes:
        image = np.random.default_rng(0).integers(0, 256, (1, 3, size, size), dtype=np.uint8)
        for precision in precisions:
            runs = {
                name: TorchRuntime(args.ckpt, precision=precision, image_size=size, fold_input=fold)
                for name, fold in (("folded", True), ("normalized", False))
            }
            times: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(5):
                for runtime in runs.values():
                    runtime(image)
            for _ in range(args.rounds):
                for name, runtime in runs.items():
                    start = time.perf_counter()
                    runtime(image)
                    times[name].append(time.perf_counter() - start)
            median = {name: statistics.median(t) * 1e3 for name, t in times.items()}
            print(
                f"{size} px {precision}: folded {median['folded']:.2f} ms, normalized "
                f"{median['normalized']:.2f} ms, ratio {median['folded'] / median['normalized']:.3f}"
            )


if __name__ == "__main__":
    main()
