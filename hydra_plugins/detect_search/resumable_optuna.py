"""Hydra's Optuna sweeper, made to survive a killed search and failing trials.

The stock sweeper (hydra-optuna-sweeper) runs ``n_trials`` more trials on every start, numbers its
jobs from 0 again (so a restarted search overwrites the first trials' folders) and stops the whole
search on the first trial that raises. This one keeps the study in its database as the one truth:

- ``n_trials`` is the study's total: a restarted search runs only what is missing;
- trials left RUNNING by a killed search are marked failed and their parameters queued again, so
  the interrupted work is redone first;
- job folders continue the trial numbers (trial N writes ``<sweep dir>/N``);
- a trial whose job raises, or returns no finite objective, is recorded as FAIL with the reason in
  its ``error`` user attribute, and the search goes on.

Hydra accepts sweepers only from the ``hydra_plugins`` package, hence this module's home.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import OmegaConf
from optuna.trial import TrialState

log = logging.getLogger(__name__)

_FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
_INTERRUPTED = "interrupted (search killed)"


def _sqlite_folder(storage: Any) -> Path | None:
    """The folder of a ``sqlite:///path`` storage, which SQLite will not create itself."""
    if isinstance(storage, str) and storage.startswith("sqlite:///"):
        path = storage[len("sqlite:///") :]
        if path and path != ":memory:":
            return Path(path).parent
    return None


def _objective(ret: JobReturn, n_objectives: int) -> tuple[list[float] | None, str | None]:
    """The job's objective values, or why there are none."""
    if ret.status != JobStatus.COMPLETED:
        error = ret._return_value
        return (
            None,
            f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}",
        )
    value = ret._return_value
    values = list(value) if isinstance(value, list | tuple) else [value]
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        return None, f"the job returned {value!r}, not a number (is optimized_metric set?)"
    if len(values) != n_objectives:
        return None, f"the job returned {len(values)} values for {n_objectives} objectives"
    if not all(math.isfinite(v) for v in values):
        return None, f"the job returned {values}"
    return values, None


class _ResumableImpl(OptunaSweeperImpl):
    def _recover(self, study: optuna.Study) -> int:
        """Mark the trials a killed search left running as failed, queue their parameters again,
        and return how many trials are finished (the interrupted ones are not: they run again)."""
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
            if trial.state == TrialState.WAITING:
                continue  # already queued (by an earlier recovery), asked for first
            study._storage.set_trial_user_attr(trial._trial_id, "error", _INTERRUPTED)
            study.tell(trial.number, state=TrialState.FAIL)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.enqueue_trial(trial.params)
            log.warning("trial %d was interrupted: failed, and its parameters queued again", trial.number)
        return sum(
            trial.user_attrs.get("error") != _INTERRUPTED
            for trial in study.get_trials(deepcopy=False, states=_FINISHED)
        )

    def _reseed(self, offset: int) -> None:
        """Move a seeded sampler's generator on by the trials already in the study: restarted with
        its configured seed, it would draw the first trials' parameters again."""
        seed = OmegaConf.select(self.config, "hydra.sweeper.sampler.seed")
        generator = np.random.RandomState(None if seed is None else int(seed) + offset)
        # Optuna 2.10 keeps the generators in private attributes; reseed_rng() would draw an OS seed.
        for sampler in (self.sampler, getattr(self.sampler, "_random_sampler", None)):
            if sampler is not None and hasattr(sampler, "_rng"):
                sampler._rng = generator
        if not hasattr(self.sampler, "_rng"):
            self.sampler.reseed_rng()

    def sweep(self, arguments: list[str]) -> None:
        assert self.config is not None and self.launcher is not None
        if isinstance(self.sampler, functools.partial) and self.sampler.func is optuna.samplers.GridSampler:
            # The grid sampler's search space is built by the stock loop (no resume there).
            return super().sweep(arguments)
        self._process_searchspace_config()
        distributions, fixed = create_params_from_overrides(
            [*self._parse_sweeper_params_config(), *arguments]
        )
        for name in fixed:
            distributions.pop(name, None)
        directions = self._get_directions()
        folder = _sqlite_folder(self.storage)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=self.sampler,
            directions=directions,
            load_if_exists=True,
        )
        finished = self._recover(study)
        if study.trials:
            self._reseed(len(study.trials))
        to_go = max(0, self.n_trials - finished)
        log.info(
            "study %r in %s: %d of %d trials finished, %d to run",
            study.study_name,
            self.storage or "memory",
            finished,
            self.n_trials,
            to_go,
        )
        while to_go > 0:
            batch = min(to_go, self.n_jobs)
            trials = [study.ask() for _ in range(batch)]
            overrides = self._configure_trials(trials, distributions, fixed)
            # Job folders follow the trial numbers, also after a restart.
            returns = self.launcher.launch(overrides, initial_job_idx=trials[0].number)
            for trial, ret in zip(trials, returns):
                values, error = _objective(ret, len(directions))
                if ret.hydra_cfg is not None:
                    trial.set_user_attr("folder", str(ret.hydra_cfg.hydra.runtime.output_dir))
                if error is None:
                    study.tell(trial, values)
                    log.info("trial %d: %s", trial.number, values[0] if len(values) == 1 else values)
                else:
                    trial.set_user_attr("error", error)
                    study.tell(trial, state=TrialState.FAIL)
                    log.warning("trial %d failed: %s", trial.number, error)
            to_go -= batch
        self._write_results(study, directions)

    def _write_results(self, study: optuna.Study, directions: list[str]) -> None:
        counts = {state.name: len(study.get_trials(deepcopy=False, states=(state,))) for state in _FINISHED}
        results: dict[str, Any] = {"name": "optuna", "study": study.study_name, "trials": counts}
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            log.warning("no trial of study %r completed", study.study_name)
        elif len(directions) == 1:
            results |= {
                "best_trial": study.best_trial.number,
                "best_params": study.best_trial.params,
                "best_value": study.best_trial.value,
            }
            log.info(
                "best trial %d: %s = %s",
                study.best_trial.number,
                study.best_trial.params,
                study.best_trial.value,
            )
        else:
            results["solutions"] = [
                {"trial": t.number, "params": t.params, "values": t.values} for t in study.best_trials
            ]
        OmegaConf.save(
            OmegaConf.create(results), Path(self.config.hydra.sweep.dir) / "optimization_results.yaml"
        )


class ResumableOptunaSweeper(OptunaSweeper):
    """``hydra/sweeper=optuna`` with ``_target_`` set to this class (see ``conf/hparams_search``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sweeper = _ResumableImpl(**kwargs)
