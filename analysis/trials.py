"""One typed row per trial, read the same way from Ray's result grid (as a sweep ends) and from MLflow (any
time): status, searched parameters, objective values keyed by name, Pareto rank. Ranking, front order and
export rows are defined on it once."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from analysis.pareto import hypervolume, pareto_ranks
from trainables.vocabulary import EPOCHS, TEST_PREFIX, metric_on_test

TEST_FIGURES = (TEST_PREFIX, "audit/")  # objective names that are test figures already: the audited front's


def is_test_figure(metric: str) -> bool:
    return metric.startswith(TEST_FIGURES)


LISTED_STOPPED = 20  # stopped trials are named up to this many, else counted by epoch
Status = Literal["complete", "stopped", "running", "unfinished", "error"]


@dataclass
class TrialRow:
    trial_id: str
    # complete | stopped (early, by the scheduler: never ranked) | running (MLflow, still training) | unfinished
    # (Ray, interrupted) | error
    status: Status
    params: dict[str, Any]  # model, method and the searched values (method ones without their `method.` prefix)
    objectives: dict[str, float | None]  # objective metric -> last value, in the sweep's objective order
    metrics: dict[str, Any] = field(default_factory=dict)  # every last reported metric
    error: str | None = None
    run_id: str | None = None  # the trial's MLflow run
    path: str | None = None  # the trial's Ray folder
    rank: int | None = None  # 1 = on the Pareto front; None = not ranked (failed, stopped, unfinished)
    stopped_at: int | None = None  # the epoch a stopped trial was stopped at (its objectives are that epoch's)
    front_tag: bool = False  # MLflow's `pareto_front` tag on the trial's run is "true" (rows read from MLflow)
    audit: str | None = None  # `samat frontier audit`'s verdict on the trial (passed | suspect), if audited

    @property
    def method(self) -> str | None:
        return self.params.get("method")

    @property
    def model(self) -> str | None:
        return self.params.get("model")

    @property
    def test_values(self) -> dict[str, float | None]:
        """The objectives' metrics on the test images (reported once, after the last epoch); none for objectives
        that are test figures already (an audited front's)."""
        return {
            metric_on_test(m): self.metrics.get(metric_on_test(m)) for m in self.objectives if not is_test_figure(m)
        }

    @property
    def rankable(self) -> bool:
        """Only a trial that trained its full budget is ranked: a stopped one's values are low-fidelity."""
        return self.status == "complete" and all(v is not None and math.isfinite(v) for v in self.objectives.values())

    def export(self, param_names: list[str]) -> dict[str, Any]:
        """A flat record for tables and files: ids, status, method, model, params, objectives (validation), the
        same metrics on the test images (`test/...`), rank, front flag."""
        return {
            "trial_id": self.trial_id,
            "run_id": self.run_id,
            "status": self.status,
            "stopped_at_epoch": self.stopped_at,
            "method": self.method,
            "model": self.model,
            **{name: self.params.get(name) for name in param_names},
            **self.objectives,
            **self.test_values,
            "pareto_rank": self.rank,
            "pareto_front": self.rank == 1,
        }


def stopped_epoch(metrics: dict, planned_epochs: int | None) -> int | None:
    """The epoch a trial was stopped at by a scheduler, from its last result: it reports fewer `epochs` than its
    config gave it, and no `failure`. None if it trained them all, failed, or `planned_epochs` is unknown. (A
    trial merely interrupted looks the same: Ray's `done` in its result tells the two apart.)"""
    epochs = metrics.get(EPOCHS)
    if planned_epochs is None or metrics.get("failure") or not isinstance(epochs, (int, float)):
        return None
    return int(epochs) if epochs < planned_epochs else None


def stopped_counts(stopped: list[TrialRow]) -> dict[str, int]:
    """How many trials were stopped at each epoch, by epoch (as text: JSON keys)."""
    return {str(e): n for e, n in Counter(sorted(r.stopped_at or 0 for r in stopped)).items()}


def rank_rows(rows: list[TrialRow], directions: dict[str, str]) -> list[TrialRow]:
    """Set `rank` on every row: non-dominated sorting of the rankable rows; the others get None and never shape
    the front. `directions` maps each objective to "max" or "min"."""
    usable = [r for r in rows if r.rankable]
    for row in rows:
        row.rank = None
    for row, rank in zip(
        usable, pareto_ranks([objective_values(r, directions) for r in usable], list(directions.values()))
    ):
        row.rank = rank
    return rows


def objective_values(row: TrialRow, directions: dict[str, str]) -> list[float | None]:
    """The row's objective values in the order of `directions` (for the numeric code in analysis.pareto)."""
    return [row.objectives.get(metric) for metric in directions]


def front(rows: list[TrialRow], directions: dict[str, str]) -> list[TrialRow]:
    """The ranked rows on the front (rank 1), best first by the first objective."""
    first, direction = next(iter(directions.items()))
    return sorted((r for r in rows if r.rank == 1), key=lambda r: r.objectives[first], reverse=direction == "max")


def export_rows(rows: list[TrialRow], all_rows: list[TrialRow] | None = None) -> list[dict[str, Any]]:
    """Export records of `rows`, with a column for every parameter any of `all_rows` (default: `rows`) has."""
    param_names = sorted({k for r in (all_rows or rows) for k in r.params} - {"method", "model"})
    return [r.export(param_names) for r in rows]


def format_params(params: dict) -> str:
    """The searched values other than model and method, compactly: `lr=0.0523 rho=0.1`."""
    return " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in params.items()
        if k not in ("model", "method")
    )


SEPARATION_ALPHA = 0.05  # the significance level at which reseeded front neighbours count as told apart


@dataclass(frozen=True)
class SeedStats:
    mean: float
    std: float  # sample standard deviation (n - 1); 0 for one seed
    n: int
    values: tuple[float, ...] = ()

    @classmethod
    def of(cls, values: list[float]) -> SeedStats:
        n = len(values)
        mean = sum(values) / n if n else math.nan
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
        return cls(mean, std, n, tuple(values))

    def __str__(self) -> str:
        return "-" if not self.n else f"{self.mean:.4f} ± {self.std:.4f}" if self.n > 1 else f"{self.mean:.4f}"


def differ(a: SeedStats, b: SeedStats, alpha: float = SEPARATION_ALPHA) -> bool:
    """Whether Welch's t-test (unequal variances) rejects equal means of the two samples at level `alpha`. Two
    samples without spread differ exactly when their means do."""
    from scipy.stats import ttest_ind  # noqa: PLC0415 - ~0.5 s to import: only a reseeded front pays it

    if a.std == b.std == 0:
        return a.mean != b.mean
    return bool(ttest_ind(a.values, b.values, equal_var=False).pvalue < alpha)


@dataclass
class SweepSummary:
    """A sweep in figures, kept on its parent run at every re-rank so that listing sweeps and showing a front
    read no trial runs: trial counts by status, how many are ranked, the hypervolume, and the epochs stopped
    trials were stopped at (epoch -> trials)."""

    trials: int
    finished: int
    stopped: int
    failed: int
    ranked: int
    hypervolume: float
    stopped_at: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str) -> SweepSummary:
        """Read back as written: a field a later samat adds is left out, one an older one lacked takes its
        default."""
        values = json.loads(text)
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})


@dataclass
class SweepRecord:
    """A sweep as read back from MLflow: its objectives (metric -> direction) and one row per trial."""

    name: str
    experiment_id: str
    parent_run_id: str
    status: str
    directions: dict[str, str]
    reference: list[float | None]
    rows: list[TrialRow] = field(default_factory=list)
    reseeds: dict[str, list[TrialRow]] = field(default_factory=dict)  # trial id -> its runs with other seeds

    @property
    def objectives(self) -> list[str]:
        return list(self.directions)

    @property
    def front(self) -> list[TrialRow]:
        return front(self.rows, self.directions)

    @property
    def finished(self) -> list[TrialRow]:
        return [r for r in self.rows if r.rank is not None]

    @property
    def stopped(self) -> list[TrialRow]:
        """Trials the scheduler stopped early: kept apart, never on the front nor in the hypervolume."""
        return [r for r in self.rows if r.status == "stopped"]

    def hypervolume(self) -> float:
        return sweep_hypervolume(self.finished, self.directions, self.reference)

    def summary(self) -> SweepSummary:
        stopped = self.stopped
        return SweepSummary(
            trials=len(self.rows),
            finished=sum(r.status == "complete" for r in self.rows),
            stopped=len(stopped),
            failed=sum(r.status == "error" for r in self.rows),
            ranked=len(self.finished),
            hypervolume=self.hypervolume(),
            stopped_at=stopped_counts(stopped),
        )

    def seed_stats(self, row: TrialRow) -> dict[str, SeedStats]:
        """Each objective over the trial's finished reseeds alone: mean, sample std, number of seeds. The trial's
        own seed is left out: the search chose the trial for its values there, so they are biased upward (the
        winner's curse), while the new seeds' are not."""
        runs = [r for r in self.reseeds.get(row.trial_id, []) if r.status == "complete"]
        return {
            m: SeedStats.of([r.objectives[m] for r in runs if r.objectives.get(m) is not None]) for m in self.directions
        }

    def inseparable(self) -> dict[str, str]:
        """Front points that their new seeds cannot tell from their neighbour along the front: with at least 2 new
        seeds each, Welch's t-test finds no objective in which their means differ at SEPARATION_ALPHA. Maps trial
        id -> the neighbour's."""
        front, out = self.front, {}
        for a, b in zip(front, front[1:]):
            sa, sb = self.seed_stats(a), self.seed_stats(b)
            seeded = min(s.n for s in (*sa.values(), *sb.values())) > 1
            if seeded and not any(differ(sa[m], sb[m]) for m in sa):
                out.setdefault(a.trial_id, b.trial_id)
                out.setdefault(b.trial_id, a.trial_id)
        return out

    def table(self, front_only: bool = False) -> list[dict]:
        return export_rows(self.front if front_only else self.rows, self.rows)


def sweep_hypervolume(rows: list[TrialRow], directions: dict[str, str], reference: list[float | None]) -> float:
    return hypervolume(
        [objective_values(r, directions) for r in rows],
        list(directions.values()),
        resolve_reference(reference, directions, rows),
    )


def resolve_reference(stated: list[float | None], directions: dict[str, str], rows: Iterable[TrialRow]) -> list[float]:
    """The stated reference value of each objective; where none is stated, the worst value among `rows`."""
    rows = list(rows)
    worst = [(min if d == "max" else max)((r.objectives[m] for r in rows), default=0.0) for m, d in directions.items()]
    return [ref if ref is not None else worst[i] for i, ref in enumerate(stated)]


def common_reference(a: SweepRecord, b: SweepRecord) -> list[float]:
    """One reference point for two sweeps whose objectives pair up in order (their names may differ: an audited
    front's and the search's): a value both state, else the worst value either reached."""
    stated = [x if x == y else None for x, y in zip(a.reference, b.reference)]
    paired = [replace(r, objectives=dict(zip(a.directions, objective_values(r, b.directions)))) for r in b.finished]
    return resolve_reference(stated, a.directions, a.finished + paired)
