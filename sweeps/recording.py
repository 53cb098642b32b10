"""samat's Ray Tune callback that records a sweep in MLflow while it runs (layout: analysis/tracking.py).

Not Ray's MLflowLoggerCallback: that one opens a fresh run whenever a trial starts, so a resumed or retried
trial would get two, and a tracking server that stops answering ends the whole experiment from inside Tune's
loop. This one writes through an `Outbox` (analysis/outbox.py): a trial's run is found by its Ray trial id
before one is created, each epoch is logged once, and what the store does not take is kept on the driver's disk
while training goes on. The front is re-ranked at most every FRONT_EVERY_S seconds while trials finish (in
memory: the outbox reads the sweep once per driver), and at the end. Tune pickles callbacks with the experiment
and restores them on resume, so it holds only names, ids and paths."""

from __future__ import annotations

import time

from ray.tune import Callback

from analysis.outbox import Outbox
from analysis.tracking import RESEED_OF, ROLE
from analysis.trials import stopped_epoch
from sweeps.ray_private import TUNE_RESULT_KEYS
from sweeps.space import searched_params, train_config
from sweeps.spec import SweepSpec
from trainables.vocabulary import COLLAPSE_EPOCH, COLLAPSED, EPOCH

FAST_AT_COLLAPSE = "fast_at_collapse"  # tag on a trial run whose FastAT training collapsed (see CollapseGuard)
FRONT_EVERY_S = 5.0


class MLflowRecorder(Callback):
    def __init__(self, outbox: Outbox, spec: SweepSpec):
        self.outbox, self.spec = outbox, spec
        self._reset()

    def _reset(self) -> None:
        self.seen: set[str] = set()  # trials whose run this driver has asked for (found or created)
        self.front_due, self.front_at = False, 0.0

    def __getstate__(self):
        return {"outbox": self.outbox, "spec": self.spec}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reset()

    def open(self, trial) -> str:
        """The trial's run is asked for the first time this driver sees the trial: a resumed or retried trial
        finds the run it had."""
        if trial.trial_id not in self.seen:
            config = trial.config
            self.outbox.trial(
                trial.trial_id,
                config,
                searched_params(config, self.spec),
                {
                    "method": config.get("method"),
                    "model": config.get("model"),
                    "dataset": self.spec.dataset,
                    "sweep": self.outbox.sweep_name,
                    # a reseeded trial (samat frontier reseed) is a child run of its own role, linked to its original
                    **({ROLE: "reseed", RESEED_OF: config[RESEED_OF]} if RESEED_OF in config else {}),
                },
            )
            self.seen.add(trial.trial_id)
        return trial.trial_id

    def on_trial_start(self, iteration, trials, trial, **info):
        self.open(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        metrics = {
            k: v
            for k, v in result.items()
            if k not in TUNE_RESULT_KEYS and k != "done" and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        # the node tag rides along each epoch (a retried trial may continue on another node), and FastAT's
        # collapse guard, once it stopped training, is tagged as well as recorded as the `collapsed` metric
        tags = {"ray_node_id": result["node_id"]} if result.get("node_id") else {}
        if result.get(COLLAPSED):
            tags |= {FAST_AT_COLLAPSE: "true", "samat.collapse_epoch": result.get(COLLAPSE_EPOCH)}
        step = int(result.get(EPOCH, result.get("training_iteration", 0)))
        self.outbox.epoch(self.open(trial), metrics, step, tags)

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        failure = result.get("failure")
        stopped = stopped_epoch(result, train_config(trial.config).epochs)
        if stopped is not None:  # a scheduler ended it at a rung: KILLED with the epoch (see SweepStore.stop_trial)
            self.outbox.stop(self.open(trial), stopped, "MO-ASHA")
        else:
            self.outbox.finish(self.open(trial), "FAILED" if failure else "FINISHED", failure)
        self.front_due = True

    def on_trial_error(self, iteration, trials, trial, **info):
        message = str(getattr(trial, "error_msg", None) or "").strip().splitlines()
        self.outbox.finish(self.open(trial), "FAILED", message[-1] if message else "trial failed")
        self.front_due = True

    def on_step_end(self, iteration, trials, **info):
        if self.front_due and time.monotonic() - self.front_at >= FRONT_EVERY_S:
            self.outbox.front()
            self.front_due, self.front_at = False, time.monotonic()
        self.outbox.retry()

    def on_experiment_end(self, trials, **info):
        if self.front_due:
            self.outbox.front()
        self.outbox.retry(now=True)
