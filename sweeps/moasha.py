"""Pareto-aware asynchronous successive halving (MO-ASHA): a Ray Tune scheduler that stops trials early on
several objectives at once.

ASHA (Li et al. 2020, "A system for massively parallel hyperparameter tuning", MLSys) sets rungs at
grace_period·η^k epochs; a trial reaching a rung continues only if its result ranks in the top 1/η of the results
recorded there before it. With several objectives, ranking needs a total order: as in MO-ASHA (Schmucker et al.
2021, "Multi-objective multi-fidelity hyperparameter optimization with application to fairness", arXiv
2106.12639), non-dominated sorting first, then a diversity order inside each front; here NSGA-II's crowding
distance (Deb et al. 2002) rather than their ε-net. The cutoff is Ray's own: the (1 − 1/η) quantile of the
recorded results, interpolated as `np.nanpercentile` interpolates it, taken along that order (see
`continues_at_rung`). With one objective the decisions are exactly those of Ray's AsyncHyperBandScheduler.

The order depends only on the set of results: ties are broken by the values themselves and equal results share a
place. So a decision depends on which results a rung holds, never on the order they arrived in. (Syne Tune's
MOASHA reads the permutation of indices returned by its sort as if it were scores, so its decision depends on the
recording order, and it can stop a result that dominates every other.)

Tune does not keep a scheduler's state across `Tuner.restore`: the scheduler comes back from `tuner.pkl`, pickled
once when the Tuner was created, and `TrialScheduler.save/restore` are never called. Tune does save every
callback's `get_state()` with each experiment checkpoint and hands it back to `set_state()` on restore, so put
`SchedulerCheckpoint(scheduler)` among the run's callbacks. The scheduler runs in the driver only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from ray.tune import Callback
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from analysis.pareto import as_maximised, pareto_ranks


def pareto_order(values: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Each point's place in a total order of the set (finite values): how many points come strictly before it,
    so 0 = first. Non-dominated sorting first (front 1, 2, ...); inside a front, larger crowding distance first
    (Deb et al. 2002, NSGA-II); then lexicographically larger values (as maximised) first. The order depends only
    on the multiset of points, not on their input order, and equal points share a place."""
    points = as_maximised(values, directions)
    if len(points) == 0:
        return []
    # np.unique sorts the distinct points lexicographically: a larger index is a lexicographically larger point
    distinct, inverse, counts = np.unique(points, axis=0, return_inverse=True, return_counts=True)
    fronts = np.asarray(pareto_ranks(distinct, ["max"] * distinct.shape[1]))
    crowding = np.zeros(len(distinct))
    for front in np.unique(fronts):
        members = np.flatnonzero(fronts == front)
        crowding[members] = _crowding_distance(distinct[members])
    order = np.lexsort((-np.arange(len(distinct)), -crowding, fronts))  # the last key sorts first
    before = np.empty(len(distinct), dtype=int)
    before[order] = np.cumsum(counts[order]) - counts[order]
    return before[inverse.reshape(-1)].tolist()


def _crowding_distance(front: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of the distinct points of one front, given in lexicographic order (which breaks
    ties inside an objective): per objective, the gap between a point's two neighbours over the objective's range,
    summed; the two end points of each objective are infinitely far."""
    distance = np.zeros(len(front))
    for column in front.T:
        order = np.argsort(column, kind="stable")
        distance[order[[0, -1]]] = np.inf
        span = column[order[-1]] - column[order[0]]
        if span > 0:
            distance[order[1:-1]] += (column[order[2:]] - column[order[:-2]]) / span
    return distance


def continues_at_rung(
    recorded: Sequence[Sequence[float]], result: Sequence[float], directions: Sequence[str], reduction_factor: float
) -> bool:
    """Whether a new result continues past a rung that already holds `recorded` (objective vectors, finite).

    Ray's ASHA continues iff value >= np.nanpercentile(recorded, (1 − 1/η)·100): with the recorded values sorted
    worst first, the cutoff lies between the k-th and (k+1)-th, interpolated with weight γ. Here the recorded
    results are sorted worst first along `pareto_order` (of the rung's results and the new one), and the new
    result stops if it comes after the k-th, continues if it comes no later than the (k+1)-th, and in between
    continues unless the interpolated point dominates it. Hence: with an empty rung it continues; a result that
    dominates all others continues; one dominated by a share ≥ 1 − 1/η of the rung's results (itself included)
    stops when η ≥ 2; with one objective the decision is Ray's, to the bit."""
    recorded = np.asarray(recorded, dtype=float).reshape(-1, len(directions))
    n = len(recorded)
    if n == 0:
        return True
    points = np.vstack([recorded, np.reshape(np.asarray(result, dtype=float), (1, len(directions)))])
    before = np.asarray(pareto_order(points, directions))
    worst_first = np.argsort(-before[:-1], kind="stable")
    k, gamma = _cutoff_position(n, reduction_factor)
    low, high = worst_first[k], worst_first[min(k + 1, n - 1)]
    if before[-1] > before[low]:
        return False
    if before[-1] <= before[high]:
        return True
    maximised = as_maximised(points, directions)
    cutoff = _lerp(maximised[low], maximised[high], gamma)
    return not ((cutoff >= maximised[-1]).all() and (cutoff > maximised[-1]).any())


def _cutoff_position(n: int, reduction_factor: float) -> tuple[int, float]:
    """Where Ray's cutoff `np.nanpercentile(values, (1 - 1/η) * 100)` falls among n values sorted ascending:
    index k, weight γ towards k + 1; the same float steps as numpy's default ("linear") method."""
    position = (n - 1) * ((1 - 1 / reduction_factor) * 100 / 100)
    k = min(int(position), n - 1)
    return k, position - k


def _lerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """numpy's percentile interpolation, float for float."""
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


@dataclass
class Rung:
    milestone: float  # in units of the scheduler's time_attr
    recorded: dict[str, tuple[float, ...]] = field(default_factory=dict)  # trial id -> objective values as reported


class MOASHAScheduler(FIFOScheduler):
    """Asynchronous successive halving on several objectives (see the module docstring).

    metric/mode: the objectives and their directions ("max"/"min"), here or later through Tune's
    `set_search_properties`. Rungs per bracket s at grace_period·η^(k+s), counted as Ray's ASHA counts them (up to
    max_t; a rung at max_t decides nothing, since results at max_t stop, and only collects finished trials).
    Trials are spread over `brackets` as Ray's ASHA does. A result without every objective as a finite number is
    neither recorded nor judged.

    What it decided: `stopped_at` (trial id -> time_attr value of the result it stopped early) and `brackets`
    (each a list of `Rung`, lowest first)."""

    def __init__(
        self,
        metric: Sequence[str] | None = None,
        mode: Sequence[str] | None = None,
        time_attr: str = "epoch",
        max_t: int = 100,
        grace_period: int = 1,
        reduction_factor: float = 4,
        brackets: int = 1,
    ):
        if not (max_t > 0 and 0 < grace_period <= max_t and reduction_factor > 1 and brackets > 0):
            raise ValueError("need 0 < grace_period <= max_t, reduction_factor > 1 and brackets > 0")
        super().__init__()
        self.metrics, self.modes = _names(metric), _names(mode)
        self.time_attr, self.max_t, self.reduction_factor = time_attr, max_t, reduction_factor
        self.brackets = [
            [
                Rung(grace_period * reduction_factor ** (k + s))
                for k in range(_rung_count(grace_period, max_t, reduction_factor, s))
            ]
            for s in range(brackets)
        ]
        self.trial_bracket: dict[str, int] = {}
        self.stopped_at: dict[str, float] = {}

    @property
    def metric(self):
        # Tune checks that every result holds `scheduler.metric`, a single name; this scheduler reads several and
        # tolerates missing ones
        return None

    def set_search_properties(self, metric, mode, **spec) -> bool:
        if (self.metrics and metric) or (self.modes and mode):
            return False
        self.metrics = _names(metric) or self.metrics
        self.modes = _names(mode) or self.modes
        return True

    def on_trial_add(self, tune_controller, trial) -> None:
        if not (
            self.metrics and self.modes and len(self.metrics) == len(self.modes) and set(self.modes) <= {"max", "min"}
        ):
            raise ValueError(
                f"{type(self).__name__} needs one mode ('max' or 'min') per metric, got metric="
                f"{self.metrics} and mode={self.modes} (pass them here or to tune.TuneConfig)"
            )
        if trial.trial_id not in self.trial_bracket:  # a restored trial keeps its bracket
            sizes = np.array([len(b) for b in self.brackets])  # as Ray's ASHA: brackets with more rungs more often
            probs = np.e ** (sizes - sizes.max())
            self.trial_bracket[trial.trial_id] = int(np.random.choice(len(self.brackets), p=probs / probs.sum()))

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if trial.trial_id in self.stopped_at:  # stopped before an interruption, then resumed
            return TrialScheduler.STOP
        if self.time_attr not in result or any(m not in result for m in self.metrics):
            return TrialScheduler.CONTINUE
        if result[self.time_attr] >= self.max_t:
            return TrialScheduler.STOP
        place = self._place(trial.trial_id, result)
        if place is None:
            return TrialScheduler.CONTINUE
        rung, values = place
        keep = continues_at_rung(list(rung.recorded.values()), values, self.modes, self.reduction_factor)
        rung.recorded[trial.trial_id] = values
        if keep:
            return TrialScheduler.CONTINUE
        self.stopped_at[trial.trial_id] = result[self.time_attr]
        return TrialScheduler.STOP

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        """As Ray's ASHA: the last result is recorded at the highest rung it reached without a record yet."""
        place = self._place(trial.trial_id, result)
        if place is not None:
            rung, values = place
            rung.recorded[trial.trial_id] = values

    def _place(self, trial_id: str, result: dict) -> tuple[Rung, tuple[float, ...]] | None:
        """The rung a result is judged at (as Ray's ASHA: the highest rung reached where the trial has no record)
        and its objective values; None if there is none, or an objective is missing or not a finite number."""
        try:
            values = tuple(float(result[m]) for m in self.metrics)
            reached = result[self.time_attr]
        except (KeyError, TypeError, ValueError):
            return None
        if not np.isfinite(values).all():
            return None
        rungs = self.brackets[self.trial_bracket[trial_id]]
        rung = next((r for r in reversed(rungs) if reached >= r.milestone and trial_id not in r.recorded), None)
        return None if rung is None else (rung, values)

    def debug_string(self) -> str:
        return f"MO-ASHA: {len(self.stopped_at)} stopped early; " + "; ".join(
            f"bracket {s}: " + ", ".join(f"{r.milestone:g}: {len(r.recorded)}" for r in rungs)
            for s, rungs in enumerate(self.brackets)
        )

    def get_state(self) -> dict:
        return {"brackets": self.brackets, "trial_bracket": self.trial_bracket, "stopped_at": self.stopped_at}

    def set_state(self, state: dict) -> None:
        self.brackets, self.trial_bracket, self.stopped_at = (
            state["brackets"],
            state["trial_bracket"],
            state["stopped_at"],
        )


def _names(names: str | Sequence[str] | None) -> list[str] | None:
    return [names] if isinstance(names, str) else list(names) if names else None


def _rung_count(grace_period: float, max_t: float, reduction_factor: float, bracket: int) -> int:
    """Ray's ASHA's count, float rounding included, so both put their rungs at the same epochs."""
    return int(np.log(max_t / grace_period) / np.log(reduction_factor) - bracket + 1)


class SchedulerCheckpoint(Callback):
    """Saves a MOASHAScheduler's rungs and decisions with each Tune experiment checkpoint and gives them back on
    `Tuner.restore`. Tune pickles this callback with the scheduler in `tuner.pkl`, so after a restore it still
    holds the scheduler Tune uses."""

    def __init__(self, scheduler: MOASHAScheduler):
        self.scheduler = scheduler

    def get_state(self) -> dict:
        return self.scheduler.get_state()

    def set_state(self, state: dict) -> None:
        self.scheduler.set_state(state)
