"""samat's Ray Tune callback that records a sweep in MLflow while it runs (layout: analysis/tracking.py).

Not Ray's MLflowLoggerCallback: that one opens a fresh run whenever a trial starts, so a resumed or retried
trial would get two. This one finds a trial's run by its Ray trial id before creating one, and re-ranks the
front as each trial finishes. Tune pickles callbacks with the experiment and restores them on resume, so it
holds only names and ids and opens its MLflow client lazily."""

from __future__ import annotations

from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS

from analysis.tracking import SweepStore
from sweeps.space import searched_params
from sweeps.spec import SweepSpec
from trainables.vocabulary import EPOCH


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
        # the node tag rides along each epoch: a retried trial may continue on another node
        self.store.log_metrics(
            run_id,
            metrics,
            step=int(result.get(EPOCH, result.get("training_iteration", 0))),
            tags={"ray_node_id": result["node_id"]} if result.get("node_id") else None,
        )

    def on_trial_complete(self, iteration, trials, trial, **info):
        failure = (trial.last_result or {}).get("failure")
        self.store.finish_trial(self.run_of(trial), "FAILED" if failure else "FINISHED", failure)
        self.store.update_front(self.sweep_name)

    def on_trial_error(self, iteration, trials, trial, **info):
        message = str(getattr(trial, "error_msg", None) or "").strip().splitlines()
        self.store.finish_trial(self.run_of(trial), "FAILED", message[-1] if message else "trial failed")
        self.store.update_front(self.sweep_name)
