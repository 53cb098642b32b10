"""A sweep as the tools after its search read it back: its spec and MLflow record, and from Ray's experiment
folder (local or a shared URI) each trial's exact config and final checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

from ray.tune import Checkpoint, ExperimentAnalysis, ResultGrid

from analysis.tracking import SweepStore
from analysis.trials import SweepRecord, TrialRow
from sweeps.spec import SweepSpec, validate_spec


@dataclass
class FinishedSweep:
    spec: SweepSpec
    record: SweepRecord
    experiment_path: str
    configs: dict[str, dict]  # Ray trial id -> the trial's config, as Tune passed it
    checkpoints: dict[str, Checkpoint]  # Ray trial id -> its last checkpoint

    def best(self, ranks: int) -> list[TrialRow]:
        """The trials of Pareto rank 1..`ranks` (1: the front), front first."""
        return sorted((r for r in self.record.rows if r.rank is not None and r.rank <= ranks), key=lambda r: r.rank)


def load_finished_sweep(store: SweepStore, name: str) -> FinishedSweep:
    raw, experiment_path = store.sweep_spec(name)
    grid = ResultGrid(ExperimentAnalysis(experiment_path))
    results = {r.metrics.get("trial_id"): r for r in grid if r.metrics}
    return FinishedSweep(
        validate_spec(raw, f"{name}'s spec.yaml"),
        store.load_sweep(name),
        experiment_path,
        {trial_id: r.config for trial_id, r in results.items()},
        {trial_id: r.checkpoint for trial_id, r in results.items() if r.checkpoint},
    )
