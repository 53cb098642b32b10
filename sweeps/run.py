"""Run a sweep spec as a Ray Tune experiment searched by Optuna (multi-objective), and find its Pareto front.

    run_sweep(load_spec("quick")) -> SweepResult(trials, front, ...)

Tune is the outer shell: the trainable is `trainables.tune.train_trial`; Optuna's sampler proposes each trial
through Ray's OptunaSearch with a define-by-run space, and its study lives in an sqlite file beside the Ray
results so `optuna.load_study` and optuna-dashboard can open it while the sweep runs or after."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.pareto import front_rows, rank_trials
from analysis.tracking import SweepStore, default_tracking_uri, set_quiet_mlflow_env
from sweeps.spec import Choice, Param, Range, SweepSpec

OPTUNA_FILE = "optuna.db"


class SweepRefused(Exception):
    """The sweep cannot start as asked (nothing to resume, a name taken, no place to record); nothing was
    written or started."""


class SearchSpace:
    """Optuna define-by-run space: model, method, then only the chosen method's parameters (namespaced
    `method.param`, so `sam.rho` and `sam_at.rho` are separate distributions). A class, not a closure, because
    Ray pickles the searcher with the experiment state."""

    def __init__(self, spec: SweepSpec):
        self.spec = spec

    def __call__(self, trial) -> dict[str, Any]:
        spec, constants = self.spec, dict(self.spec.base_config())
        constants["model"] = suggest(trial, "model", Choice(choices=list(spec.models)))
        method = constants["method"] = suggest(trial, "method", Choice(choices=list(spec.methods)))
        for name, value in spec.train.items():
            constants[name] = suggest(trial, name, value)
        for name, value in spec.methods[method].items():
            constants[f"{method}.{name}"] = suggest(trial, f"{method}.{name}", value)
        # only searched values are Optuna parameters; constants ride along in the returned dict
        return {k: v for k, v in constants.items() if k not in trial.params}


def suggest(trial, name: str, value: Param):
    if isinstance(value, Range):
        if value.is_int:
            return trial.suggest_int(name, value.low, value.high, log=value.log)
        return trial.suggest_float(name, value.low, value.high, log=value.log)
    if isinstance(value, Choice):
        return trial.suggest_categorical(name, value.choices) if len(value.choices) > 1 else value.choices[0]
    return value


def failed_search_class():
    """Ray's OptunaSearch tells Optuna COMPLETE whenever the trial has a last result, even one that errored
    after some epochs (with those epochs' values), and it tries to tell NaN. Optuna must hear FAIL for a
    trial that errored, diverged or lacks finite objectives, so its sampler never learns from them."""
    import math

    import optuna
    from ray.tune.search.optuna import OptunaSearch

    class FailureAwareOptunaSearch(OptunaSearch):
        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
            values = [(result or {}).get(m) for m in self.metric]
            usable = all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
            if trial_id in self._completed_trials or (usable and not error and not (result or {}).get("failure")):
                return super().on_trial_complete(trial_id, result, error)
            self._ot_study.tell(self._ot_trials[trial_id], state=optuna.trial.TrialState.FAIL)
            self._completed_trials.add(trial_id)

    return FailureAwareOptunaSearch


def make_sampler(spec: SweepSpec):
    import optuna

    s = spec.search
    if s.sampler == "nsga2":
        population = s.population_size or min(50, max(4, s.trials // 3))
        return optuna.samplers.NSGAIISampler(population_size=population, seed=s.seed)
    if s.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=s.seed, multivariate=True)
    if s.sampler == "gp":
        return optuna.samplers.GPSampler(seed=s.seed)
    return optuna.samplers.RandomSampler(seed=s.seed)


@dataclass
class SweepResult:
    name: str
    path: str  # the Ray experiment folder (or URI)
    optuna_storage: str  # an RDB URL for optuna.load_study / optuna-dashboard
    tracking_uri: str  # the MLflow store holding the sweep's runs
    objectives: list[str]
    directions: list[str]
    trials: list[dict]  # one row per trial: trial_id, status, method, model, params, objective values, rank
    finished: bool  # False when interrupted: resume with --resume
    wall_s: float = 0.0
    front: list[dict] = field(default_factory=list)


def optuna_storage_url(sweep_dir: Path) -> str:
    return f"sqlite:///{sweep_dir / OPTUNA_FILE}"


def searched_params(config: dict, spec: SweepSpec) -> dict[str, Any]:
    """What tells trials apart: model, method, and the searched values (method ones un-namespaced: `sam.rho` ->
    `rho`); constants are left out."""
    method = config.get("method")
    params = {"model": config.get("model"), "method": method}
    params |= {k: config.get(k) for k, v in spec.train.items() if isinstance(v, (Range, Choice))}
    params |= {name: config.get(f"{method}.{name}") for name, v in spec.methods.get(method, {}).items()
               if isinstance(v, (Range, Choice))}
    return params


def trial_rows(result_grid, spec: SweepSpec) -> list[dict]:
    rows = []
    for result in result_grid:
        config = result.config or {}
        metrics = result.metrics or {}
        values = [metrics.get(m) for m in spec.objective_metrics]
        complete = result.error is None and metrics.get("epochs") == config_epochs(config)
        failure = metrics.get("failure")  # a diverged trial reports why
        if result.error and not failure:  # a crashed one: the last line of Ray's error says what happened
            failure = (str(result.error).strip().splitlines() or ["error"])[-1]
        rows.append({"trial_id": metrics.get("trial_id") or Path(result.path).name, "path": result.path,
                     "status": "error" if failure else ("complete" if complete else "unfinished"),
                     "params": searched_params(config, spec), "values": values, "metrics": metrics,
                     "error": failure})
    rank_trials(rows, spec.objective_modes)
    return sorted(rows, key=lambda r: r["trial_id"])


def config_epochs(config: dict) -> int:
    from trainables.tune import trial_config

    try:
        return trial_config(config).epochs
    except Exception:  # noqa: BLE001 - a config that does not validate has no epoch count to compare
        return -1


def next_free_name(results: Path, name: str) -> str:
    """`quick`, then `quick-2`, `quick-3`...: a new sweep never writes into an earlier one's folder."""
    if not (results / name).exists():
        return name
    taken = [int(m[1]) for p in results.iterdir() if (m := re.fullmatch(re.escape(name) + r"-(\d+)", p.name))]
    return f"{name}-{max(taken, default=1) + 1}"


def latest_name(results: Path, name: str) -> str | None:
    """The most recent sweep of this spec in `results` (for --resume without --name)."""
    candidates = [p for p in results.glob(f"{name}*") if p.is_dir() and re.fullmatch(re.escape(name) + r"(-\d+)?",
                                                                                      p.name)]
    return max(candidates, key=lambda p: p.stat().st_mtime).name if candidates else None


def start_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Join the cluster at `address` (or RAY_ADDRESS), else start a local Ray bound to loopback. Returns whether
    this call connected (and so should `ray.shutdown()`: that stops a local Ray, and only disconnects from a
    cluster)."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        return True
    # A single-machine Ray on loopback. Ray's switch for that (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, the default
    # on Windows and macOS) keeps 127.0.0.1 as the node address, so GCS, raylet and workers listen there, not
    # on every interface; without it Ray swaps 127.0.0.1 for this machine's network address. Ray reads the
    # variable into a constant when imported, so set both; child processes inherit the variable. To listen
    # wider, start a cluster yourself (`ray start --head`) and pass --address.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray._private.ray_constants.ENABLE_RAY_CLUSTER = False
    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, logging_level="ERROR",
             log_to_driver=False, _node_ip_address="127.0.0.1")
    return True


def resolve_tracking_uri(tracking_uri: str | None, results_dir: str | Path) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else sqlite beside the local results (the embedded default)."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    if "://" in str(results_dir):
        raise SweepRefused(f"results at {results_dir} are remote: give an MLflow tracking URI too "
                         f"(--tracking-uri or MLFLOW_TRACKING_URI)")
    return default_tracking_uri(results_dir)


def settle_orphans(storage_url: str, name: str, store: SweepStore, trial_ids: set[str]) -> None:
    """After a driver crash, Optuna and MLflow may hold trials that Ray proposed after its last saved state:
    Ray proposes them again on resume, so the old ones never finish. Once the sweep is finished, mark them
    FAIL (Optuna) and KILLED (MLflow) so that all three agree on the trials that ran."""
    import optuna

    study = optuna.load_study(study_name=name, storage=storage_url)
    for trial in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.RUNNING]):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    for row in store.load_sweep(name).rows:
        if row["status"] == "running" and row["trial_id"] not in trial_ids:
            store.finish_trial(row["run_id"], "KILLED", "orphaned: the sweep driver stopped before Ray saved this "
                                                        "trial; it was proposed again on resume")


def resolve_data_dir(data_dir: str) -> str:
    """Trials run in their own folders on any node, so a relative data_dir becomes absolute here: against
    SAMAT_DATA_ROOT where set (a cluster's nodes each hold the data there), else the driver's folder."""
    path = Path(data_dir).expanduser()
    if path.is_absolute():
        return str(path)
    return str(Path(os.environ.get("SAMAT_DATA_ROOT", Path.cwd())).expanduser() / path)


def run_sweep(spec: SweepSpec, *, trials: int | None = None, concurrency: int | None = None,
              results_dir: str | Path = "results", name: str | None = None, address: str | None = None,
              resume: bool = False, callbacks: list | None = None, num_cpus: int | None = None,
              tracking_uri: str | None = None) -> SweepResult:
    """Run (or with `resume`, continue) a sweep, record it in MLflow, and return its trials and Pareto front.
    Joins the Ray cluster at `address`/RAY_ADDRESS if given, else starts a local Ray and stops it at the end."""
    import optuna
    import ray
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter
    from trainables.tune import train_trial

    from sweeps.recording import MLflowRecorder

    set_quiet_mlflow_env()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0 Tune then prints nothing: samat shows progress

    # everything that can refuse the sweep is checked before anything is written or started
    storage_root = str(results_dir).rstrip("/")
    is_uri = "://" in storage_root
    results = None if is_uri else Path(storage_root).expanduser().resolve()
    store = SweepStore(resolve_tracking_uri(tracking_uri, results or storage_root))
    store.check_reachable()
    if resume:
        name = name or (None if is_uri else latest_name(results, spec.name)) or spec.name
    else:
        name = name or (spec.name if is_uri else next_free_name(results, spec.name))
    experiment_path = f"{storage_root}/{name}" if is_uri else str(results / name)
    if resume and not tune.Tuner.can_restore(experiment_path):
        raise SweepRefused(f"--resume: no sweep to resume at {experiment_path}")
    if not resume and is_uri and tune.Tuner.can_restore(experiment_path):
        raise SweepRefused(f"{experiment_path} already holds a sweep: continue it with --resume, or start "
                              f"another with --name")

    # the Optuna study lives beside local results; with remote results (S3), on the driver's disk
    study_dir = Path.home() / ".samat" / "optuna" / name if is_uri else results / name
    study_dir.mkdir(parents=True, exist_ok=True)
    storage_url = optuna_storage_url(study_dir)
    spec = spec.model_copy(update={"data_dir": resolve_data_dir(spec.data_dir)})
    n_trials = trials or spec.search.trials
    parent_run_id = store.open_sweep(name, spec.model_dump(mode="json"), spec.objective_metrics,
                                     spec.objective_modes, spec.hypervolume_reference)

    trainable = tune.with_resources(train_trial, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
    connected = start_ray(address, num_cpus)
    start = time.perf_counter()
    try:
        if resume:
            tuner = tune.Tuner.restore(experiment_path, trainable, resume_unfinished=True, resume_errored=True)
        else:
            searcher = failed_search_class()(SearchSpace(spec), metric=spec.objective_metrics, mode=spec.objective_modes,
                                    sampler=make_sampler(spec), study_name=name,
                                    storage=optuna.storages.RDBStorage(storage_url))
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=ConcurrencyLimiter(searcher, max_concurrent=concurrency or spec.search.concurrency),
                    num_samples=n_trials, reuse_actors=True),
                run_config=tune.RunConfig(
                    name=name, storage_path=storage_root if is_uri else str(results), verbose=0,
                    callbacks=[*(callbacks or []), MLflowRecorder(store.tracking_uri, name, parent_run_id, spec)],
                    failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=2)))
        grid = tuner.fit()
        rows = trial_rows(grid, spec)
    except KeyboardInterrupt:  # a second Ctrl-C: Tune did not get to finish; what it saved can be resumed
        store.close_sweep(name, finished=False)
        raise
    finally:
        if connected:
            ray.shutdown()
    finished = len(rows) >= n_trials and all(r["status"] != "unfinished" for r in rows)
    if finished:
        settle_orphans(storage_url, name, store, {r["trial_id"] for r in rows})
    store.close_sweep(name, finished)
    return SweepResult(name, experiment_path, storage_url, store.tracking_uri, spec.objective_metrics,
                       spec.objective_modes, rows, finished, time.perf_counter() - start,
                       front_rows(rows, spec.objective_modes))
