"""A bounded load test of the prediction server: N clients posting photos for T seconds.

    python tools/serve.py model=last.ckpt &                 # or let this script start it:
    python tools/load_test.py --model last.ckpt --images ../shared/realdata/coco128/images \\
        --clients 8 --seconds 60 --out docs/serving_load.json

Each client sends the next photo as soon as its previous answer is in (closed loop). Reported:
requests per second, latency p50 / p90 / p99 / max, status codes, and errors (connection failures
and timeouts). With --model, the server runs in a child process on a free port and is stopped at
the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _client(
    url: str, photos: list[tuple[str, bytes]], start: int, stop_at: float, record: list
) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        i = start
        while time.monotonic() < stop_at:
            name, data = photos[i % len(photos)]
            i += 1
            began = time.perf_counter()
            try:
                answer = await client.post("/predict", files={"file": (name, data)})
                status = answer.status_code
            except httpx.HTTPError as error:
                status = type(error).__name__
            record.append((status, time.perf_counter() - began))


async def run(url: str, photos: list[tuple[str, bytes]], clients: int, seconds: float) -> dict:
    record: list = []
    began = time.monotonic()
    stop_at = began + seconds
    await asyncio.gather(*(_client(url, photos, k * 7, stop_at, record) for k in range(clients)))
    elapsed = time.monotonic() - began
    ok = sorted(latency for status, latency in record if status == 200)
    statuses: dict[str, int] = {}
    for status, _ in record:
        statuses[str(status)] = statuses.get(str(status), 0) + 1

    def pct(q: float) -> float | None:
        return round(1000 * ok[min(len(ok) - 1, int(q * len(ok)))], 1) if ok else None

    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": len(record),
        "ok": len(ok),
        "failed": len(record) - len(ok),
        "statuses": statuses,
        "requests_per_s": round(len(ok) / elapsed, 2),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": round(1000 * ok[-1], 1) if ok else None,
        "mean_ms": round(1000 * statistics.fmean(ok), 1) if ok else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=None, help="a running server; else --model starts one")
    parser.add_argument("--model", default=None, help="model file to serve for the test")
    parser.add_argument("--images", type=Path, required=True, help="folder of photos to send")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=5, help="seconds of load before measuring")
    parser.add_argument("--threads", type=int, default=None, help="the server's model threads")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    photos = [
        (p.name, p.read_bytes())
        for p in sorted(args.images.iterdir())
        if p.suffix.lower() in (".jpg", ".jpeg", ".png")
    ]
    if not photos:
        raise SystemExit(f"error: no .jpg/.png photos in {args.images}")
    server = None
    url = args.url
    if url is None:
        if args.model is None:
            raise SystemExit("error: give --url of a running server or --model to serve")
        port = _free_port()
        command = [
            sys.executable,
            str(REPO / "tools" / "serve.py"),
            f"model={args.model}",
            f"port={port}",
            "log_level=warning",
        ]
        if args.threads:
            command.append(f"threads={args.threads}")
        server = subprocess.Popen(command, cwd=REPO)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            server.kill()
            raise SystemExit("error: the server did not come up in 120 s")
    try:
        model = httpx.get(f"{url}/model", timeout=10).json()
        if args.warmup > 0:
            asyncio.run(run(url, photos, args.clients, args.warmup))
        result = asyncio.run(run(url, photos, args.clients, args.seconds))
        health = httpx.get(f"{url}/health", timeout=10).json()
        result |= {
            "photos": len(photos),
            "model": {
                k: model.get(k) for k in ("file", "runtime", "task", "backbone", "neck", "head", "image_size")
            },
            "server_images": health["images"],
            "server_batches": health["batches"],
        }
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
