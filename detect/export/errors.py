"""The one error an export raises, with the operator and the component that could not be converted."""

from __future__ import annotations

import re

__all__ = ["ExportError", "export_error"]

# aten::foo / aten.foo.default / torchvision::roi_align as the exporters name operators.
_OPERATOR = re.compile(r"\b((?:aten|torchvision|prim|quantized)(?:::|\.)[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)?)")


class ExportError(ValueError):
    """A model that a format cannot take."""


def export_error(error: BaseException, fmt: str, components: dict[str, str]) -> ExportError:
    """One line naming the format, the backbone (and neck, head) and the operator that failed."""
    text = f"{error}\n{error.__cause__ or ''}"
    found = _OPERATOR.search(text)
    operator = found.group(1) if found else "unknown"
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
    model = ", ".join(f"{part} {name}" for part, name in components.items()) or "this model"
    return ExportError(f"cannot export {model} to {fmt}: operator {operator} failed ({first[:200]})")
