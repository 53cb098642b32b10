"""samat's Ray Tune callback that records a sweep in MLflow while it runs (layout: analysis/tracking.py).

Not Ray's MLflowLoggerCallback: that one opens a fresh run whenever a trial starts, so a resumed or retried
trial would get two. This one finds a trial's run by its Ray trial id before creating one, and re-ranks the
front as each trial finishes. Tune pickles callbacks with the experiment and restores them on resume, so it
holds only names and ids and opens its MLflow client lazily."""

from __future__ import annotations

from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS

from analysis.tracking import RESEED_OF, ROLE, SweepStore
from analysis.trials import stopped_epoch
from sweeps.space import searched_params, train_config
from sweeps.spec import SweepSpec
from trainables.vocabulary import COLLAPSE_EPOCH, COLLAPSED, EPOCH

FAST_AT_COLLAPSE = "fast_at_collapse"  # tag on a trial run whose FastAT training collapsed (see CollapseGuard)


class MLflowRecorder(Callback):
    def __init__(self, tracking_uri: str, sweep_name: str, parent_run_id: str, spec: SweepSpec):
        self.tracking_uri, self.sweep_name, self.parent_run_id, self.spec = (
            tracking_uri,
            sweep_name,
            parent_run_id,
            spec,
        )
        self.runs: dict[str, str] = {}  # Ray trial id -> MLflow run id
        self._store: SweepStore | None = None

    def __getstate__(self):
        return {**self.__dict__, "_store": None}

    @property
    def store(self) -> SweepStore:
        if self._store is None:
            self._store = SweepStore(self.tracking_uri)
        return self._store

    def run_of(self, trial) -> str:
        if trial.trial_id not in self.runs:
            config = trial.config
            self.runs[trial.trial_id] = self.store.trial_run(
                self.parent_run_id,
                trial.trial_id,
                config,
                searched_params(config, self.spec),
                {
                    "method": config.get("method"),
                    "model": config.get("model"),
                    "dataset": self.spec.dataset,
                    "sweep": self.sweep_name,
                    # a reseeded trial (samat frontier reseed) is a child run of its own role, linked to its original
                    **({ROLE: "reseed", RESEED_OF: config[RESEED_OF]} if RESEED_OF in config else {}),
                },
            )
        return self.runs[trial.trial_id]

    def on_trial_start(self, iteration, trials, trial, **info):
        self.run_of(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id = self.run_of(trial)
        metrics = {
            k: v
            for k, v in result.items()
            if k not in AUTO_RESULT_KEYS and k != "done" and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        # the node tag rides along each epoch (a retried trial may continue on another node), and FastAT's
        # collapse guard, once it stopped training, is tagged as well as recorded as the `collapsed` metric
        tags = {"ray_node_id": result["node_id"]} if result.get("node_id") else {}
        if result.get(COLLAPSED):
            tags |= {FAST_AT_COLLAPSE: "true", "samat.collapse_epoch": result.get(COLLAPSE_EPOCH)}
        self.store.log_metrics(
            run_id, metrics, step=int(result.get(EPOCH, result.get("training_iteration", 0))), tags=tags
        )

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        failure = result.get("failure")
        stopped = stopped_epoch(result, train_config(trial.config).epochs)
        if stopped is not None:  # a scheduler ended it at a rung: KILLED with the epoch (see SweepStore.stop_trial)
            self.store.stop_trial(self.run_of(trial), stopped, "MO-ASHA")
        else:
            self.store.finish_trial(self.run_of(trial), "FAILED" if failure else "FINISHED", failure)
        self.store.update_front(self.sweep_name)

    def on_trial_error(self, iteration, trials, trial, **info):
        message = str(getattr(trial, "error_msg", None) or "").strip().splitlines()
        self.store.finish_trial(self.run_of(trial), "FAILED", message[-1] if message else "trial failed")
        self.store.update_front(self.sweep_name)
