"""A sweep's MLflow writes, kept on the driver's disk whenever the tracking store does not take them.

The sweep's recorder hands every write to an `Outbox`. While the store answers, a write goes straight through.
When one fails (a server stopped or unreachable, a database that cannot be written), it and every later write
are appended to a JSON-lines file beside the sweep's Optuna study (`mlflow-pending.jsonl`, fsynced), training
goes on, one warning line says so, and the outbox tries again every `RETRY_S` seconds, in order. `samat sweep
--resume` and `samat frontier sync` write what is left.

Writes name a trial by its Ray trial id, not by an MLflow run id, so a trial whose run could not even be created
is recorded once the store answers. Every write can be repeated: a trial's run is looked up by its trial id
(among the sweep's runs, read once per driver and again after any failure) before one is created, finishing a
run twice changes nothing, and an epoch is logged only after the run's history was read for it (once per trial
and driver, and again after any failure), so an epoch already there is skipped; an epoch's metrics carry the
time the recorder took them, so a request the store applies after the client gave up on it (a hung server that
wakes up) and its repetition are one metric in MLflow, which keeps identical metrics once.
MLflow ends up with every trial and every epoch once, whether a write failed before or after the store
committed it, and whether Tune replayed a trial's last result on resume. MLflow commits a run before its params
and a batch's metrics before its tags, so a write may also have been taken in part: a trial's run found again
gets the params it lacks, and an epoch written again its tags.

One sweep's writes may come from several processes at once: its driver, a reseed of it (`samat frontier
reseed`, which keeps its writes in the same file), and `samat frontier sync`. Each keeps, writes out and writes
through under one lock (`mlflow-pending.jsonl.lock`, see `Outbox.locked`), so no kept write is lost and no trial
gets two runs, and forgets what it read of the store when another process wrote to it since. A driver owns the
file while it lives (`mlflow-pending.jsonl.drivers`, see `Outbox.claim`): `samat frontier sync` refuses then."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
import uuid
import weakref
from pathlib import Path

from filelock import FileLock

from analysis.tracking import ROLE, RUN_STATUS, STOPPED, SweepStore
from analysis.trials import SweepRecord, TrialRow, rank_rows

PENDING_FILE = "mlflow-pending.jsonl"
RETRY_S = 10.0  # while behind: how often the outbox tries the store again
EPOCH_KEY = "epoch"  # the metric every epoch's result holds (trainables.vocabulary.EPOCH)


def pending_path(study_dir: str | Path) -> Path:
    return Path(study_dir) / PENDING_FILE


def drivers_path(path: Path) -> Path:
    return path.with_name(path.name + ".drivers")


def driven(path: str | Path) -> bool:
    """Whether a live driver owns the kept writes at `path` (see `Outbox.claim`), and so writes them itself."""
    try:
        fd = os.open(drivers_path(Path(path)), os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class Outbox:
    """The MLflow writes of one sweep (its parent run `parent_run_id` at `tracking_uri`), in order, durably. A
    `driver`'s outbox (the sweep's or a reseed's, not `samat frontier sync`'s) owns the kept writes while its
    process lives."""

    def __init__(self, tracking_uri: str, sweep_name: str, parent_run_id: str, path: str | Path, driver: bool = True):
        self.tracking_uri, self.sweep_name, self.parent_run_id = tracking_uri, sweep_name, parent_run_id
        self.path = Path(path)
        self._reset(driver)

    def _reset(self, driver: bool) -> None:
        self.lock = FileLock(self.path.with_name(self.path.name + ".lock"))
        self.writer = uuid.uuid4().hex.encode()  # this outbox's name in the lock file: see locked
        self.forget()
        self.next_try = 0.0
        self.warned = False
        if driver:
            self.claim()

    def __getstate__(self):  # Tune pickles the recorder, and this, with the experiment: names only
        return {k: self.__dict__[k] for k in ("tracking_uri", "sweep_name", "parent_run_id", "path")}

    def __setstate__(self, state):  # Tune restores the recorder in the driver that resumes the sweep
        self.__dict__.update(state)
        self._reset(driver=True)

    def forget(self) -> None:
        """Drop what was read of the store: a write may have failed after the store took it, or another process
        wrote since, so it is read again before the next write that needs it."""
        self._store: SweepStore | None = None
        self.runs: dict[str, str] | None = None  # Ray trial id -> MLflow run id: see known_runs
        self.record: SweepRecord | None = None  # the sweep as MLflow holds it, read at the first re-rank
        self.rows: dict[str, TrialRow] = {}  # its rows by Ray trial id
        self.last_epoch: dict[str, int] = {}  # Ray trial id -> last epoch its run holds, read from MLflow

    def claim(self) -> None:
        """Own the kept writes while this process lives: a shared lock on the drivers file (a sweep and its reseed
        may run at once), which the kernel lets go of when the process ends, however it ends; `driven` tests for
        it. Let go of when this outbox is collected."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(drivers_path(self.path), os.O_RDONLY | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_SH)
        weakref.finalize(self, os.close, fd)

    @contextlib.contextmanager
    def locked(self):
        """Hold the kept writes alone: every outbox of the sweep, in any process, keeps, writes out and writes
        through under this lock. The lock file names the outbox that held it last; when that is another one
        (another process's, or the other of this driver's: Tune restores the recorder's on resume), what this one
        read of the store may be stale (a run created, an epoch logged, a rank written), so it is forgotten."""
        with self.lock:
            fd = os.open(self.lock.lock_file, os.O_RDWR)
            try:
                if os.pread(fd, len(self.writer), 0) != self.writer:
                    self.forget()
                    os.pwrite(fd, self.writer, 0)  # in place: a full disk cannot empty the file
            finally:
                os.close(fd)
            yield

    @property
    def store(self) -> SweepStore:
        if self._store is None:
            self._store = SweepStore(self.tracking_uri)
        return self._store

    # ---- what the recorder writes ---------------------------------------------------------------------------

    def trial(self, trial_id: str, config: dict, params: dict, tags: dict) -> None:
        self.submit({"op": "trial", "trial_id": trial_id, "config": config, "params": params, "tags": tags})

    def epoch(self, trial_id: str, metrics: dict[str, float], step: int, tags: dict) -> None:
        self.submit(
            {
                "op": "epoch",
                "trial_id": trial_id,
                "metrics": metrics,
                "step": step,
                "tags": tags,
                "time": int(time.time() * 1000),  # written again, the same metrics: MLflow keeps them once
            }
        )

    def finish(self, trial_id: str, status: str, reason: str | None) -> None:
        self.submit({"op": "finish", "trial_id": trial_id, "status": status, "reason": reason})

    def stop(self, trial_id: str, epoch: int, by: str) -> None:
        self.submit({"op": "stop", "trial_id": trial_id, "epoch": epoch, "by": by})

    def front(self) -> None:
        self.submit({"op": "front"})

    def orphans(self, ran: list[str]) -> None:
        self.submit({"op": "orphans", "ran": ran})

    def close(self, finished: bool) -> None:
        self.submit({"op": "close", "finished": finished})

    # ---- delivery ---------------------------------------------------------------------------------------------

    @property
    def behind(self) -> bool:
        return self.path.is_file() and self.path.stat().st_size > 0

    def submit(self, op: dict) -> None:
        """Write now if nothing is waiting and the store takes it; else keep it, after what is waiting."""
        with self.locked():
            if not self.behind:
                try:
                    self.apply(op)
                    return
                except Exception as e:  # noqa: BLE001 - whatever the store's failure, training must go on
                    try:
                        self.keep(op)  # a disk that cannot take it either stops the sweep (OSError) here
                    except OSError:
                        self.fell_behind(e, warn=False)
                        raise
                    self.fell_behind(e)
                    return
            self.keep(op)
            self.retry()

    def keep(self, op: dict) -> None:
        """Append `op` durably; a write the disk refuses (full, read-only) raises and leaves no half line."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(op) + "\n").encode()
        with open(self.path, "ab", buffering=0) as f:
            size = f.seek(0, os.SEEK_END)
            try:
                written = 0
                while written < len(line):
                    written += f.write(line[written:])
                os.fsync(f.fileno())
            except OSError:
                f.truncate(size)
                raise

    def retry(self, now: bool = False) -> int:
        """Write what is waiting, in order, if RETRY_S passed since the last try (or `now`); stop at the first
        failure. Returns how many writes still wait."""
        if not self.behind or (not now and time.monotonic() < self.next_try):
            return self.pending()
        with self.locked():
            if not self.behind:  # another process wrote it out meanwhile
                return 0
            ops = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
            last_front = max((i for i, op in enumerate(ops) if op["op"] == "front"), default=None)
            ops = [op for i, op in enumerate(ops) if op["op"] != "front" or i == last_front]  # one re-rank does
            done = 0
            try:
                for op in ops:
                    self.apply(op)
                    done += 1
            except Exception as e:  # noqa: BLE001
                self.fell_behind(e)
            left = ops[done:]
            if left:
                temporary = self.path.with_suffix(".tmp")
                temporary.write_text("".join(json.dumps(op) + "\n" for op in left))
                os.replace(temporary, self.path)  # what was written goes, atomically: a crash repeats, never loses
            else:
                self.path.unlink()
                if self.warned:
                    print(
                        f"samat: MLflow store {self.tracking_uri} answers again: all {done} kept writes are in",
                        file=sys.stderr,
                    )
                self.warned = False
            return len(left)

    def pending(self) -> int:
        return sum(1 for line in self.path.read_text().splitlines() if line.strip()) if self.behind else 0

    def fell_behind(self, error: Exception, warn: bool = True) -> None:
        self.next_try = time.monotonic() + RETRY_S
        self.forget()
        if warn and not self.warned:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
            print(
                f"samat: MLflow store {self.tracking_uri} is not taking writes ({first}); training goes on, and "
                f"what it does not take is kept in {self.path} and written when it answers (or by `samat "
                f"frontier sync {self.sweep_name}`)",
                file=sys.stderr,
            )
            self.warned = True

    def apply(self, op: dict) -> None:
        kind = op["op"]
        if kind in ("front", "orphans", "close"):  # the sweep's: re-rank, end orphaned runs, close the parent run
            if kind == "front":
                self.rerank()
            elif kind == "orphans":
                self.store.kill_orphans(self.sweep_name, set(op["ran"]))
            else:
                self.store.close_sweep(self.sweep_name, op["finished"])
            return
        trial_id = op["trial_id"]
        if kind == "trial":
            runs = self.known_runs()
            if trial_id not in runs:
                runs[trial_id] = self.store.create_trial_run(
                    self.parent_run_id, trial_id, op["config"], op["params"], op["tags"]
                )
                self.last_epoch[trial_id] = -1  # a run just created holds no epoch
            elif not self.store.client.get_run(runs[trial_id]).data.params:  # found again (a resume, a retry),
                self.store.log_params(runs[trial_id], op["config"])  # made by a driver that died before its params
            if op["tags"].get(ROLE, "trial") == "trial":  # the search's trials are ranked; reseeds are not
                self.note(trial_id, params=op["params"], new=True)
            return
        run_id = self.run_of(trial_id)
        if kind == "epoch":
            if trial_id not in self.last_epoch:
                history = self.store.client.get_metric_history(run_id, EPOCH_KEY)
                self.last_epoch[trial_id] = max((m.step for m in history), default=-1)
            if op["step"] > self.last_epoch[trial_id]:
                self.store.log_metrics(run_id, op["metrics"], op["step"], op["tags"], op.get("time"))
                self.last_epoch[trial_id] = op["step"]
            elif op["step"] == self.last_epoch[trial_id] and op["tags"]:  # the epoch again (a retry, Tune's replay):
                self.store.log_metrics(run_id, {}, op["step"], op["tags"])  # MLflow commits metrics, then tags
            self.note(trial_id, metrics=op["metrics"])
        elif kind == "finish":
            self.store.finish_trial(run_id, op["status"], op["reason"])
            self.note(trial_id, status=RUN_STATUS[op["status"]], error=op["reason"])
        elif kind == "stop":
            self.store.stop_trial(run_id, op["epoch"], op["by"])
            self.note(trial_id, status=STOPPED, stopped_at=op["epoch"])

    # ---- the front, kept in memory ----------------------------------------------------------------------------

    def note(self, trial_id: str, params=None, metrics=None, new: bool = False, **changes) -> None:
        """Keep the in-memory record (once read) up to date with a write MLflow took: `new` adds the row of a
        search trial whose run was just found or created; writes for runs not in the record (reseeds) are
        left out."""
        if self.record is None:
            return
        row = self.rows.get(trial_id)
        if row is None and not new:
            return
        if row is None:
            row = self.rows[trial_id] = TrialRow(
                trial_id, "running", params or {}, {}, run_id=self.known_runs()[trial_id]
            )
            self.record.rows.append(row)
        if metrics:
            row.metrics |= metrics
            row.objectives = {m: row.metrics.get(m) for m in self.record.directions}
        for key, value in changes.items():
            setattr(row, key, value)

    def rerank(self) -> None:
        """Rank the sweep's trials and write which ones joined or left the front, the summary and the hypervolume
        (every rank is written when the sweep closes). The sweep is read from MLflow once per driver (and again
        after a failed write, or another process's writes); after that the record follows the writes this outbox
        makes, so a re-rank reads nothing back."""
        if self.record is None:
            self.record = self.store.load_sweep(self.sweep_name)
            self.rows = {row.trial_id: row for row in self.record.rows}
        rank_rows(self.record.rows, self.record.directions)
        self.store.write_ranks(self.record, every_rank=False)

    def known_runs(self) -> dict[str, str]:
        """The sweep's runs by Ray trial id: read once per driver (and again after a failed write, or another
        process's writes), then kept as this outbox creates them, so a new trial's run is created without a search
        (one search per trial grew with the sweep's size)."""
        if self.runs is None:
            self.runs = self.store.trial_runs(self.parent_run_id)
        return self.runs

    def run_of(self, trial_id: str) -> str:
        """The trial's run: created by its `trial` write, which comes first."""
        run_id = self.known_runs().get(trial_id)
        if run_id is None:
            raise LookupError(f"no MLflow run for trial {trial_id} in sweep {self.sweep_name}")
        return run_id
