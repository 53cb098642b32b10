"""Pareto-aware asynchronous successive halving (MO-ASHA): a Ray Tune scheduler that stops trials early on
several objectives at once.

ASHA (Li et al. 2020, "A system for massively parallel hyperparameter tuning", MLSys) sets rungs at
grace_period·η^k epochs; a trial reaching a rung continues only if its result ranks in the top 1/η of the n results
recorded there before it: Ray's AsyncHyperBandScheduler continues it iff its value is at least
`np.nanpercentile(recorded, (1 − 1/η)·100)`, the value at position q = (n − 1)(1 − 1/η) of the recorded values
sorted worst first (0 the worst), interpolated between its neighbours. With one objective that is the rule here,
to the bit. With several, as in MO-ASHA (Schmucker et al. 2021, "Multi-objective multi-fidelity hyperparameter
optimization with application to fairness", arXiv 2106.12639), the order is non-dominated sorting (Goldberg 1989,
"Genetic algorithms in search, optimization and machine learning"; Deb et al. 2002, "A fast and elitist
multiobjective genetic algorithm: NSGA-II", IEEE TEC 6(2)), with no order inside a front. The recorded results,
sorted worst first by front, hold positions 0 to n − 1 and the cutoff stays at q; the new result takes the middle
of the block its front holds among them, its mid-rank, as ties take the mean of the ranks they span in rank
statistics (Kendall 1945, "The treatment of ties in ranking problems", Biometrika 33(3)): (recorded results in
worse fronts) + ((recorded results of its own front) − 1)/2, its mean position were its front ordered at random.
It continues iff that is at least q (`continues_at_rung`).

Why no order inside a front: any strict one (NSGA-II's crowding distance; the hypervolume contribution of
SMS-EMOA, Beume, Naujoks & Emmerich 2007; an ε-net) puts one of two mutually non-dominated results behind the
other, so the one behind stops when it reaches a rung holding only the other, and continues when it comes first:
which of the two Tune happens to run first decides. With a front's members in one place:
- a decision depends only on the set of results at the rung (its fronts and their sizes), never on the order they
  arrived in; of two results of one front, whichever arrives second gets the same decision;
- with several objectives it reads only which result dominates which, so it is invariant to the order of the
  objectives and to any increasing map of each, a positive factor or an offset among them; with one objective,
  as Ray's percentile, to a positive factor and an offset in exact arithmetic (floating point rounds the
  interpolated cutoff: a power-of-two factor leaves it exact);
- a result dominating every other sits at n − 1/2 >= q: it continues; a result dominated by s >= (1 − 1/η)(n + 1)
  of the rung's n + 1 results (itself included) has s recorded results in better fronts, so it sits below n − s,
  and for η >= 2, q >= n − s: it stops.
A front that straddles the cutoff is decided whole: it continues iff q falls in its worse half. (Ray's rule on
tied places would continue every member of the front the cutoff falls in, and a large front would then promote far
more than 1/η of the rung.)
(Syne Tune's MOASHA reads the permutation of indices returned by its sort as if it were scores, so its decision
depends on the recording order, and it can stop a result that dominates every other.)

Budgets: a rung is a share of max_t. A trial whose own budget B is smaller (a method's own epochs, searched
epochs) reaches the rung at milestone m at its first result with time_attr / B >= m / max_t, and is ranked there
against the others' results at the same share of their schedules (a 15-epoch schedule's annealed end is not
ranked against a 100-epoch one's epoch 15); its result at B ends it as max_t ends the others. With every budget
max_t the rungs are Ray's.

Tune does not keep a scheduler's state across `Tuner.restore`: the scheduler comes back from `tuner.pkl`, pickled
once when the Tuner was created, and `TrialScheduler.save/restore` are never called. Tune does save every
callback's `get_state()` with each experiment checkpoint and hands it back to `set_state()` on restore, so put
`SchedulerCheckpoint(scheduler)` among the run's callbacks. The scheduler runs in the driver only."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from ray.tune import Callback
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from analysis.pareto import as_maximised, pareto_ranks
from sweeps.space import train_config


def continues_at_rung(
    recorded: Sequence[Sequence[float]], result: Sequence[float], directions: Sequence[str], reduction_factor: float
) -> bool:
    """Whether a new result continues past a rung that already holds `recorded` (objective vectors, finite): with
    one objective Ray's ASHA's rule, to the bit; with several, its position among the recorded results sorted worst
    first by front, the middle of its front's block, against the cutoff position (n − 1)(1 − 1/η) (see the module
    docstring). With an empty rung it continues."""
    points = np.vstack(
        [
            np.asarray(recorded, dtype=float).reshape(-1, len(directions)),
            np.asarray(result, dtype=float).reshape(1, len(directions)),
        ]
    )
    n = len(points) - 1
    if n == 0:
        return True
    if len(directions) == 1:
        values = as_maximised(points, directions)[:, 0]
        return not values[-1] < np.nanpercentile(values[:-1], (1 - 1 / reduction_factor) * 100)
    fronts = np.asarray(pareto_ranks(points, directions))  # 1 = the best
    worse, same = (fronts[:-1] > fronts[-1]).sum(), (fronts[:-1] == fronts[-1]).sum()
    return worse + (same - 1) / 2 >= (n - 1) * (1 - 1 / reduction_factor)


def trial_epochs(config: dict) -> int:
    """A samat trial's own epochs (a method's or model's own over the spec's): its budget at the rungs."""
    return train_config(config).epochs


@dataclass
class Rung:
    milestone: float  # in time_attr units of max_t; a trial of budget B meets it at milestone·B/max_t
    recorded: dict[str, tuple[float, ...]] = field(default_factory=dict)  # trial id -> objective values as reported


class MOASHAScheduler(FIFOScheduler):
    """Asynchronous successive halving on several objectives (see the module docstring).

    metric/mode: the objectives and their directions ("max"/"min"), here or later through Tune's
    `set_search_properties`. Rungs per bracket s at grace_period·η^(k+s), counted as Ray's ASHA counts them (up to
    max_t; a rung at max_t decides nothing, since results at a trial's budget stop, and only collects finished
    trials). budget: a trial's own budget in time_attr units (at most max_t) from its config, such as
    `trial_epochs`; None: max_t for every trial, as Ray's ASHA. A trial meets each rung at the same share of its
    own budget as the rung is of max_t. Trials are spread over `brackets` as Ray's ASHA does. A result without
    every objective as a finite number is neither recorded nor judged.

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
        budget: Callable[[dict], float] | None = None,
    ):
        if not (max_t > 0 and 0 < grace_period <= max_t and reduction_factor > 1 and brackets > 0):
            raise ValueError("need 0 < grace_period <= max_t, reduction_factor > 1 and brackets > 0")
        super().__init__()
        self.metrics, self.modes = _names(metric), _names(mode)
        self.time_attr, self.max_t, self.reduction_factor = time_attr, max_t, reduction_factor
        self.budget = budget
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
        if result[self.time_attr] >= self._budget(trial):
            return TrialScheduler.STOP
        place = self._place(trial, result)
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
        place = self._place(trial, result)
        if place is not None:
            rung, values = place
            rung.recorded[trial.trial_id] = values

    def _budget(self, trial) -> float:
        return self.max_t if self.budget is None else self.budget(trial.config)

    def _place(self, trial, result: dict) -> tuple[Rung, tuple[float, ...]] | None:
        """The rung a result is judged at (as Ray's ASHA: the highest rung reached where the trial has no record)
        and its objective values; None if there is none, or an objective is missing or not a finite number."""
        try:
            values = tuple(float(result[m]) for m in self.metrics)
            reached = result[self.time_attr]
        except (KeyError, TypeError, ValueError):
            return None
        if not np.isfinite(values).all():
            return None
        trial_id, budget = trial.trial_id, self._budget(trial)
        rungs = self.brackets[self.trial_bracket[trial_id]]
        # reached / budget >= milestone / max_t, cross-multiplied: whole epochs compare exactly, and with the budget
        # max_t it is Ray's reached >= milestone
        rung = next(
            (r for r in reversed(rungs) if reached * self.max_t >= r.milestone * budget and trial_id not in r.recorded),
            None,
        )
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
