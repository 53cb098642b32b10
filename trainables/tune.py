"""The Ray Tune function trainable: a thin shell around `trainables.run.fit`.

It turns the trial's config into a TrainConfig, resumes from `ray.tune.get_checkpoint()` when Tune restarts
the trial, and reports every epoch's metrics with a checkpoint through `ray.tune.report`."""

from __future__ import annotations

import tempfile
from pathlib import Path

import ray
import torch
from ray import tune

from trainables.config import TrainConfig
from trainables.run import DivergenceError, Run, fit

CHECKPOINT_FILE = "checkpoint.pt"


def trial_config(config: dict) -> TrainConfig:
    """Trial config -> TrainConfig. Method parameters arrive namespaced (`sam.rho`, `at.eps`) so that Optuna's
    conditional spaces never share a name; only the chosen method's are kept."""
    fields = {}
    for key, value in config.items():
        owner, _, field = key.rpartition(".")
        if owner == config["method"]:
            fields[field] = value
        elif not owner and key in TrainConfig.model_fields:
            fields[key] = value
    return TrainConfig(**fields)


def train_trial(config: dict) -> None:
    train_config = trial_config(config)
    cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))  # as many threads as CPUs reserved: packed trials do not fight
    node_id = ray.get_runtime_context().get_node_id()

    def report(metrics: dict, run: Run) -> None:
        with tempfile.TemporaryDirectory() as folder:
            run.save(Path(folder) / CHECKPOINT_FILE)
            tune.report({**metrics, "node_id": node_id}, checkpoint=tune.Checkpoint.from_directory(folder))

    checkpoint = tune.get_checkpoint()
    try:
        if checkpoint is None:
            fit(train_config, on_epoch=report)
            return
        with checkpoint.as_directory() as folder:
            fit(train_config, on_epoch=report, resume_from=Path(folder) / CHECKPOINT_FILE)
    except DivergenceError as e:
        # not raised: Tune would retry from the last checkpoint and diverge again. A result with `failure`
        # ends the trial; samat's searcher tells Optuna it failed and the recorder marks its run FAILED.
        # Tune insists that every result carries the objectives: a failed trial reports them as NaN.
        metrics = ["clean_acc", "test_loss", "train_loss", "train_acc",
                   *(a.metric for a in train_config.attack_specs + train_config.epoch_attack_specs)]
        tune.report({**dict.fromkeys(metrics, float("nan")), "failure": str(e), "node_id": node_id})
