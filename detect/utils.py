"""Helpers for the command-line entry points."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from hydra.errors import InstantiationException
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from detect.models.backbones._weights import WeightsUnavailableError

__all__ = ["run_cli"]

log = logging.getLogger(__name__)

# Errors a user causes with a path, a name or a value: shown as one line, not a traceback.
_USER_ERRORS = (OSError, ValueError, MissingMandatoryValue, WeightsUnavailableError)


def _root_cause(error: BaseException) -> BaseException:
    while isinstance(error, InstantiationException) and error.__cause__ is not None:
        error = error.__cause__
    return error


def run_cli(function: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Call ``function(cfg)``; report a user error in one line and exit 1 (``DETECT_DEBUG=1`` re-raises)."""
    try:
        return function(cfg)
    except (InstantiationException, *_USER_ERRORS) as error:
        if os.environ.get("DETECT_DEBUG"):
            raise
        cause = _root_cause(error)
        if not isinstance(cause, _USER_ERRORS):
            raise
        message = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        print(f"error: {message}  (set DETECT_DEBUG=1 for the traceback)", file=sys.stderr)
        log.debug("full error", exc_info=error)
        raise SystemExit(1) from None
