"""The web app's pages and guards over HTTP, on a run folder written the way training writes one."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    from detect.serve.app import create_web_app

    root = tmp_path_factory.mktemp("outputs")
    run = root / "train" / "2026-12-05_10-00-00"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("task_name: train\ndata:\n  image_size: 320\n")
    (run / ".hydra" / "hydra.yaml").write_text(
        "hydra:\n  runtime:\n    choices:\n      backbone: resnet18\n      neck: fpn\n      head: detect\n      data: shapes\n"
    )
    (run / "metrics.json").write_text(
        json.dumps({"bbox/AP": 0.512, "bbox/AP/circle": 0.6, "bbox/AP/star": 0.4})
    )
    (run / "csv" / "version_0").mkdir(parents=True)
    (run / "csv" / "version_0" / "metrics.csv").write_text(
        "epoch,step,train/loss,val/bbox_AP\n0,9,3.5,\n0,19,2.5,\n0,19,,0.5\n"
    )
    (root / "secret.png").write_bytes(b"\x89PNG not for the app")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_web_app([root]), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", root
    server.should_exit = True
    thread.join(timeout=10)


def test_pages_read_the_run(app: tuple[str, Path]) -> None:
    url, root = app
    before = sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*"))
    with httpx.Client(base_url=url) as client:
        index = client.get("/").text
        assert "resnet18" in index and "0.512" in index and "0/train/2026-12-05_10-00-00" in index
        page = client.get("/run", params={"id": "0/train/2026-12-05_10-00-00"})
        assert page.status_code == 200 and "circle" in page.text and "0.600" in page.text
        curves = client.get("/run/curves.png", params={"id": "0/train/2026-12-05_10-00-00"})
        assert curves.status_code == 200 and curves.content[:4] == b"\x89PNG" and len(curves.content) > 10_000
    assert sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*")) == before, "the app wrote into the runs"


@pytest.mark.parametrize(
    "path,params",
    [
        ("/run", {"id": "0/../.."}),
        ("/run", {"id": "7/train"}),
        ("/run", {"id": "0/nowhere"}),
        ("/file", {"id": "0/train/2026-12-05_10-00-00", "name": "../../secret.png"}),
        ("/file", {"id": "0/train/2026-12-05_10-00-00", "name": ".hydra/config.yaml"}),
        ("/sweep", {"id": "0/train"}),
        ("/try", {"id": "0/../../etc"}),
    ],
)
def test_nothing_outside_the_runs_is_served(app: tuple[str, Path], path: str, params: dict) -> None:
    url, _ = app
    answer = httpx.get(url + path, params=params)
    assert answer.status_code == 404 and answer.json()["detail"]


def test_predict_needs_a_checkpoint_and_an_image(app: tuple[str, Path]) -> None:
    url, _ = app
    answer = httpx.post(
        url + "/api/predict", params={"id": "0/train/2026-12-05_10-00-00"}, files={"file": ("a.jpg", b"x")}
    )
    assert answer.status_code == 404 and "has no checkpoint" in answer.json()["detail"]
