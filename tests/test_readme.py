"""The README's Python example runs as written, on a checkpoint and photos where it expects them."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(section: str) -> list[str]:
    """The ```python blocks of the README section headed ``## {section}``."""
    text = README.read_text()
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert match, f"README has no section {section!r}"
    return re.findall(r"```python\n(.*?)```", match.group(1), flags=re.S)


def test_the_python_api_example_runs(
    make_checkpoint, tiny_shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (block,) = python_blocks("Python API")
    shutil.copy(make_checkpoint("detect"), tmp_path / "last.ckpt")
    (tmp_path / "photos").mkdir()
    for file in sorted((tiny_shapes / "images" / "val").glob("*"))[:2]:
        shutil.copy(file, tmp_path / "photos" / file.name)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    assert scope["model"].task == "detect"
    assert scope["image"].ndim == 3 and isinstance(scope["records"], list)
