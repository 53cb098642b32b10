"""The Ray Tune function trainable: a thin shell around the torch-only training core (`trainables.run.fit`).

It decodes the trial's config into a TrainConfig, resumes from `ray.tune.get_checkpoint()` when Tune restarts
the trial, and reports every epoch's metrics with a checkpoint through `ray.tune.report`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import ray
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from sweeps.ray_private import check_ray
from sweeps.space import train_config
from sweeps.spec import SweepSpec
from sweeps.whole_files import upload_whole, write_whole_files

CHECKPOINT_FILE = "checkpoint.pt"
STATE_SAVE_S = 1  # seconds between Tune's experiment-state saves (see configure_tune)


def with_resources(spec: SweepSpec):
    """The trainable with the CPUs and GPUs each of the spec's trials reserves (a fractional GPU packs trials)."""
    return tune.with_resources(train_trial, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})


def configure_tune() -> None:
    """Tune's settings for samat's sweeps, read from the environment when Tune starts (a restore included):
    - no automatic result loggers: `with_result_files` adds the JSON and CSV ones, not TensorBoard's
      (tensorboardX imports torch, 3.4 s of the driver's start-up on 2 cores, for files samat never reads);
    - no progress output of Tune's own (with verbose=0): samat prints its own;
    - the experiment state (trials and searcher) saved every STATE_SAVE_S seconds. A trial Tune started after the
      last save is unknown to a resumed sweep, which proposes it again from scratch: Tune's "auto" waits 10 s or
      more between saves, so a driver killed at the wrong moment threw away up to 10 s of every new trial's
      epochs. One second bounds that to what a trial trains in its first second; saves during a 1,000-trial
      sweep took 84 ms on average and 148 ms at its end (bench/scale.py);
    - its copies into a local results folder made file by file whole (sweeps.whole_files);
    - and, before Tune starts, the Ray installed checked: one samat was tested with, where that patch and the
      other private parts samat uses hold (sweeps.ray_private.check_ray, which raises RayMismatch)."""
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(STATE_SAVE_S))
    write_whole_files()
    check_ray(upload_whole)


def with_result_files(callbacks: list) -> list:
    """The sweep's callbacks and Tune's result files: each trial's result.json and progress.csv."""
    return [*callbacks, JsonLoggerCallback(), CSVLoggerCallback()]


def train_trial(config: dict) -> None:
    # the training core is imported here, in the trial's process: the driver imports this module only to name the
    # function, and would pay torch's import (3 s of 2 cores) for nothing
    import torch  # noqa: PLC0415

    from trainables.run import DivergenceError, Run, fit  # noqa: PLC0415

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
