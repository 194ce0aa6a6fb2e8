"""Time every convolution of the shipped predictor at its own input shape: oneDNN fused against eager.

    python bench/conv_layers.py --ckpt <run>/checkpoints/last.ckpt --sizes 320 640 --precision bf16

For each size: the sum over the convolutions with the fused kernel (conv + activation in one oneDNN
primitive, as ``TorchRuntime`` runs them) and with ``F.conv2d`` then the activation, and the layers
where the fused kernel loses most. Set against the whole forward, the sum says how much of the
time the convolutions are (``docs/speed.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from detect.inference.onednn import OneDNNConv2d
from detect.inference.runtimes import TorchRuntime

ACTIVATIONS = {"swish": F.silu, "relu": F.relu, "gelu": F.gelu, "none": lambda t: t}


def _median_ms(call, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def time_layers(ckpt: str, size: int, precision: str, rounds: int) -> tuple[float, float, float, list]:
    runtime = TorchRuntime(ckpt, precision=precision, image_size=size)
    image = np.full((1, 3, size, size), 114, dtype=np.uint8)
    seen: list[tuple[OneDNNConv2d, torch.Size]] = []
    hooks = [
        module.register_forward_pre_hook(lambda module, args: seen.append((module, args[0].shape)))
        for module in runtime.model.modules()
        if isinstance(module, OneDNNConv2d)
    ]
    runtime(image)
    for hook in hooks:
        hook.remove()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    autocast = torch.autocast("cpu", dtype=dtype) if precision == "bf16" else contextlib.nullcontext()
    rows = []
    with torch.inference_mode(), autocast:
        whole = _median_ms(lambda: runtime(image), rounds)
        for module, shape in seen:
            x = torch.randn(shape).to(dtype).contiguous(memory_format=torch.channels_last)
            weight = module.weight.to(dtype).contiguous(memory_format=torch.channels_last)
            bias = None if module.bias is None else module.bias.to(dtype)
            activation = ACTIVATIONS[module.attr]

            def fused(module=module, x=x):  # type: ignore[no-untyped-def]
                return module(x)

            def eager(module=module, x=x, weight=weight, bias=bias, activation=activation):  # type: ignore[no-untyped-def]
                return activation(
                    F.conv2d(x, weight, bias, module.stride, module.padding, module.dilation, module.groups)
                )

            for _ in range(3):
                fused(), eager()
            rows.append(
                (tuple(shape), module.extra_repr(), _median_ms(fused, rounds), _median_ms(eager, rounds))
            )
    return whole, sum(r[2] for r in rows), sum(r[3] for r in rows), rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--sizes", type=int, nargs="*", default=[320, 640])
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--show", type=int, default=8, help="layers listed where fused loses most")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for size in args.sizes:
        whole, fused, eager, rows = time_layers(args.ckpt, size, args.precision, args.rounds)
        print(
            f"{size} px {args.precision}: whole forward {whole:.1f} ms; {len(rows)} convolutions "
            f"{fused:.1f} ms fused, {eager:.1f} ms conv then activation"
        )
        for shape, layer, f, e in sorted(rows, key=lambda r: r[2] - r[3], reverse=True)[: args.show]:
            print(f"  input {shape}  {layer}: fused {f:.2f} ms, eager {e:.2f} ms")


if __name__ == "__main__":
    main()
