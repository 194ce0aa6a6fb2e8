"""Batch-1 latency of the shipped predictor with and without the input normalization folded into
the first convolution (``TorchRuntime(fold_input=...)``), interleaved in one process.

    python bench/fold_input.py --ckpt <run>/checkpoints/last.ckpt --sizes 320 640

Prints the median ms of each and their ratio per size and precision (``docs/speed.md``).
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
from speed import native_bf16, time_interleaved  # bench/speed.py, beside this script

from detect.inference.runtimes import TorchRuntime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--sizes", type=int, nargs="*", default=[320, 640])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for size in args.sizes:
        image = np.random.default_rng(0).integers(0, 256, (1, 3, size, size), dtype=np.uint8)
        for precision in ["fp32", *(["bf16"] if native_bf16() else [])]:
            calls = {
                name: TorchRuntime(args.ckpt, precision=precision, image_size=size, fold_input=fold)
                for name, fold in (("folded", True), ("normalized", False))
            }
            times = time_interleaved(
                {name: (lambda r=runtime, x=image: r(x)) for name, runtime in calls.items()}, args.rounds
            )
            median = {name: statistics.median(t) for name, t in times.items()}
            print(
                f"{size} px {precision}: folded {median['folded']:.2f} ms, normalized "
                f"{median['normalized']:.2f} ms, ratio {median['folded'] / median['normalized']:.3f}"
            )


if __name__ == "__main__":
    main()
