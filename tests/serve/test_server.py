"""The prediction server over real HTTP (uvicorn on a free local port): answers, and every bad request."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

from detect.inference import load  # noqa: E402
from detect.serve import Limits, create_app  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(make_checkpoint, tiny_shapes: Path) -> Iterator[str]:  # noqa: ANN001
    predictor = load(make_checkpoint("detect"), score_thresh=0.0)
    limits = Limits(max_body_mb=1, max_pixels=2_000_000, max_batch=4)
    port = _free_port()
    config = uvicorn.Config(create_app(predictor, limits), host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert instance.started, "the server did not start"
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)


def _jpeg(shapes: Path) -> bytes:
    return sorted((shapes / "images" / "val").glob("*"))[0].read_bytes()


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_predict_health_and_model(server: str, tiny_shapes: Path) -> None:
    photo = _jpeg(tiny_shapes)
    height, width = np.asarray(Image.open(io.BytesIO(photo))).shape[:2]
    with httpx.Client(base_url=server) as client:
        assert client.get("/health").json()["status"] == "ok"
        model = client.get("/model").json()
        assert (
            model["task"] == "detect" and model["backbone"] == "cspdarknet_n" and model["image_size"] == 128
        )
        assert [c["name"] for c in model["classes"]][:2] == ["circle", "triangle"]
        answer = client.post("/predict", files={"file": ("shape.jpg", photo, "image/jpeg")})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["width"], body["height"]) == (width, height) and body["file"] == "shape.jpg"
        assert len(body["boxes"]) == len(body["scores"]) == len(body["category_names"]) > 0
        boxes = np.asarray(body["boxes"])
        assert (boxes[:, 2] >= boxes[:, 0]).all() and boxes[:, 2].max() <= width + 1e-3
        strict = client.post("/predict?score_thresh=0.9&draw=true", files={"file": ("a.jpg", photo)}).json()
        assert len(strict["scores"]) <= len(body["scores"]) and all(s >= 0.9 for s in strict["scores"])
        drawn = Image.open(io.BytesIO(base64.b64decode(strict["drawn_jpeg"])))
        assert drawn.size == (width, height)


def test_concurrent_requests_are_batched_and_all_answered(server: str, tiny_shapes: Path) -> None:
    photo = _jpeg(tiny_shapes)
    with httpx.Client(base_url=server) as client:
        alone = client.post("/predict", files={"file": ("a.jpg", photo)}).json()
        before = client.get("/health").json()
    answers: list = []

    def ask() -> None:
        with httpx.Client(base_url=server, timeout=60) as client:
            answers.append(client.post("/predict", files={"file": ("a.jpg", photo)}))

    threads = [threading.Thread(target=ask) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [200] * 12
    # Batched or alone, an image gets the same detections.
    for answer in answers:
        assert np.allclose(answer.json()["boxes"], alone["boxes"], atol=0.05)
    with httpx.Client(base_url=server) as client:
        after = client.get("/health").json()
    assert after["images"] - before["images"] == 12 and after["batches"] - before["batches"] < 12


BAD_REQUESTS = [
    # name, how to send it, status, message part
    ("no file", {"data": {"other": "x"}, "files": {"x": ("x.txt", b"hi")}}, 400, "no file"),
    ("not an image", {"files": {"file": ("notes.txt", b"just some text")}}, 400, "not an image"),
    ("empty file", {"files": {"file": ("empty.jpg", b"")}}, 400, "empty file"),
    (
        "wrong content type",
        {"content": b'{"file": 1}', "headers": {"content-type": "application/json"}},
        415,
        "multipart/form-data",
    ),
    ("no body", {}, 415, "content type none"),
    (
        "bad threshold",
        {"params": {"score_thresh": "2"}, "files": {"file": ("a.png", "PNG")}},
        422,
        "score_thresh",
    ),
]


@pytest.mark.parametrize(
    "name,request_kwargs,status,message", BAD_REQUESTS, ids=[case[0] for case in BAD_REQUESTS]
)
def test_bad_requests_get_4xx_with_a_message(
    server: str, name: str, request_kwargs: dict, status: int, message: str
) -> None:
    with httpx.Client(base_url=server) as client:
        answer = client.post("/predict", **request_kwargs)
        assert answer.status_code == status, answer.text
        assert message in answer.json()["detail"]
        assert client.get("/health").status_code == 200


def test_truncated_huge_and_oversized_uploads(server: str, tiny_shapes: Path) -> None:
    photo = _jpeg(tiny_shapes)
    with httpx.Client(base_url=server) as client:
        truncated = client.post("/predict", files={"file": ("cut.jpg", photo[: len(photo) // 2])})
        assert truncated.status_code == 400 and "cannot be decoded" in truncated.json()["detail"]
        # 3000 x 3000 pixels in a few kB: refused from its header, before decoding.
        bomb = client.post("/predict", files={"file": ("bomb.png", _png(3000, 3000))})
        assert bomb.status_code == 413 and "3000x3000 pixels, over the limit" in bomb.json()["detail"]
        big = client.post("/predict", files={"file": ("big.bin", b"\0" * (2 * 2**20))})
        assert big.status_code == 413 and "over the limit of 1 MB" in big.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while it streams
            boundary = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="s.jpg"\r\n\r\n'
            yield boundary
            for _ in range(40):
                yield b"\0" * 65536
            yield b"\r\n--xyz--\r\n"

        streamed = client.post(
            "/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=xyz"}
        )
        assert streamed.status_code == 413, streamed.text
        assert client.post("/predict", files={"file": ("ok.jpg", photo)}).status_code == 200
