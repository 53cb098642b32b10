"""Optuna's side of a sweep: the sampler, and the searcher Ray Tune asks for trials and tells their results.

Ray's OptunaSearch tells Optuna COMPLETE whenever a trial has a last result, even one that errored after some
epochs (with those epochs' values), and it tries to tell NaN. Optuna must hear FAIL for a trial that errored,
diverged or lacks finite objectives, so its sampler never learns from them."""

from __future__ import annotations

import math

import optuna
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from sweeps.space import SearchSpace
from sweeps.spec import Search, SweepSpec


class FailureAwareOptunaSearch(OptunaSearch):
    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        values = [(result or {}).get(m) for m in self.metric]
        usable = all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
        if trial_id in self._completed_trials or (usable and not error and not (result or {}).get("failure")):
            return super().on_trial_complete(trial_id, result, error)
        self._ot_study.tell(self._ot_trials[trial_id], state=optuna.trial.TrialState.FAIL)
        self._completed_trials.add(trial_id)


def make_sampler(search: Search) -> optuna.samplers.BaseSampler:
    if search.sampler == "nsga2":
        population = search.population_size or min(50, max(4, search.trials // 3))
        return optuna.samplers.NSGAIISampler(population_size=population, seed=search.seed)
    if search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=search.seed, multivariate=True)
    if search.sampler == "gp":
        return optuna.samplers.GPSampler(seed=search.seed)
    return optuna.samplers.RandomSampler(seed=search.seed)


def make_searcher(spec: SweepSpec, study_name: str, storage_url: str) -> ConcurrencyLimiter:
    """Optuna's multi-objective search over the spec's space, its study in an RDB (sqlite) file so that
    `optuna.load_study` and optuna-dashboard can open it while the sweep runs or after."""
    searcher = FailureAwareOptunaSearch(
        SearchSpace(spec),
        metric=list(spec.directions),
        mode=list(spec.directions.values()),
        sampler=make_sampler(spec.search),
        study_name=study_name,
        storage=optuna.storages.RDBStorage(storage_url),
    )
    return ConcurrencyLimiter(searcher, max_concurrent=spec.search.concurrency)


def fail_running_trials(storage_url: str, study_name: str) -> None:
    """Once a sweep is finished, Optuna trials still RUNNING were proposed by a driver that died before Ray
    saved them (Ray proposed them again on resume): they never finish, so they are told FAIL."""
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    for trial in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.RUNNING]):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
