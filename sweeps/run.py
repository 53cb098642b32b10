"""Run a sweep spec as a Ray Tune experiment searched by Optuna (multi-objective), and find its Pareto front.

    run_sweep(load_spec("quick")) -> SweepResult(trials, front, ...)

Tune is the outer shell around the function trainable (`sweeps.trainable.train_trial`); Optuna proposes each
trial (`sweeps.search`), samat's callback records it in MLflow (`sweeps.recording`)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import ray
from ray import tune
from ray.tune import Callback

from analysis.outbox import Outbox, pending_path
from analysis.stores import set_quiet_mlflow_env
from analysis.tracking import SweepStore
from analysis.trials import TrialRow, front, rank_rows, stopped_epoch
from sweeps.moasha import MOASHAScheduler, SchedulerCheckpoint, trial_epochs
from sweeps.places import SweepPlace, SweepRefused, place_sweep
from sweeps.ray_start import start_ray
from sweeps.recording import MLflowRecorder
from sweeps.results import FinishedSweep
from sweeps.search import fail_running_trials, make_searcher
from sweeps.space import searched_params, train_config
from sweeps.spec import SweepSpec
from sweeps.storage import check_writable, quiet_storage_errors, storage_fault
from sweeps.trainable import configure_tune, with_resources, with_result_files
from trainables import settings
from trainables.vocabulary import EPOCH, EPOCHS

if TYPE_CHECKING:  # the driver imports no torch: trials and audits do, in their own processes
    from trainables.audit import Audit


@dataclass
class SweepResult:
    name: str
    path: str  # the Ray experiment folder (or URI)
    optuna_storage: str  # an RDB URL for optuna.load_study / optuna-dashboard
    tracking_uri: str  # the MLflow store holding the sweep's runs
    directions: dict[str, str]  # objective metric -> "max" | "min"
    trials: list[TrialRow]
    finished: bool  # False when interrupted: resume with --resume
    wall_s: float = 0.0
    front: list[TrialRow] = field(default_factory=list)
    audit: tuple[FinishedSweep, dict[str, Audit]] | None = None  # with `final: audit`
    pending: int = 0  # MLflow writes the store did not take, kept in `pending_path` (samat frontier sync)
    pending_path: Path | None = None

    @property
    def objectives(self) -> list[str]:
        return list(self.directions)


def run_sweep(
    spec: SweepSpec,
    results_dir: str | None = None,
    *,
    name: str | None = None,
    resume: bool = False,
    address: str | None = None,
    tracking_uri: str | None = None,
    callbacks: list | None = None,
    num_cpus: int | None = None,
) -> SweepResult:
    """Run (or with `resume`, continue) a sweep, record it in MLflow, and return its trials and Pareto front.
    Results go to `results_dir` and records to `tracking_uri`, each by default as `trainables.settings` resolves
    it. Joins the Ray cluster at `address`/RAY_ADDRESS if given, else starts a local Ray and stops it at the end."""
    set_quiet_mlflow_env()
    configure_tune()  # it checks the Ray installed (sweeps.ray_private) before anything is written or started
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    # everything that can refuse the sweep is checked before anything is written or started
    place = place_sweep(spec.name, settings.results_location(results_dir), name, resume)
    restorable = tune.Tuner.can_restore(place.experiment_path)
    if resume and not restorable:
        raise SweepRefused(f"--resume: no sweep to resume at {place.experiment_path}")
    if resume and not place.remote:
        check_newest_state(Path(place.experiment_path))
    if not resume and place.remote and restorable:  # a local sweep's name is free already
        raise SweepRefused(f"{place.experiment_path} holds a sweep: continue it with --resume, or name another")
    store = SweepStore(settings.tracking_uri(tracking_uri, place.storage_root))
    store.check_reachable()
    place.study_dir.mkdir(parents=True, exist_ok=True)
    spec = spec.model_copy(update=settings.data_folders(spec.data_dir, spec.corruption_dir))
    parent_run_id = store.open_sweep(
        place.name, spec.model_dump(mode="json"), spec.directions, spec.hypervolume_reference, place.experiment_path
    )
    outbox = Outbox(store.tracking_uri, place.name, parent_run_id, pending_path(place.study_dir))
    outbox.retry(now=True)  # what an earlier driver kept while the store was away (on --resume)
    recorder = MLflowRecorder(outbox, spec)

    connected = start_ray(address, num_cpus)
    start = time.perf_counter()
    guard = [] if place.remote else [StorageGuard(place.storage_root)]
    quiet_storage_errors()
    with storage_faults_stop_the_sweep(place, outbox):
        try:
            tuner = (
                restore_tuner(place, spec) if resume else new_tuner(place, spec, [*(callbacks or []), *guard, recorder])
            )
            rows = trial_rows(tuner.fit(), spec)
        except KeyboardInterrupt:  # a second Ctrl-C: Tune did not get to finish; what it saved can be resumed
            outbox.close(finished=False)
            raise
        finally:
            if connected:
                ray.shutdown()
        finished = len(rows) >= spec.search.trials and all(r.status != "unfinished" for r in rows)
        if finished:  # trials Ray proposed after its last saved state never finish: all three stores must agree
            fail_running_trials(place.optuna_storage, place.name)
            outbox.orphans(sorted(r.trial_id for r in rows))
        outbox.close(finished)
        pending = outbox.retry(now=True)
    audited = None
    if finished and spec.final == "audit" and not pending:
        from sweeps.audit import audit_sweep  # noqa: PLC0415 - torch (3 s): only a sweep that audits pays it

        audited = audit_sweep(store, place.name, address=address)
    return SweepResult(
        place.name,
        place.experiment_path,
        place.optuna_storage,
        store.tracking_uri,
        spec.directions,
        rows,
        finished,
        time.perf_counter() - start,
        front(rows, spec.directions),
        audited,
        pending,
        outbox.path,
    )


@contextlib.contextmanager
def storage_faults_stop_the_sweep(place: SweepPlace, outbox: Outbox):
    """An error that a full or read-only local results folder caused, in Tune's loop or in the writes after it,
    becomes one StorageFault naming the folder; the sweep's MLflow parent is marked interrupted if its store can
    still be written (a tracking server elsewhere)."""
    try:
        yield
    except Exception as e:
        fault = None if place.remote else storage_fault(e, place.storage_root)
        if fault is None:
            raise
        with contextlib.suppress(Exception):
            outbox.close(finished=False)
        raise fault from None


class StorageGuard(Callback):
    """Stops the sweep from Tune's loop, in the driver, as soon as its results folder turns read-only or full
    (sweeps.storage): checked before each step (a statvfs and an access call, microseconds), so before any state
    save Tune would make on that disk; a resume starts from what was written before."""

    def __init__(self, folder: str):
        self.folder = folder

    def on_step_begin(self, iteration, trials, **info):
        check_writable(self.folder)


def make_scheduler(spec: SweepSpec) -> MOASHAScheduler | None:
    """The spec's early stopping: MO-ASHA on the sweep's objectives, rungs in epochs up to the most epochs a
    trial trains (`spec.max_epochs`), each met by a trial at that share of its own epochs; None without a
    `scheduler:` block (every trial trains every epoch)."""
    if spec.scheduler is None:
        return None
    return MOASHAScheduler(
        metric=list(spec.directions),
        mode=list(spec.directions.values()),
        time_attr=EPOCH,
        max_t=spec.max_epochs,
        grace_period=spec.scheduler.grace_period,
        reduction_factor=spec.scheduler.reduction_factor,
        brackets=spec.scheduler.brackets,
        budget=trial_epochs,
    )


def new_tuner(place: SweepPlace, spec: SweepSpec, callbacks: list) -> tune.Tuner:
    """The scheduler lives in the driver (Tune calls it there with every result), so it works the same on one
    node or many; its rungs are saved with each experiment checkpoint through `SchedulerCheckpoint`, which Tune
    pickles in tuner.pkl with the scheduler itself, so `restore_tuner` brings both back together."""
    scheduler = make_scheduler(spec)
    return tune.Tuner(
        with_resources(spec),
        tune_config=tune.TuneConfig(
            search_alg=make_searcher(spec, place.name, place.optuna_storage),
            scheduler=scheduler,
            num_samples=spec.search.trials,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=place.name,
            storage_path=place.storage_root,
            verbose=0,
            callbacks=with_result_files([SchedulerCheckpoint(scheduler), *callbacks] if scheduler else callbacks),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        ),
    )


def check_newest_state(experiment: Path) -> None:
    """Tune resumes from its newest experiment state file alone. One cut short (a kill in the middle of Ray's own
    copy, which rewrote files in place before samat copied them whole) is refused here, before Tune fails on it."""
    states = sorted(experiment.glob("experiment_state-*.json"))  # Tune's choice: the last by name
    if not states:
        return
    try:
        json.loads(states[-1].read_bytes())
    except ValueError:
        raise SweepRefused(
            f"--resume: {states[-1]} is cut short ({states[-1].stat().st_size} bytes), so Tune cannot resume this "
            f"sweep; its trials stay in MLflow, and `samat sweep` without --resume starts it again under a new name"
        ) from None


def restore_tuner(place: SweepPlace, spec: SweepSpec) -> tune.Tuner:
    """Tune restores the searcher (with its Optuna study), the callbacks and every trial's last checkpoint."""
    return tune.Tuner.restore(place.experiment_path, with_resources(spec), resume_unfinished=True, resume_errored=True)


def trial_rows(result_grid, spec: SweepSpec) -> list[TrialRow]:
    """Ray's results as trial rows, ranked: complete means no error and every epoch reported; stopped, that the
    scheduler ended the trial early (Tune reports it TERMINATED, its last result `done`, with fewer epochs than
    its config gave it); unfinished, that it was interrupted."""
    rows = []
    for result in result_grid:
        config, metrics = result.config or {}, result.metrics or {}
        failure = metrics.get("failure")  # a diverged trial reports why
        if result.error and not failure:  # a crashed one: the last line of Ray's error says what happened
            failure = (str(result.error).strip().splitlines() or ["error"])[-1]
        planned = train_config(config).epochs
        complete = not failure and metrics.get(EPOCHS) == planned
        stopped = stopped_epoch(metrics, planned) if metrics.get("done") and not failure else None
        status = "error" if failure else "complete" if complete else "stopped" if stopped is not None else "unfinished"
        rows.append(
            TrialRow(
                trial_id=metrics.get("trial_id") or os.path.basename(result.path),
                path=result.path,
                status=status,
                stopped_at=stopped,
                params=searched_params(config, spec),
                objectives={m: metrics.get(m) for m in spec.directions},
                metrics=metrics,
                error=failure,
            )
        )
    return sorted(rank_rows(rows, spec.directions), key=lambda r: r.trial_id)
