"""Sweeps in MLflow: one experiment per sweep, a parent run for the sweep and a nested child run per trial.

Writing (during a sweep, from samat's Ray Tune callback) and reading (`samat frontier`, on a finished or a
running sweep) both live here, so the layout is defined once:

    experiment  <sweep name>
      parent run  tags samat.role=sweep, samat.objectives, samat.reference, samat.summary; params = the spec
                  flattened; artifacts spec.yaml, and at the close front/front.{parquet,json,png,html} and
                  trials/trials.parquet; metric hypervolume (step = trials done)
      child runs  tags samat.role=trial, mlflow.parentRunId, ray_trial_id, method, model, dataset, pareto_front;
                  params = the trial config flattened; metrics per epoch (step = epoch) and pareto_rank
                  a trial stopped early by the scheduler: status KILLED, tags samat.status=stopped,
                  samat.stopped_at_epoch=<e>, samat.stopped_by=MO-ASHA (its metrics end at epoch e)
                  an audited trial (`samat frontier audit`): metrics audit/<attack> (step 0), tags audit=passed |
                  suspect and audit.reason; its parent: artifacts audit/front.*, metrics audit/hypervolume,
                  audit/search_hypervolume and audit/front_size
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from analysis.curves import method_summary, write_curves
from analysis.export import PAGE, Spill, copy_table, progress_bar, write_pages, write_table
from analysis.plots import write_plot
from analysis.stores import (
    CLOSED,
    FRONT_TABLE,
    TRIALS_TABLE,
    TrackingError,
    artifact_root,
    database_version,
    write_front_index,
    write_sweep_index,
)
from analysis.trials import (
    LISTED_STOPPED,
    SweepRecord,
    SweepSummary,
    TrialRow,
    common_reference,
    front,
    rank_rows,
    sweep_hypervolume,
)

ROLE = "samat.role"
STATUS = "samat.status"  # parent: running | interrupted | finished (its MLflow status follows); trial: stopped
STOPPED = "stopped"  # a trial run's samat.status when the scheduler stopped it early
STOPPED_AT = "samat.stopped_at_epoch"
STOPPED_BY = "samat.stopped_by"
PARAMS_TAG = "samat.params"  # JSON of the searched values, with their types
TRIAL_ID = "ray_trial_id"
AUDIT = "audit"  # tag (passed | suspect), metric prefix and artifact folder of `samat frontier audit`
# the audit's tag and its values as samat wrote them before the audit was renamed (it was `certify`)
LEGACY_AUDIT = {"certified": {"true": "passed", "suspect": "suspect"}}
RESEED_OF = "samat.reseed_of"  # config key and tag of a reseeded trial: the Ray trial id it repeats
EXPERIMENT_PATH = "samat.experiment_path"  # tag on the parent run: Ray's folder (or URI) of the sweep
PARETO_FRONT = "pareto_front"  # tag on each trial run: "true" | "false"
PARETO_RANK = "pareto_rank"  # metric on each trial run: 1 = on the front
SUMMARY = "samat.summary"  # tag on the parent: the SweepSummary (JSON) as of the last re-rank
RUN_STATUS = {"FINISHED": "complete", "FAILED": "error", "KILLED": "error"}  # MLflow run status -> TrialRow's


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out |= flatten(v, f"{prefix}{k}.")
        return out
    return {prefix.rstrip("."): value}


def trial_order(row: TrialRow) -> str:
    """A sweep's rows are listed and exported in the order of their trial ids."""
    return row.trial_id or ""


def audit_verdict(tags: dict[str, str]) -> str | None:
    """A trial run's audit verdict (passed | suspect), under its tag or the one older samats wrote; None if the
    trial was never audited."""
    if AUDIT in tags:
        return tags[AUDIT]
    return next((values.get(tags[tag]) for tag, values in LEGACY_AUDIT.items() if tag in tags), None)


class SweepStore:
    """MLflow reading and writing for samat sweeps at one tracking URI."""

    def __init__(self, tracking_uri: str):
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        self._experiment_ids: dict[str, str] = {}  # parent run id -> its experiment's id (never changes)
        self._hypervolume_steps: dict[str, int] = {}  # parent run id -> see hypervolume_step
        self._summaries: dict[str, str] = {}  # parent run id -> the summary last written (JSON)
        self._clock = 0  # see stamp

    def check_reachable(self) -> None:
        """Fail fast, naming the URI, if the store cannot answer (no training starts before this passes)."""
        try:
            self.client.search_experiments(max_results=1)
        except Exception as e:  # noqa: BLE001 - connection refused, bad path, wrong scheme... all one message
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise TrackingError(f"MLflow tracking store {self.tracking_uri} is not reachable: {first}") from None

    # ---- writing ------------------------------------------------------------------------------------------

    def open_sweep(
        self, name: str, spec: dict, directions: dict[str, str], reference: list[float | None], experiment_path: str
    ) -> str:
        """The sweep's parent run id: created on the first call, found again (and set running) on a resume.
        `experiment_path` is where Ray keeps the sweep's trials and checkpoints (for audit and reseed)."""
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = (
            experiment.experiment_id
            if experiment
            else self.client.create_experiment(
                name,
                artifact_location=artifact_root(self.tracking_uri) and f"{artifact_root(self.tracking_uri)}/{name}",
            )
        )
        parent = self.parent_run(experiment_id)
        if parent:
            run_id = parent.info.run_id
            self.client.update_run(run_id, status="RUNNING")
            self.client.set_tag(run_id, STATUS, "running")
            return run_id
        run = self.client.create_run(
            experiment_id,
            run_name=name,
            tags={
                ROLE: "sweep",
                STATUS: "running",
                "samat.objectives": json.dumps(list(directions.items())),
                "samat.reference": json.dumps(reference),
                EXPERIMENT_PATH: experiment_path,
                "mlflow.note.content": spec.get("description", ""),
            },
        )
        self.log_params(run.info.run_id, spec)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "spec.yaml"
            path.write_text(yaml.safe_dump(spec, sort_keys=False))
            self.client.log_artifact(run.info.run_id, str(path))
        return run.info.run_id

    def create_trial_run(self, parent_run_id: str, trial_id: str, config: dict, params: dict, tags: dict) -> str:
        run = self.client.create_run(
            self.experiment_of(parent_run_id),
            run_name=f"{params.get('method')}-{trial_id}",
            tags={
                "mlflow.parentRunId": parent_run_id,
                ROLE: "trial",
                TRIAL_ID: trial_id,
                PARAMS_TAG: json.dumps(params),
                PARETO_FRONT: "false",
                **{k: str(v) for k, v in tags.items()},
            },
        )
        self.log_params(run.info.run_id, config)
        return run.info.run_id

    def trial_runs(self, parent_run_id: str) -> dict[str, str]:
        """Every run of the sweep that records a Ray trial (the search's and reseeds), by trial id. A trial with
        several runs keeps the one holding most of it (metrics, then params, then the newest), and its other runs
        that hold no metrics are deleted: they are what a server made of a `create_run` it applied after the
        client had given up on it and created the run again (MLflow's create_run has no idempotency key)."""
        candidates: dict[str, list] = {}
        experiment_id = self.experiment_of(parent_run_id)
        for role in ("trial", "reseed"):
            for run in self.child_runs(experiment_id, role=role):
                candidates.setdefault(run.data.tags[TRIAL_ID], []).append(run)
        runs = {}
        for trial_id, found in candidates.items():
            kept = max(found, key=lambda r: (len(r.data.metrics), len(r.data.params), r.info.start_time))
            for run in found:
                if run is not kept and not run.data.metrics:
                    self.client.delete_run(run.info.run_id)
            runs[trial_id] = kept.info.run_id
        return runs

    def experiment_of(self, parent_run_id: str) -> str:
        if parent_run_id not in self._experiment_ids:
            self._experiment_ids[parent_run_id] = self.client.get_run(parent_run_id).info.experiment_id
        return self._experiment_ids[parent_run_id]

    def log_params(self, run_id: str, values: dict) -> None:
        """A nested dict as flat params, within MLflow's limits (250-char keys, 6000-char values, 100 a batch)."""
        params = [Param(k[:250], str(v)[:6000]) for k, v in flatten(values).items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(run_id, params=params[i : i + 100])

    def log_metrics(
        self, run_id: str, metrics: dict[str, float], step: int, tags: dict | None = None, timestamp: int | None = None
    ) -> None:
        """Metrics at `step` (and tags) in one write, stamped `timestamp` (ms; default now): MLflow keeps a metric
        logged again with the same key, value, step and timestamp once."""
        timestamp = timestamp or int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), timestamp, step) for k, v in metrics.items()],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        )

    def finish_trial(self, run_id: str, status: str, reason: str | None = None) -> None:
        """End a trial's run with `status`, tagged with the `reason` it failed; one that ends well after an earlier
        failure (a resumed or retried trial) loses that failure's tag."""
        if reason:
            self.client.set_tag(run_id, "error", reason[:5000])
        else:
            self.drop_error(run_id)
        self.client.set_terminated(run_id, status)

    def drop_error(self, run_id: str) -> None:
        """Remove the `error` tag an earlier failure of the trial left, if any."""
        if "error" in self.client.get_run(run_id).data.tags:
            self.client.delete_tag(run_id, "error")

    def stop_trial(self, run_id: str, epoch: int, by: str) -> None:
        """A trial stopped early by the scheduler at `epoch`: tagged stopped, with the epoch, and ended KILLED.
        KILLED, not FINISHED: in MLflow FINISHED means the run did all it set out to do, and its last metrics
        are the result; a stopped trial's are one rung's low-fidelity values, and a filter on FINISHED runs (the
        UI's, or anyone's `search_runs`) must not mix them with fully trained ones. Not FAILED: nothing went
        wrong. samat reads KILLED with samat.status=stopped as `stopped` (KILLED alone is an orphan: `error`)."""
        self.client.log_batch(
            run_id,
            tags=[RunTag(STATUS, STOPPED), RunTag(STOPPED_AT, str(epoch)), RunTag(STOPPED_BY, by)],
        )
        self.drop_error(run_id)
        self.client.set_terminated(run_id, "KILLED")

    def kill_orphans(self, name: str, ran: set[str]) -> None:
        """Mark KILLED the trial runs still running whose Ray trial is not among those that `ran`: after a driver
        crash, Ray proposes again the trials it had started after its last saved state, so the old runs never end."""
        for row in self.load_sweep(name).rows:
            if row.status == "running" and row.trial_id not in ran:
                self.finish_trial(
                    row.run_id,
                    "KILLED",
                    "orphaned: the sweep driver stopped before Ray saved this trial; it was proposed again on resume",
                )

    def update_front(self, name: str) -> SweepRecord:
        """Re-rank every finished trial as MLflow holds them, and record every rank and the hypervolume."""
        return self.write_ranks(self.load_sweep(name), every_rank=True)

    def write_ranks(self, record: SweepRecord, every_rank: bool) -> SweepRecord:
        """Write what changed of a ranked record: the children whose front membership changed (`pareto_front`
        tag, `pareto_rank` metric) and, with `every_rank`, also those whose rank below the front changed (a new
        front point can move hundreds down a rank: while a sweep runs, only membership is kept current); the
        sweep's summary on the parent; the hypervolume with step = number of finished trials. Each row's
        `pareto_rank` metric and `front_tag` are what MLflow holds. The two are checked apart: MLflow commits a
        batch's metrics and tags one after the other, so a driver killed between the two leaves the new rank
        beside the old tag."""
        for row in record.rows:
            stored, new = row.metrics.get(PARETO_RANK), row.rank or 0  # 0: not ranked
            on_front = new == 1
            rank_stale = (
                stored != new
                and (row.rank is not None or stored == 1)  # an unranked row never on the front has no rank to write
                and (every_rank or (stored == 1) != on_front)
            )
            if rank_stale or row.front_tag != on_front:
                self.client.log_batch(
                    row.run_id,
                    metrics=[Metric(PARETO_RANK, new, self.stamp(), 0)],
                    tags=[RunTag(PARETO_FRONT, "true" if on_front else "false")],
                )
                row.metrics[PARETO_RANK], row.front_tag = new, on_front
        summary = record.summary()
        text = json.dumps(dataclasses.asdict(summary))
        if text != self._summaries.get(record.parent_run_id):
            self.client.set_tag(record.parent_run_id, SUMMARY, text)
            self._summaries[record.parent_run_id] = text
        finished = len(record.finished)
        if finished and finished != self.hypervolume_step(record.parent_run_id):  # one point per trial count
            self.log_metrics(
                record.parent_run_id,
                {"hypervolume": summary.hypervolume, "front_size": len(record.front)},
                step=finished,
            )
            self._hypervolume_steps[record.parent_run_id] = finished
        return record

    def stamp(self) -> int:
        """A timestamp (ms) later than any this store gave before: MLflow's latest value of a metric is the one of
        the highest (step, timestamp, value), so ranks logged at one step and one time would read back as the
        largest rank ever logged, not the last."""
        self._clock = max(int(time.time() * 1000), self._clock + 1)
        return self._clock

    def hypervolume_step(self, parent_run_id: str) -> int:
        """The trial count of the last hypervolume logged on the parent: read once, then kept as it is logged."""
        if parent_run_id not in self._hypervolume_steps:
            logged = self.client.get_metric_history(parent_run_id, "hypervolume")
            self._hypervolume_steps[parent_run_id] = max((m.step for m in logged), default=0)
        return self._hypervolume_steps[parent_run_id]

    def log_front_artifacts(self, record: SweepRecord, html: bool = False, folder_name: str = "front") -> None:
        """The front table (parquet and JSON) and plot (PNG, and with `html` the interactive plotly page), in the
        parent run's artifact folder `folder_name`."""
        with tempfile.TemporaryDirectory() as folder:
            rows = record.table(front_only=True)
            for file in (Path(FRONT_TABLE).name, "front.json"):
                write_table(rows, Path(folder) / file)
            for file in ("front.png", "front.html") if html else ("front.png",):
                write_plot(record, Path(folder) / file)
            self.client.log_artifacts(record.parent_run_id, folder, folder_name)

    def close_sweep(self, name: str, finished: bool) -> SweepRecord:
        """Every rank, the front's artifacts, the whole trial table (`trials/trials.parquet`: what `samat frontier
        export` reads of a closed sweep), the curves; then the status, and the indexes of a sqlite store (see
        analysis.stores). A trial's empty extra runs go first (see trial_runs)."""
        self.trial_runs(self.sweep_parent(name)[1].info.run_id)
        record = self.update_front(name)
        self.log_front_artifacts(record, html=True)
        with tempfile.TemporaryDirectory() as folder:
            write_table(record.table(), Path(folder) / Path(TRIALS_TABLE).name)
            self.client.log_artifacts(record.parent_run_id, folder, str(Path(TRIALS_TABLE).parent))
        self.log_curves(record)
        self.client.set_tag(record.parent_run_id, STATUS, "finished" if finished else "interrupted")
        self.client.set_terminated(record.parent_run_id, "FINISHED" if finished else "KILLED")
        self.list_sweeps()  # the last reads: `samat frontier list`, `show` and `export` can then read the indexes
        self.load_front(name)
        return record

    def log_curves(self, record: SweepRecord) -> None:
        """The paper's figure (test accuracy against radius; `samat frontier plot --curves`) and the per-method
        summary under `curves/` on the parent run, when the final attacks give two or more radii."""
        with tempfile.TemporaryDirectory() as folder:
            try:
                for file in ("robustness_curves.png", "robustness_curves.html"):
                    write_curves(record, Path(folder) / file)
            except ValueError:  # the spec's final attacks give no curve
                return
            write_table(method_summary(record), Path(folder) / "method_summary.json")
            self.client.log_artifacts(record.parent_run_id, folder, "curves")

    def record_audit(
        self, run_id: str, accuracies: dict[str, float], verdict: str, reasons: list[str], pgd_unreliable_at: list[str]
    ) -> None:
        """A trial's audit: `audit/<attack>` metrics, the tag `audit` = passed | suspect with its reasons, and
        `audit.pgd_objective` = reliable | unreliable at <radii> (PGD-10 far above AutoAttack there)."""
        reason = "; ".join(reasons)[:5000] or "every check passed"
        pgd = f"unreliable at {', '.join(pgd_unreliable_at)}" if pgd_unreliable_at else "reliable"
        self.log_metrics(
            run_id,
            {f"{AUDIT}/{k}": v for k, v in accuracies.items()},
            step=0,
            tags={AUDIT: verdict, f"{AUDIT}.reason": reason, f"{AUDIT}.pgd_objective": pgd},
        )

    def record_audited_front(self, audited: SweepRecord, searched: SweepRecord) -> None:
        """The audited front beside the search's: artifacts under `audit/`, its hypervolume, and the hypervolume
        of the same points as the search measured them on the test images (one reference point for both)."""
        self.log_front_artifacts(audited, html=True, folder_name=AUDIT)
        reference = common_reference(audited, searched)
        self.log_metrics(
            audited.parent_run_id,
            {
                f"{AUDIT}/hypervolume": sweep_hypervolume(audited.finished, audited.directions, reference),
                f"{AUDIT}/search_hypervolume": sweep_hypervolume(searched.finished, searched.directions, reference),
                f"{AUDIT}/front_size": len(audited.front),
            },
            step=0,
        )

    # ---- reading ------------------------------------------------------------------------------------------

    def parent_run(self, experiment_id: str):
        """The sweep's parent run in an experiment, or None (an experiment samat did not make)."""
        parents = self.client.search_runs([experiment_id], f"tags.`{ROLE}` = 'sweep'", max_results=1)
        return parents[0] if parents else None

    def sweep_spec(self, name: str) -> tuple[dict, str]:
        """The spec a sweep ran with (its `spec.yaml` artifact) and the folder or URI where Ray keeps its trials."""
        _, parent = self.sweep_parent(name)
        path = parent.data.tags.get(EXPERIMENT_PATH)
        if not path:
            raise TrackingError(
                f"sweep {name!r} was recorded without its Ray folder (an older samat): audit and reseed need it"
            )
        with tempfile.TemporaryDirectory() as folder:
            local = self.client.download_artifacts(parent.info.run_id, "spec.yaml", folder)
            return yaml.safe_load(Path(local).read_text()), path

    def closed_table(self, name: str, front_only: bool, folder: str) -> Path | None:
        """A closed sweep's export rows as its close wrote them (`front/front.parquet`, `trials/trials.parquet`),
        downloaded into `folder`; None for a sweep still running (or killed), or closed by an older samat."""
        _, parent = self.sweep_parent(name)
        if parent.data.tags.get(STATUS) not in CLOSED:
            return None
        try:
            return Path(
                self.client.download_artifacts(parent.info.run_id, FRONT_TABLE if front_only else TRIALS_TABLE, folder)
            )
        except MlflowException:
            return None

    def export_trials(self, name: str, output: Path, front_only: bool, page_size: int = PAGE) -> int:
        """Write the sweep's export rows (every trial, or its front) to `output`, as `load_sweep(name).table()`
        gives them; returns how many. A closed sweep's are the table its close kept. A running sweep's trials are
        read `page_size` runs at a time (a progress bar counts them against the last summary's count), each page
        kept on disk as it comes, with only the objectives in memory: all of them rank each trial. Then they are
        written in the order a full read gives, a page at a time."""
        with tempfile.TemporaryDirectory() as folder:
            kept = self.closed_table(name, front_only, folder)
            if kept:
                return copy_table(kept, output)
        experiment, parent = self.sweep_parent(name)
        directions = self.empty_record(experiment, parent).directions
        summary = parent.data.tags.get(SUMMARY)
        total = SweepSummary.from_json(summary).trials if summary else None
        ranked, params = [], set()  # per trial in the order read: its objectives alone; every parameter's name
        with Spill(output.parent) as spill:
            with progress_bar(f"reading the trials of {name}", total) as advance:
                for page in self.child_run_pages(experiment.experiment_id, page_size=page_size):
                    for run in page:
                        row = self.trial_row(run, directions)
                        spill.add(dataclasses.asdict(dataclasses.replace(row, metrics=row.test_values)))
                        ranked.append(TrialRow(row.trial_id, row.status, {}, row.objectives))
                        params |= row.params.keys()
                    advance(len(page))
            rank_rows(ranked, directions)
            position = {id(row): i for i, row in enumerate(ranked)}
            rows = sorted(ranked, key=trial_order)
            written = [position[id(row)] for row in (front(rows, directions) if front_only else rows)]
            param_names = sorted(params - {"method", "model"})

            def pages():
                for start in range(0, len(written), page_size):
                    page = written[start : start + page_size]
                    yield [TrialRow(**spill[i] | {"rank": ranked[i].rank}).export(param_names) for i in page]

            return write_pages(pages, output)

    def sweep_parent(self, name: str):
        experiment = self.client.get_experiment_by_name(name)
        parent = experiment and self.parent_run(experiment.experiment_id)
        if not parent:
            known = ", ".join(s["name"] for s in self.list_sweeps()) or "none yet"
            raise TrackingError(f"no sweep named {name!r} at {self.tracking_uri} (sweeps there: {known})")
        return experiment, parent

    def load_sweep(self, name: str) -> SweepRecord:
        """The sweep with every trial, ranked afresh from the values MLflow holds."""
        experiment, parent = self.sweep_parent(name)
        record = self.empty_record(experiment, parent)
        record.rows = [self.trial_row(run, record.directions) for run in self.child_runs(experiment.experiment_id)]
        self.add_reseeds(record)
        rank_rows(record.rows, record.directions)
        record.rows.sort(key=trial_order)
        return record

    def load_front(self, name: str) -> tuple[SweepRecord, SweepSummary]:
        """The sweep's front as last ranked (its rows alone, with their reseeds, and the stopped trials if at most
        LISTED_STOPPED), and its summary: what `samat frontier show` needs, reading a few runs at any sweep size.
        A sweep not ranked yet, or recorded by an older samat, has no summary: then every trial is read. A sqlite
        store keeps what was read in the sweep's front index (see analysis.stores.read_front_index)."""
        version = database_version(self.tracking_uri)
        experiment, parent = self.sweep_parent(name)
        tag = parent.data.tags.get(SUMMARY)
        if tag is None:
            record = self.load_sweep(name)
            summary = record.summary()
        else:
            summary = SweepSummary.from_json(tag)
            record = self.empty_record(experiment, parent)
            for run in self.child_runs(experiment.experiment_id, f"tags.{PARETO_FRONT} = 'true'"):
                record.rows.append(self.trial_row(run, record.directions))
                record.rows[-1].rank = 1
            if summary.stopped <= LISTED_STOPPED:
                stopped = self.child_runs(experiment.experiment_id, f"tags.`{STATUS}` = '{STOPPED}'")
                record.rows += [self.trial_row(run, record.directions) for run in stopped]
            self.add_reseeds(record)
        write_front_index(self.tracking_uri, record, summary, parent.info.artifact_uri, version)
        return record, summary

    def empty_record(self, experiment, parent) -> SweepRecord:
        """The sweep's record without its trials."""
        directions = dict(json.loads(parent.data.tags["samat.objectives"]))
        return SweepRecord(
            experiment.name,
            experiment.experiment_id,
            parent.info.run_id,
            parent.data.tags.get(STATUS, parent.info.status.lower()),
            directions,
            json.loads(parent.data.tags.get("samat.reference", "null")) or [None] * len(directions),
        )

    def add_reseeds(self, record: SweepRecord) -> None:
        for run in self.child_runs(record.experiment_id, role="reseed"):
            record.reseeds.setdefault(run.data.tags.get(RESEED_OF), []).append(self.trial_row(run, record.directions))

    def trial_row(self, run, directions: dict[str, str]) -> TrialRow:
        """A child run as a trial row (the same type Ray's results are read into)."""
        tags, metrics = run.data.tags, run.data.metrics
        stopped = tags.get(STATUS) == STOPPED
        return TrialRow(
            trial_id=tags.get(TRIAL_ID),
            run_id=run.info.run_id,
            status=STOPPED if stopped else RUN_STATUS.get(run.info.status, "running"),
            params=json.loads(tags.get(PARAMS_TAG, "{}")),
            objectives={m: metrics.get(m) for m in directions},
            metrics=metrics,
            error=tags.get("error"),
            stopped_at=int(tags[STOPPED_AT]) if stopped and tags.get(STOPPED_AT) else None,
            front_tag=tags.get(PARETO_FRONT) == "true",
            audit=audit_verdict(tags),
        )

    def child_runs(self, experiment_id: str, where: str = "", role: str = "trial") -> list:
        """The sweep's child runs of one role, `trial` (the search's) or `reseed` (its front's configurations
        trained again with other seeds), that also match the MLflow filter `where` if given."""
        return [run for page in self.child_run_pages(experiment_id, where, role) for run in page]

    def child_run_pages(self, experiment_id: str, where: str = "", role: str = "trial", page_size: int = PAGE):
        """child_runs, `page_size` runs at a time, each page as MLflow gives it."""
        token = None
        query = f"tags.`{ROLE}` = '{role}'" + (f" and {where}" if where else "")
        while True:
            page = self.client.search_runs([experiment_id], query, max_results=page_size, page_token=token)
            yield page
            token = page.token
            if not token:
                return

    def list_sweeps(self) -> list[dict]:
        """Every sweep in the store (name, status, trial counts, hypervolume), oldest first. A sqlite store keeps
        the list in an index beside the database, refreshed here (see analysis.stores.read_sweep_index)."""
        version = database_version(self.tracking_uri)
        sweeps = self.read_sweeps()
        write_sweep_index(self.tracking_uri, sweeps, version)
        return sweeps

    def read_sweeps(self) -> list[dict]:
        out = []
        for experiment in self.client.search_experiments():
            parent = self.parent_run(experiment.experiment_id)
            if not parent:
                continue
            tag = parent.data.tags.get(SUMMARY)
            summary = SweepSummary.from_json(tag) if tag else self.load_sweep(experiment.name).summary()
            out.append(
                {
                    "name": experiment.name,
                    **{k: getattr(summary, k) for k in ("trials", "finished", "stopped", "failed")},
                    "status": parent.data.tags.get(STATUS, parent.info.status.lower()),
                    "hypervolume": summary.hypervolume if summary.ranked else None,
                    "start_time": parent.info.start_time,
                }
            )
        return sorted(out, key=lambda s: s["start_time"] or 0)
