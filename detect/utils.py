"""Helpers for the command-line entry points."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from detect.models.backbones._weights import WeightsUnavailableError

__all__ = ["JobFailed", "in_multirun", "run_cli"]

log = logging.getLogger(__name__)

# Errors a user causes with a path, a name or a value: shown as one line, not a traceback.
_USER_ERRORS = (OSError, ValueError, MissingMandatoryValue, WeightsUnavailableError)


class JobFailed(RuntimeError):
    """A sweep job's error, already printed in one line: Hydra records the job as failed and a
    search (hparams_search=...) records the trial as failed and goes on."""


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra sweep (``-m``, or a search)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _record_failure(message: str) -> None:
    """``error.txt`` in the job's folder: the sweep leaderboard lists the job as failed, with why."""
    from hydra.core.hydra_config import HydraConfig

    try:
        (Path(HydraConfig.get().runtime.output_dir) / "error.txt").write_text(message + "\n")
    except OSError as error:
        log.warning("could not record the failure: %s", error)


def _root_cause(error: BaseException) -> BaseException:
    while isinstance(error, InstantiationException) and error.__cause__ is not None:
        error = error.__cause__
    return error


def run_cli(function: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Call ``function(cfg)``; report a user error in one line and exit 1 (``DETECT_DEBUG=1`` re-raises).

    In a sweep the job raises :class:`JobFailed` instead of exiting, which would end the whole sweep.
    """
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
        if in_multirun():
            _record_failure(message)
            raise JobFailed(message) from None
        raise SystemExit(1) from None
