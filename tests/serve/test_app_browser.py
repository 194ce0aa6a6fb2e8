"""The web app in a real browser: Debian's Chromium, driven by Selenium, against the app on a free port.

Screenshots of each page go to test-output/browser/ (kept by CI with the test output).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED, tiny_data

uvicorn = pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver")

SCREENSHOTS = REPO / "test-output" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="no browser: install Debian's chromium and chromium-driver (.ci/run does)",
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def runs_root(tiny_shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real two-job sweep (two runs with logs, drawings, checkpoints, and a leaderboard)."""
    root = tmp_path_factory.mktemp("runs")
    command = [
        sys.executable,
        str(REPO / "tools" / "train.py"),
        "-m",
        f"hydra.sweep.dir={root}/sweep",
        *tiny_data(tiny_shapes),
        "num_visualizations=3",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "optim.lr=0.004",
        "neck=pan,fpn",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def app_url(runs_root: Path) -> Iterator[str]:
    from detect.serve.app import create_web_app

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_web_app([runs_root]), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def _wait(condition, seconds: float = 60):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("the page did not get there in time")


def _loaded(driver, element_id: str) -> bool:  # noqa: ANN001
    return driver.execute_script(
        "const i = document.getElementById(arguments[0]); return i && i.complete && i.naturalWidth > 0;",
        element_id,
    )


def test_runs_run_leaderboard_compare_and_try_it(
    browser, app_url: str, runs_root: Path, tiny_shapes: Path
) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    before = sorted((p, p.stat().st_mtime_ns) for p in runs_root.rglob("*") if p.is_file())
    browser.get(app_url + "/")
    rows = browser.find_elements(By.CSS_SELECTOR, "#runs tr.run")
    assert (
        len(rows) == 2 and "cspdarknet_n" in rows[0].text and ("pan" in rows[0].text or "fpn" in rows[0].text)
    )
    browser.save_screenshot(str(SCREENSHOTS / "runs.png"))

    rows[0].find_element(By.CSS_SELECTOR, "a").click()
    _wait(lambda: _loaded(browser, "curves"))
    assert browser.find_elements(By.CSS_SELECTOR, "#per-class tr")[1].text.split()[0] == "circle"
    assert "bbox/AP" in browser.find_element(By.ID, "metrics").text
    assert len(browser.find_elements(By.CSS_SELECTOR, ".gallery img")) == 3
    assert "backbone:" in browser.find_element(By.ID, "config").text
    browser.save_screenshot(str(SCREENSHOTS / "run.png"))

    browser.get(app_url + "/")
    browser.find_element(By.CSS_SELECTOR, "#sweeps a").click()
    _wait(lambda: _loaded(browser, "pareto"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr")) == 2
    browser.save_screenshot(str(SCREENSHOTS / "leaderboard.png"))

    browser.get(app_url + "/")
    for box in browser.find_elements(By.CSS_SELECTOR, "input[name=pick]"):
        box.click()
    browser.find_element(By.ID, "compare-button").click()
    _wait(lambda: "/compare" in browser.current_url)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#compare th a")) == 2
    browser.save_screenshot(str(SCREENSHOTS / "compare.png"))

    browser.get(app_url + "/")
    browser.find_element(By.LINK_TEXT, "try it").click()
    photos = sorted((SHARED / "coco128" / "images" / "val2017").glob("*.jpg")) if SHARED.is_dir() else []
    photo = photos[0] if photos else sorted((tiny_shapes / "images" / "val").glob("*"))[0]
    browser.find_element(By.ID, "photo").send_keys(str(photo))
    _wait(
        lambda: browser.execute_script("return document.getElementById('canvas').dataset.drawn !== undefined")
    )
    # Lower the threshold slider to 0: every returned detection is drawn.
    browser.execute_script(
        "const s = document.getElementById('threshold'); s.value = 0; s.dispatchEvent(new Event('input'));"
    )
    drawn = int(browser.execute_script("return document.getElementById('canvas').dataset.drawn"))
    width = browser.execute_script("return document.getElementById('canvas').width")
    assert drawn > 0 and width > 0, browser.find_element(By.ID, "status").text
    assert f"{drawn} of {drawn} detections" in browser.find_element(By.ID, "status").text
    browser.save_screenshot(str(SCREENSHOTS / "prediction.png"))
    # The app only read the runs.
    assert sorted((p, p.stat().st_mtime_ns) for p in runs_root.rglob("*") if p.is_file()) == before
