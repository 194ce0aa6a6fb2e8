"""The prediction server: FastAPI on uvicorn, one model behind a batching queue.

    POST /predict   multipart form, field ``file``: the detections as JSON (``?draw=true`` adds the
                    drawn image as base64 JPEG, ``?score_thresh=`` overrides the threshold)
    GET  /health    liveness and what has been served
    GET  /model     classes, image size, backbone / neck / head, runtime

Every bad request is a 4xx with a one-line ``detail``; nothing a client sends stops the server.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from detect.data.images import ImageFault, decode_bytes
from detect.inference import Predictor
from detect.serve.batcher import Batcher, Busy

__all__ = ["Limits", "create_app"]


@dataclass(frozen=True)
class Limits:
    """What one request may bring.

    Args:
        max_body_mb: request body size (the upload and its multipart framing).
        max_pixels: decoded image size, checked on the header before decoding (decompression bombs).
        max_batch, max_wait_ms, max_queue: see :class:`~detect.serve.batcher.Batcher`.
    """

    max_body_mb: float = 20.0
    max_pixels: int = 40_000_000
    max_batch: int = 8
    max_wait_ms: float = 5.0
    max_queue: int = 64


class _TooLarge(Exception):
    pass


class _BodyLimit:
    """413 for bodies over the limit: at once from Content-Length, else while the body streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _refuse(send, self.max_bytes)
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise _TooLarge
            return message

        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracked_send)
        except _TooLarge:
            if not started:
                await _refuse(send, self.max_bytes)


async def _refuse(send: Send, max_bytes: int) -> None:
    body = JSONResponse(
        {"detail": f"request body over the limit of {max_bytes / 2**20:g} MB"}, status_code=413
    ).body
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _model_info(predictor: Predictor) -> dict[str, Any]:
    info = predictor.info
    return {
        "task": info.task,
        "file": predictor.runtime.path.name,
        "runtime": predictor.runtime.name,
        "image_size": predictor.image_size,
        "score_thresh": predictor.score_thresh,
        "classes": [{"id": i, "name": n} for i, n in zip(predictor.categories.ids, predictor.names)],
        **{name: value for name, value in info.components.items()},
    }


def create_app(predictor: Predictor, limits: Limits | None = None) -> ASGIApp:
    """The ASGI application serving ``predictor`` (run it with uvicorn: ``tools/serve.py``)."""
    limits = limits or Limits()
    batcher = Batcher(predictor, limits.max_batch, limits.max_wait_ms, limits.max_queue)
    started = time.time()

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # noqa: ANN202  (FastAPI's lifespan protocol)
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="detect", lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return _error(422, f"{where}: {first.get('msg', 'invalid value')}")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "uptime_s": round(time.time() - started, 1),
            "images": batcher.images,
            "batches": batcher.batches,
        }

    @app.get("/model")
    async def model() -> dict[str, Any]:
        return _model_info(predictor)

    @app.post("/predict", response_model=None)
    async def predict(
        request: Request,
        score_thresh: float | None = Query(None, ge=0.0, le=1.0),
        draw: bool = False,
    ) -> JSONResponse | dict[str, Any]:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            return _error(
                415,
                f"content type {content_type.split(';')[0] or 'none'}: send the image as "
                "multipart/form-data in the field 'file'",
            )
        try:
            form = await request.form(max_files=1, max_fields=4)
        except _TooLarge:  # a chunked body that grew past the limit while streaming in
            return _error(413, f"request body over the limit of {limits.max_body_mb:g} MB")
        except Exception as error:  # malformed multipart: python-multipart's own errors
            return _error(400, f"malformed multipart body ({str(error).strip() or type(error).__name__})")
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            return _error(400, "no file: send the image in the multipart field 'file'")
        data = await upload.read()
        name = upload.filename or "upload"
        loop = asyncio.get_running_loop()
        try:
            image = await loop.run_in_executor(None, decode_bytes, data, name, limits.max_pixels)
        except ImageFault as fault:
            status = 413 if fault.kind == "image_too_large" else 400
            return _error(status, f"{name}: {fault.detail}")
        began = time.perf_counter()
        try:
            results = await batcher.predict(
                image, predictor.score_thresh if score_thresh is None else score_thresh
            )
        except Busy as busy:
            return _error(503, f"busy: {busy}")
        body = results.to_dict()
        body["file"] = name
        body["time_ms"] = round(1000 * (time.perf_counter() - began), 1)
        if draw:
            buffer = io.BytesIO()
            Image.fromarray(results.plot()).save(buffer, format="JPEG", quality=90)
            body["drawn_jpeg"] = base64.b64encode(buffer.getvalue()).decode()
        return body

    return _BodyLimit(app, int(limits.max_body_mb * 2**20))
