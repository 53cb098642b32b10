"""The Ray Tune function trainable: a thin shell around the torch-only training core (`trainables.run.fit`).

It decodes the trial's config into a TrainConfig, resumes from `ray.tune.get_checkpoint()` when Tune restarts
the trial, and reports every epoch's metrics with a checkpoint through `ray.tune.report`."""

from __future__ import annotations

import tempfile
from pathlib import Path

import ray
import torch
from ray import tune

from sweeps.space import train_config
from sweeps.spec import SweepSpec
from trainables.run import DivergenceError, Run, fit

CHECKPOINT_FILE = "checkpoint.pt"


def with_resources(spec: SweepSpec):
    """The trainable with the CPUs and GPUs each of the spec's trials reserves (a fractional GPU packs trials)."""
    return tune.with_resources(train_trial, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})


def train_trial(config: dict) -> None:
    cfg = train_config(config)
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
            fit(cfg, on_epoch=report)
            return
        with checkpoint.as_directory() as folder:
            fit(cfg, on_epoch=report, resume_from=Path(folder) / CHECKPOINT_FILE)
    except DivergenceError as e:
        # not raised: Tune would retry from the last checkpoint and diverge again. A result with `failure`
        # ends the trial; samat's searcher tells Optuna it failed and the recorder marks its run FAILED.
        # Tune insists that every result carries the objectives: a failed trial reports every metric as NaN.
        tune.report({**dict.fromkeys(cfg.metric_names, float("nan")), "failure": str(e), "node_id": node_id})
