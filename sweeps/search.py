"""Optuna's side of a sweep: the sampler, and the searcher Ray Tune asks for trials and tells their results.

Ray's OptunaSearch tells Optuna COMPLETE whenever a trial has a last result, even one that errored after some
epochs (with those epochs' values), and it tries to tell NaN. Optuna must hear FAIL for a trial that errored,
diverged or lacks finite objectives, so its sampler never learns from them; and PRUNED for a trial a scheduler
stopped early (MO-ASHA), so it never takes low-fidelity values for final ones."""

from __future__ import annotations

import math

import optuna
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from analysis.trials import stopped_epoch
from sweeps.ray_private import optuna_told, tell_optuna
from sweeps.space import SearchSpace, train_config
from sweeps.spec import Search, SweepSpec


class FailureAwareOptunaSearch(OptunaSearch):
    """What Optuna hears of each trial:

    - COMPLETE with the objectives, for a trial that trained every epoch it was given;
    - FAIL, for one that errored, diverged (`failure` in its result) or lacks a finite objective;
    - PRUNED, without values, for one stopped early without failing (its last result's `epochs` is below the
      epochs its config asked for): a scheduler (MO-ASHA) ended it at a rung. Ray would tell COMPLETE with the
      rung's values, and a sampler would then weigh an accuracy after 1 of 10 epochs as the trial's final one:
      NSGA-II would rank it against fully trained trials, TPE would count it among the good or bad trials by
      that value. A stopped trial must not teach the sampler that its low-fidelity values are final. PRUNED is
      what Optuna's own pruners produce; in Optuna 5 multi-objective TPE puts PRUNED trials among the "bad"
      ones (it learns to avoid their region, which is what a stop means), and NSGA-II ignores them as it
      ignores failed trials.

    The epochs each trial was given are noted when it is proposed (the searcher's state, saved and restored
    with the experiment), since Tune hands `on_trial_complete` the last result but not the config."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.planned_epochs: dict[str, int] = {}  # Ray trial id -> the epochs its config asks for

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        if config:
            self.planned_epochs[trial_id] = train_config(config).epochs
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        result = result or {}
        values = [result.get(m) for m in self.metric]
        usable = all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
        failed = error or bool(result.get("failure")) or not usable
        if optuna_told(self, trial_id):
            return super().on_trial_complete(trial_id, result, error)  # Ray warns of the second completion
        if not failed and stopped_epoch(result, self.planned_epochs.get(trial_id)) is None:
            return super().on_trial_complete(trial_id, result, error)
        state = optuna.trial.TrialState.FAIL if failed else optuna.trial.TrialState.PRUNED
        tell_optuna(self, trial_id, state)


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
