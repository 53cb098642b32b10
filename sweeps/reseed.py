"""`samat frontier reseed`: train the front's configurations again with more seeds, so a front shows how much of
its shape is noise. The new trials run on Ray like the search's (same trainable, resources, retries and MLflow
recorder) and are recorded in the same sweep as child runs with role `reseed`, tagged with the trial they
repeat; `samat frontier show` then gives each point's mean ± std over its seeds and the points that noise
cannot separate from a neighbour."""

from __future__ import annotations

from pathlib import Path

import ray
from ray import tune
from ray.tune.search import ConcurrencyLimiter, Searcher

from analysis.outbox import Outbox, pending_path
from analysis.tracking import RESEED_OF, SweepStore
from analysis.trials import SweepRecord
from sweeps.places import next_free_name, place_sweep
from sweeps.ray_start import start_ray
from sweeps.recording import MLflowRecorder
from sweeps.results import FinishedSweep, load_finished_sweep
from sweeps.space import train_config
from sweeps.trainable import configure_tune, with_resources, with_result_files


class Proposals(Searcher):
    """Proposes the given configs, once each, in order (Tune's own generator wants them as points of a space)."""

    def __init__(self, configs: list[dict]):
        super().__init__()
        self.configs = list(configs)

    def suggest(self, trial_id: str) -> dict | str | None:
        return self.configs.pop(0) if self.configs else Searcher.FINISHED

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass


def reseed_configs(sweep: FinishedSweep, ranks: int, seeds: int) -> list[dict]:
    """Each chosen trial's exact config with `seeds` seeds it has not used yet (after earlier reseeds')."""
    configs = []
    for row in sweep.best(ranks):
        base = sweep.configs[row.trial_id]
        first = train_config(base).seed + 1 + len(sweep.record.reseeds.get(row.trial_id, []))
        configs += [{**base, "seed": first + k, RESEED_OF: row.trial_id} for k in range(seeds)]
    return configs


def reseed_sweep(
    store: SweepStore, name: str, seeds: int, ranks: int = 1, address: str | None = None, callbacks: list | None = None
) -> SweepRecord:
    """Run the reseeded trials (Ray experiment `<sweep>-reseed[-k]` beside the sweep's) and return the sweep's
    record with them."""
    sweep = load_finished_sweep(store, name)
    configs = reseed_configs(sweep, ranks, seeds)
    spec, root = sweep.spec, sweep.experiment_path.rsplit("/", 1)[0]
    experiment = f"{name}-reseed" if "://" in root else next_free_name(Path(root), f"{name}-reseed")
    study_dir = place_sweep(name, root, name, resume=True).study_dir  # its MLflow writes wait where the sweep's do
    recorder = MLflowRecorder(
        Outbox(store.tracking_uri, name, sweep.record.parent_run_id, pending_path(study_dir)), spec
    )
    configure_tune()
    connected = start_ray(address)
    try:
        tune.Tuner(
            with_resources(spec),
            tune_config=tune.TuneConfig(
                search_alg=ConcurrencyLimiter(Proposals(configs), max_concurrent=spec.search.concurrency),
                num_samples=len(configs),
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=experiment,
                storage_path=root,
                verbose=0,
                callbacks=with_result_files([*(callbacks or []), recorder]),
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            ),
        ).fit()
    finally:
        if connected:
            ray.shutdown()
    return store.load_sweep(name)
