"""Sweeps in MLflow: one experiment per sweep, a parent run for the sweep and a nested child run per trial.

Writing (during a sweep, from samat's Ray Tune callback) and reading (`samat frontier`, on a finished or a
running sweep) both live here, so the layout is defined once:

    experiment  <sweep name>
      parent run  tags samat.role=sweep, samat.objectives, samat.reference; params = the spec flattened;
                  artifacts spec.yaml, front/front.{parquet,json,png,html}; metric hypervolume (step = trials done)
      child runs  tags samat.role=trial, mlflow.parentRunId, ray_trial_id, method, model, dataset, pareto_front;
                  params = the trial config flattened; metrics per epoch (step = epoch) and pareto_rank
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from analysis.pareto import front_rows, hypervolume, rank_trials

ROLE = "samat.role"
STATUS = "samat.status"  # running | interrupted | finished (the parent's MLflow status follows it)
PARAMS_TAG = "samat.params"  # JSON of the searched values, with their types
TRIAL_ID = "ray_trial_id"


class TrackingError(Exception):
    """The tracking store cannot be reached or does not hold what was asked for."""


def default_tracking_uri(results_dir: str | Path) -> str:
    return f"sqlite:///{Path(results_dir).expanduser().resolve() / 'mlflow.db'}"


def artifact_root(tracking_uri: str) -> str | None:
    """For a local sqlite store, keep artifacts beside the database (MLflow would use ./mlruns of wherever the
    command ran); a tracking server decides for itself."""
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return None


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out |= flatten(v, f"{prefix}{k}.")
        return out
    return {prefix.rstrip("."): value}


def as_number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


@dataclass
class SweepRecord:
    """A sweep as read back from MLflow: its objectives and one row per trial."""

    name: str
    experiment_id: str
    parent_run_id: str
    status: str
    objectives: list[str]
    directions: list[str]
    reference: list[float | None]
    rows: list[dict] = field(default_factory=list)

    @property
    def front(self) -> list[dict]:
        return front_rows(self.rows, self.directions)

    @property
    def finished(self) -> list[dict]:
        return [r for r in self.rows if r["rank"] is not None]

    def hypervolume(self) -> float:
        rows = self.finished
        return hypervolume([r["values"] for r in rows], self.directions,
                           resolve_reference(self.reference, self.directions, rows))

    def table(self, front_only: bool = False) -> list[dict]:
        """Flat rows for export: ids, status, method, model, params, objectives, rank, front flag."""
        param_names = sorted({k for r in self.rows for k in r["params"]} - {"method", "model"})
        out = []
        for r in (self.front if front_only else self.rows):
            row = {"trial_id": r["trial_id"], "run_id": r["run_id"], "status": r["status"],
                   "method": r["params"].get("method"), "model": r["params"].get("model")}
            row |= {name: r["params"].get(name) for name in param_names}
            row |= dict(zip(self.objectives, r["values"]))
            row |= {"pareto_rank": r["rank"], "pareto_front": r["rank"] == 1}
            out.append(row)
        return out


def resolve_reference(stated: list[float | None], directions: list[str], rows: Iterable[dict]) -> list[float]:
    """The stated reference value of each objective; where none is stated, the worst value among `rows`."""
    values = [r["values"] for r in rows]
    worst = [(min if d == "max" else max)((v[i] for v in values), default=0.0) for i, d in enumerate(directions)]
    return [ref if ref is not None else worst[i] for i, ref in enumerate(stated)]


def common_reference(a: SweepRecord, b: SweepRecord) -> list[float]:
    """One reference point for two sweeps: a value both state, else the worst value either reached."""
    stated = [x if x == y else None for x, y in zip(a.reference, b.reference)]
    return resolve_reference(stated, a.directions, a.finished + b.finished)


class SweepStore:
    """MLflow reading and writing for samat sweeps at one tracking URI."""

    def __init__(self, tracking_uri: str):
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)

    def check_reachable(self) -> None:
        """Fail fast, naming the URI, if the store cannot answer (no training starts before this passes)."""
        try:
            self.client.search_experiments(max_results=1)
        except Exception as e:  # noqa: BLE001 - connection refused, bad path, wrong scheme... all one message
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise TrackingError(f"MLflow tracking store {self.tracking_uri} is not reachable: {first}") from None

    # ---- writing ------------------------------------------------------------------------------------------

    def open_sweep(self, name: str, spec: dict, objectives: list[str], directions: list[str],
                   reference: list[float | None]) -> str:
        """The sweep's parent run id: created on the first call, found again (and set running) on a resume."""
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(
            name, artifact_location=artifact_root(self.tracking_uri) and f"{artifact_root(self.tracking_uri)}/{name}")
        parent = self.parent_run(experiment_id)
        if parent:
            run_id = parent.info.run_id
            self.client.update_run(run_id, status="RUNNING")
            self.client.set_tag(run_id, STATUS, "running")
            return run_id
        run = self.client.create_run(experiment_id, run_name=name, tags={
            ROLE: "sweep", STATUS: "running", "samat.objectives": json.dumps(list(zip(objectives, directions))),
            "samat.reference": json.dumps(reference), "mlflow.note.content": spec.get("description", "")})
        self.log_params(run.info.run_id, spec)
        with tempfile.TemporaryDirectory() as folder:
            import yaml

            path = Path(folder) / "spec.yaml"
            path.write_text(yaml.safe_dump(spec, sort_keys=False))
            self.client.log_artifact(run.info.run_id, str(path))
        return run.info.run_id

    def trial_run(self, parent_run_id: str, trial_id: str, config: dict, params: dict, tags: dict) -> str:
        """The child run of a Ray trial: found by its trial id if it exists (resume, retry), else created."""
        experiment_id = self.client.get_run(parent_run_id).info.experiment_id
        found = self.client.search_runs([experiment_id], f"tags.{TRIAL_ID} = '{trial_id}'", max_results=1)
        if found:
            return found[0].info.run_id
        run = self.client.create_run(experiment_id, run_name=f"{params.get('method')}-{trial_id}", tags={
            "mlflow.parentRunId": parent_run_id, ROLE: "trial", TRIAL_ID: trial_id, PARAMS_TAG: json.dumps(params),
            "pareto_front": "false", **{k: str(v) for k, v in tags.items()}})
        self.log_params(run.info.run_id, config)
        return run.info.run_id

    def log_params(self, run_id: str, values: dict) -> None:
        """A nested dict as flat params, within MLflow's limits (250-char keys, 6000-char values, 100 a batch)."""
        from mlflow.entities import Param

        params = [Param(k[:250], str(v)[:6000]) for k, v in flatten(values).items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(run_id, params=params[i:i + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int, tags: dict | None = None) -> None:
        """Metrics at `step` (and tags) in one write."""
        import time

        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()],
                              tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()])

    def finish_trial(self, run_id: str, status: str, reason: str | None = None) -> None:
        if reason:
            self.client.set_tag(run_id, "error", reason[:5000])
        self.client.set_terminated(run_id, status)

    def update_front(self, name: str) -> SweepRecord:
        """Re-rank every finished trial, tag the children whose rank changed, and log the hypervolume on the
        parent with step = number of finished trials."""
        record = self.load_sweep(name)
        from mlflow.entities import Metric, RunTag

        for row in record.rows:
            on_front = "true" if row["rank"] == 1 else "false"
            if row["rank"] is not None and row["stored_rank"] != row["rank"]:
                self.client.log_batch(row["run_id"], metrics=[Metric("pareto_rank", row["rank"], 0, 0)],
                                      tags=[RunTag("pareto_front", on_front)])
            elif row["rank"] is None and row["stored_front"] != "false":
                self.client.set_tag(row["run_id"], "pareto_front", "false")
        finished = len(record.finished)
        logged = self.client.get_metric_history(record.parent_run_id, "hypervolume")
        if finished and finished != max((m.step for m in logged), default=0):  # one point per trial count
            self.log_metrics(record.parent_run_id, {"hypervolume": record.hypervolume(),
                                                    "front_size": len(record.front)}, step=finished)
        return record

    def log_front_artifacts(self, record: SweepRecord, html: bool = False) -> None:
        """The front table (parquet and JSON) and plot (PNG, and with `html` the interactive plotly page)."""
        from analysis.plots import write_plot
        from analysis.export import write_table

        with tempfile.TemporaryDirectory() as folder:
            rows = record.table(front_only=True)
            for file in ("front.parquet", "front.json"):
                write_table(rows, Path(folder) / file)
            for file in ("front.png", "front.html") if html else ("front.png",):
                write_plot(record, Path(folder) / file)
            self.client.log_artifacts(record.parent_run_id, folder, "front")

    def close_sweep(self, name: str, finished: bool) -> SweepRecord:
        record = self.update_front(name)
        self.log_front_artifacts(record, html=True)
        self.client.set_tag(record.parent_run_id, STATUS, "finished" if finished else "interrupted")
        self.client.set_terminated(record.parent_run_id, "FINISHED" if finished else "KILLED")
        return record

    # ---- reading ------------------------------------------------------------------------------------------

    def parent_run(self, experiment_id: str):
        """The sweep's parent run in an experiment, or None (an experiment samat did not make)."""
        parents = self.client.search_runs([experiment_id], f"tags.`{ROLE}` = 'sweep'", max_results=1)
        return parents[0] if parents else None

    def sweep_parent(self, name: str):
        experiment = self.client.get_experiment_by_name(name)
        parent = experiment and self.parent_run(experiment.experiment_id)
        if not parent:
            known = ", ".join(s["name"] for s in self.list_sweeps()) or "none yet"
            raise TrackingError(f"no sweep named {name!r} at {self.tracking_uri} (sweeps there: {known})")
        return experiment, parent

    def load_sweep(self, name: str) -> SweepRecord:
        experiment, parent = self.sweep_parent(name)
        objectives = json.loads(parent.data.tags["samat.objectives"])
        record = SweepRecord(name, experiment.experiment_id, parent.info.run_id,
                             parent.data.tags.get(STATUS, parent.info.status.lower()),
                             [m for m, _ in objectives], [d for _, d in objectives],
                             json.loads(parent.data.tags.get("samat.reference", "null")) or [None] * len(objectives))
        for run in self.child_runs(experiment.experiment_id):
            tags, metrics = run.data.tags, run.data.metrics
            status = {"FINISHED": "complete", "FAILED": "error", "KILLED": "error"}.get(run.info.status, "running")
            record.rows.append({
                "trial_id": tags.get(TRIAL_ID), "run_id": run.info.run_id, "status": status,
                "params": json.loads(tags.get(PARAMS_TAG, "{}")),
                "values": [metrics.get(m) for m in record.objectives], "metrics": metrics,
                "stored_rank": metrics.get("pareto_rank"), "stored_front": tags.get("pareto_front"),
                "error": tags.get("error")})
        rank_trials(record.rows, record.directions)
        record.rows.sort(key=lambda r: r["trial_id"] or "")
        return record

    def child_runs(self, experiment_id: str) -> list:
        runs, token = [], None
        while True:
            page = self.client.search_runs([experiment_id], f"tags.`{ROLE}` = 'trial'", max_results=1000,
                                           page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def list_sweeps(self) -> list[dict]:
        out = []
        for experiment in self.client.search_experiments():
            parent = self.parent_run(experiment.experiment_id)
            if not parent:
                continue
            children = self.child_runs(experiment.experiment_id)
            out.append({"name": experiment.name, "trials": len(children),
                        "finished": sum(c.info.status == "FINISHED" for c in children),
                        "failed": sum(c.info.status in ("FAILED", "KILLED") for c in children),
                        "status": parent.data.tags.get(STATUS, parent.info.status.lower()),
                        "hypervolume": parent.data.metrics.get("hypervolume"),
                        "start_time": parent.info.start_time})
        return sorted(out, key=lambda s: s["start_time"] or 0)


def set_quiet_mlflow_env() -> None:
    """MLflow's HTTP client retries a dead server for minutes; a sweep should learn that in seconds. And its
    set-up logging is quieted."""
    import logging

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    for name in ("mlflow", "alembic"):  # "Creating initial MLflow database tables..." is noise on every new store
        logging.getLogger(name).setLevel(logging.WARNING)
