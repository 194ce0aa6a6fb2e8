"""The local web app: runs, a run's curves and drawings, sweep leaderboards, "try it", two runs side by side.

Everything it serves ships with the package (templates, one stylesheet, one script): it works
offline. It only reads the run folders; charts are drawn in memory.
"""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import UploadFile

from detect.data.images import ImageFault, decode_bytes, read_image
from detect.serve.runs import Run, find_runs, find_sweeps, read_curves, resolve_inside

__all__ = ["create_web_app"]

HERE = Path(__file__).parent
MAX_UPLOAD = 20 * 2**20


def _curves_png(run: Run) -> bytes:
    from detect.tasks.charts import pyplot

    plt = pyplot()
    series = read_curves(run.path)
    panels = [
        ("loss", [k for k in series if k.startswith("train/") and "loss" in k and "epoch" not in k][:6]),
        ("validation AP", [k for k in series if k.startswith("val/")]),
        ("learning rate", [k for k in series if k.startswith("lr")][:2]),
    ]
    panels = [(title, keys) for title, keys in panels if keys]
    figure, axes = plt.subplots(
        1, max(1, len(panels)), figsize=(4.2 * max(1, len(panels)), 3.2), squeeze=False
    )
    for axis, (title, keys) in zip(axes[0], panels):
        for key in keys:
            steps, values = zip(*series[key])
            axis.plot(steps, values, label=key, marker="o" if len(steps) < 20 else None)
        axis.set_title(title)
        axis.set_xlabel("step")
        axis.legend(fontsize=7)
    if not panels:
        axes[0][0].text(0.5, 0.5, "no CSV log in this run", ha="center", va="center")
        axes[0][0].set_axis_off()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def _number(value: Any) -> str:
    """A leaderboard cell: metrics to 3 decimals, other numbers as they are, text unchanged."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return value  # ranks, job numbers
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "" if value is None else str(value)
    return f"{number:.3f}" if abs(number) < 1 else f"{number:g}"


class _Models:
    """One loaded predictor per run, loaded on first use; one prediction at a time per model."""

    def __init__(self) -> None:
        self._models: dict[Path, Any] = {}
        self._lock = threading.Lock()

    def predict(self, checkpoint: Path, image: Any) -> dict[str, Any]:
        from detect.inference import load

        with self._lock:
            if checkpoint not in self._models:
                # Every detection the model keeps: the page's slider does the thresholding.
                self._models[checkpoint] = load(checkpoint, score_thresh=0.0)
            predictor = self._models[checkpoint]
            (results,) = predictor.predict([image])
        return results.to_dict()


def create_web_app(roots: list[str | Path]) -> FastAPI:
    """The app over the run folders under ``roots`` (e.g. ``outputs/`` and ``multirun/``)."""
    roots = [Path(root) for root in roots]
    app = FastAPI(title="detect runs")
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["num"] = _number
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    models = _Models()

    def run_of(run_id: str) -> Run:
        folder = resolve_inside(roots, run_id)
        if folder is None:
            raise HTTPException(404, f"no run {run_id!r} under {', '.join(map(str, roots))}")
        for run in find_runs([roots[int(run_id.split("/")[0])]]):
            if run.path.resolve() == folder:
                run.id = run_id
                return run
        raise HTTPException(404, f"{run_id!r} is not a training run")

    def page(request: Request, name: str, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {"roots": roots, **context})

    @app.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> HTMLResponse:
        return page(request, "index.html", runs=find_runs(roots), sweeps=find_sweeps(roots))

    @app.get("/run", response_class=HTMLResponse)
    async def run_page(request: Request, id: str) -> HTMLResponse:  # noqa: A002  (the URL's name)
        run = run_of(id)
        return page(request, "run.html", run=run)

    @app.get("/compare", response_class=HTMLResponse)
    async def compare(request: Request, a: str, b: str) -> HTMLResponse:
        first, second = run_of(a), run_of(b)
        keys = [k for k in first.metrics if k.count("/") == 1 and k in second.metrics]
        return page(request, "compare.html", runs=[first, second], keys=keys)

    @app.get("/run/curves.png")
    async def curves(id: str) -> Response:  # noqa: A002
        run = run_of(id)
        png = await asyncio.get_running_loop().run_in_executor(None, _curves_png, run)
        return Response(png, media_type="image/png")

    @app.get("/file")
    async def file(id: str, name: str) -> FileResponse:  # noqa: A002
        folder = resolve_inside(roots, id)
        path = (folder / name).resolve() if folder is not None else None
        if (
            path is None
            or not path.is_file()
            or not path.is_relative_to(folder)
            or path.suffix.lower() not in (".png", ".jpg", ".jpeg")
        ):
            raise HTTPException(404, f"no image {name!r} in {id!r}")
        return FileResponse(path)

    @app.get("/sweep", response_class=HTMLResponse)
    async def sweep(request: Request, id: str) -> HTMLResponse:  # noqa: A002
        found = [s for s in find_sweeps(roots) if s.path.resolve() == resolve_inside(roots, id)]
        if not found:
            raise HTTPException(404, f"no sweep leaderboard at {id!r}")
        found[0].id = id
        return page(request, "sweep.html", sweep=found[0])

    @app.get("/try", response_class=HTMLResponse)
    async def try_page(request: Request, id: str) -> HTMLResponse:  # noqa: A002
        run = run_of(id)
        _, val_names = run.val_images()
        return page(request, "try.html", run=run, val_names=val_names)

    @app.get("/valimage")
    async def val_image(id: str, name: str) -> FileResponse:  # noqa: A002
        folder, names = run_of(id).val_images()
        if folder is None or name not in names:
            raise HTTPException(404, f"no validation image {name!r}")
        return FileResponse(folder / name)

    @app.post("/api/predict")
    async def predict(request: Request, id: str = Query(...)) -> JSONResponse:  # noqa: A002
        run = run_of(id)
        checkpoint = run.checkpoint()
        if checkpoint is None:
            raise HTTPException(404, f"run {id!r} has no checkpoint")
        if int(request.headers.get("content-length") or 0) > MAX_UPLOAD:
            raise HTTPException(413, f"upload over {MAX_UPLOAD // 2**20} MB")
        form = await request.form(max_files=1)
        upload, val_name = form.get("file"), form.get("val_image")
        try:
            if isinstance(upload, UploadFile):
                image = decode_bytes(await upload.read(), upload.filename or "upload", 40_000_000)
            elif isinstance(val_name, str):
                folder, names = run.val_images()
                if folder is None or val_name not in names:
                    raise HTTPException(404, f"no validation image {val_name!r}")
                image = read_image(folder / val_name)
            else:
                raise HTTPException(
                    400, "send a photo in the field 'file' or a validation image name in 'val_image'"
                )
        except ImageFault as fault:
            raise HTTPException(400, f"{fault.path.name}: {fault.detail}") from None
        answer = await asyncio.get_running_loop().run_in_executor(None, models.predict, checkpoint, image)
        return JSONResponse(answer)

    return app
