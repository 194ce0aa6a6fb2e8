"""A Hydra callback that ends every sweep with a comparison table of its jobs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from detect.eval.leaderboard import build_leaderboard
from detect.eval.tables import collect_sweep, format_sweep

__all__ = ["SweepTableCallback"]

log = logging.getLogger(__name__)


class SweepTableCallback(Callback):
    """After ``-m`` runs: the leaderboard (``results.md``, ``results.csv``, ``pareto.png``), and a table printed."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = collect_sweep(sweep_dir)
        if not rows:
            log.warning("no metrics.json found under %s", sweep_dir)
            return
        build_leaderboard(sweep_dir)
        print(f"\nSweep results ({sweep_dir / 'results.md'}, results.csv, pareto.png):\n{format_sweep(rows)}")
