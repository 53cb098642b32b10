"""MO-ASHA (sweeps/moasha.py): its rung rule as properties on seeded random cases, the scheduler against
Ray's own ASHA on one objective, and its rungs through a real Tune interruption and `Tuner.restore`."""

import copy
import itertools
import math
import os
import pickle
import signal

import numpy as np
import pytest
import ray
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from analysis.pareto import pareto_ranks
from sweeps.moasha import MOASHAScheduler, SchedulerCheckpoint, continues_at_rung
from sweeps.ray_start import start_ray

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def dominates(a, b, directions) -> bool:
    sign = np.array([1 if d == "max" else -1 for d in directions])
    a, b = np.asarray(a) * sign, np.asarray(b) * sign
    return bool((a >= b).all() and (a > b).any())


def random_rung(rng, n_max=25):
    """A rung's recorded results and a new one: 1-3 objectives with mixed directions, coarse (many ties and exact
    duplicates) or continuous values."""
    m = int(rng.integers(1, 4))
    directions = [["max", "min"][i] for i in rng.integers(0, 2, m)]
    n = int(rng.integers(0, n_max))
    points = rng.integers(0, 4, (n + 1, m)) / 4 if rng.random() < 0.5 else rng.normal(size=(n + 1, m))
    return points[:-1], points[-1], directions, float(rng.choice([1.5, 2, 2.5, 3, 4]))


def fake_trial(trial_id: str) -> Trial:
    return Trial("__fake", trial_id=trial_id, stub=True)


# --- the rung rule -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_decision_depends_only_on_the_set_of_results(seed):
    rng = np.random.default_rng(seed)
    for _ in range(150):
        recorded, new, directions, eta = random_rung(rng)
        recorded = np.vstack([recorded, recorded[: len(recorded) // 3]])  # duplicates
        decision = continues_at_rung(recorded, new, directions, eta)
        for _ in range(3):
            assert continues_at_rung(rng.permutation(recorded), new, directions, eta) == decision


@pytest.mark.parametrize("seed", range(4))
def test_a_result_dominating_every_other_continues(seed):
    rng = np.random.default_rng(seed)
    for _ in range(150):
        recorded, _, directions, eta = random_rung(rng)
        sign = np.array([1 if d == "max" else -1 for d in directions])
        best = (recorded * sign).max(0, initial=0.0)
        best[rng.integers(len(directions))] += rng.uniform(0.01, 1)  # strictly better somewhere than every other
        new = best * sign
        assert all(dominates(new, r, directions) for r in recorded)
        assert continues_at_rung(recorded, new, directions, eta)


def test_two_results_of_one_front_are_treated_alike_in_either_order_and_column_order():
    """One result at the rung, then one that neither dominates nor is dominated by it: both continue, whichever
    came first and whichever objective is listed first (the arrival and the column order once decided it)."""
    accurate, robust = [0.99, 0.20], [0.95, 0.60]
    for first, second in ((accurate, robust), (robust, accurate)):
        assert continues_at_rung([first], second, ["max", "max"], 3)
        assert continues_at_rung([first[::-1]], second[::-1], ["max", "max"], 3)


def same_front_pair(rng):
    """A rung's other results and two distinct results of one front of all of them, or None if no front has two."""
    recorded, new, directions, eta = random_rung(rng)
    points = np.vstack([recorded, new])
    ranks = np.array(pareto_ranks(points.tolist(), directions))
    fronts = [f for f in np.unique(ranks) if len(np.unique(points[ranks == f], axis=0)) > 1]
    if not fronts:
        return None
    members = rng.permutation(np.flatnonzero(ranks == rng.choice(fronts)))
    a = members[0]
    b = next(i for i in members if (points[i] != points[a]).any())
    others = np.delete(points, [a, b], axis=0)
    return others, points[a], points[b], directions, eta


@pytest.mark.parametrize("seed", range(4))
def test_two_results_of_one_front_are_treated_alike_whatever_their_arrival_order(seed):
    """Of two results in the same front of the rung's results (mutually non-dominated, and dominated by the same
    number of fronts), the one that arrives second gets the same decision, whichever of the two it is."""
    rng = np.random.default_rng(seed)
    decisions = []
    while len(decisions) < 150:
        case = same_front_pair(rng)
        if case is None:
            continue
        others, a, b, directions, eta = case
        assert not dominates(a, b, directions) and not dominates(b, a, directions)
        b_second = continues_at_rung(np.vstack([others, a]), b, directions, eta)
        assert continues_at_rung(np.vstack([others, b]), a, directions, eta) == b_second
        decisions.append(b_second)
    assert 0 < sum(decisions) < len(decisions)  # both decisions occur: the property is not vacuous


@pytest.mark.parametrize("seed", range(4))
def test_decision_ignores_the_objectives_order_scale_and_offset(seed):
    """With several objectives the decision reads only which result dominates which, so any order of the
    objectives and any increasing affine map of each (positive factor, any offset) give the same decisions. With
    one objective it is Ray's value rule: invariant to a positive factor and an offset in exact arithmetic, and in
    floating point to powers of two, which scale the interpolated cutoff exactly."""
    rng = np.random.default_rng(seed)
    for _ in range(200):
        recorded, new, directions, eta = random_rung(rng)
        points, m = np.vstack([recorded, new]), len(directions)
        decision = continues_at_rung(recorded, new, directions, eta)
        columns = rng.permutation(m)
        swapped = points[:, columns]
        assert continues_at_rung(swapped[:-1], swapped[-1], [directions[c] for c in columns], eta) == decision
        if m == 1:
            moved = points * 2.0 ** rng.integers(-20, 21)
        else:
            moved = points * 10 ** rng.uniform(-3, 3, m) + rng.uniform(-10, 10, m)
            for before, after in zip(points.T, moved.T):  # the map kept every comparison of the values
                assert (np.sign(np.subtract.outer(before, before)) == np.sign(np.subtract.outer(after, after))).all()
        assert continues_at_rung(moved[:-1], moved[-1], directions, eta) == decision


@pytest.mark.parametrize("directions", [["max", "max"], ["min", "max"]])
def test_a_front_across_the_cutoff_continues_whole_iff_the_cutoff_is_in_its_worse_half(directions):
    """η = 2, so the cutoff sits at position (n − 1)/2 of the n recorded results sorted worst first (0 the worst).
    A front of five, four of them recorded and the fifth arriving, whichever it is: with one worse result and three
    better ones recorded it spans positions 1-4 of 8, its middle 2.5 is below the cutoff 3.5 and it stops; with two
    better ones, 1-4 of 7, 2.5 below 3: it stops; with three worse and two better, 3-6 of 9, its middle 4.5 clears
    4 and it continues. Neither the front's ends (NSGA-II's infinite crowding distance) nor its lexicographically
    largest member come first."""
    sign = np.array([1 if d == "max" else -1 for d in directions])
    front = [(10, 0), (0, 10), (5, 5), (9, 1), (1, 9)]
    better, worse = [(11, 11), (12, 10.5), (10.5, 12)], [(0, 0), (-1, -1), (-2, -2)]
    for others, continues in ((better + worse[:1], False), (better[:2] + worse[:1], False), (better[:2] + worse, True)):
        for last in range(len(front)):
            recorded = np.array(others + front[:last] + front[last + 1 :]) * sign
            assert continues_at_rung(recorded, np.array(front[last]) * sign, directions, 2) == continues


@pytest.mark.parametrize("eta", [2, 2.5, 3, 4])
def test_a_result_dominated_by_a_1_minus_1_over_eta_share_stops(eta):
    """The share counts every result at the rung, the new one included (see the next test)."""
    rng = np.random.default_rng(int(eta * 10))
    for _ in range(300):
        _, new, directions, _ = random_rung(rng)
        sign = np.array([1 if d == "max" else -1 for d in directions])
        n = int(rng.integers(1, 25))
        share = math.ceil(round((1 - 1 / eta) * (n + 1), 9))  # the fewest results that make the share
        if share > n:
            continue
        better = new * sign + rng.integers(0, 3, (share, len(directions))) / 4
        better[np.arange(share), rng.integers(0, len(directions), share)] += 0.25
        others = rng.normal(size=(n - share, len(directions)))
        recorded = rng.permutation(np.vstack([better * sign, others]))
        assert sum(dominates(r, new, directions) for r in recorded) >= share
        assert not continues_at_rung(recorded, new, directions, eta)


def test_the_share_counts_the_new_result_and_needs_eta_at_least_2_as_in_ray():
    """The boundary cases where the quantile rule (Ray's, which ours equals on one objective) is laxer than the
    share rule. Counting the share among the recorded results alone: with η = 2 and values 1, 2, 3, 4 recorded,
    2.7 is beaten by half of them, yet Ray's cutoff is their median 2.5, so it continues; counting the new result
    too, 2 of 5 is under 1/2 and no rule is broken. And with η < 2 even the full count fails: recorded 0 and 1
    with η = 1.5, 0.9 is beaten by 1 of 3 results (the 1 − 1/η = 1/3 share), but the cutoff is 1/3."""
    assert np.nanpercentile([1, 2, 3, 4], 50) == 2.5 and continues_at_rung([[1], [2], [3], [4]], [2.7], ["max"], 2)
    assert np.isclose(np.nanpercentile([0, 1], (1 - 1 / 1.5) * 100), 1 / 3)
    assert continues_at_rung([[0], [1]], [0.9], ["max"], 1.5)


@pytest.mark.parametrize("seed", range(3))
def test_one_objective_is_rays_percentile_rule_to_the_bit(seed):
    rng = np.random.default_rng(seed)
    for _ in range(400):
        recorded, new, _, eta = random_rung(rng, n_max=40)
        mode = ["max", "min"][int(rng.integers(2))]
        sign = 1.0 if mode == "max" else -1.0
        values = sign * recorded[:, 0]
        ray_continues = not (len(values) and sign * new[0] < np.nanpercentile(list(values), (1 - 1 / eta) * 100))
        assert continues_at_rung(recorded[:, :1], new[:1], [mode], eta) == ray_continues


# --- the scheduler -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed,brackets", [(s, 1) for s in range(6)] + [(s, 3) for s in range(6, 8)])
def test_one_objective_decisions_equal_ray_asha(seed, brackets):
    """The same random interleaving of trials' results (some epochs skipped, ties in coarse values) through both
    schedulers' on_trial_add / on_trial_result / on_trial_complete, as Tune calls them; every trial with the same
    budget, Ray's max_t."""
    rng = np.random.default_rng(seed)
    max_t = int(rng.integers(2, 30))
    grace, eta = int(rng.integers(1, max(2, max_t // 3))), float(rng.choice([1.5, 2, 3, 4]))
    mode = ["max", "min"][seed % 2]
    ray_asha = AsyncHyperBandScheduler(
        time_attr="epoch",
        metric="v",
        mode=mode,
        max_t=max_t,
        grace_period=grace,
        reduction_factor=eta,
        brackets=brackets,
    )
    ours = MOASHAScheduler(
        ["v"],
        [mode],
        time_attr="epoch",
        max_t=max_t,
        grace_period=grace,
        reduction_factor=eta,
        brackets=brackets,
        budget=None if seed % 2 else lambda config: max_t,  # every trial's budget max_t, given or by default
    )
    trials = [fake_trial(f"t{i:03d}") for i in range(int(rng.integers(10, 50)))]
    for i, trial in enumerate(trials):
        for scheduler in (ray_asha, ours):
            np.random.seed(i)  # both draw the trial's bracket from numpy's global generator
            scheduler.on_trial_add(None, trial)
    epoch = {t.trial_id: 0 for t in trials}
    live, decisions, ray_stopped = list(trials), 0, {}
    while live:
        trial = live[int(rng.integers(len(live)))]
        epoch[trial.trial_id] += 1 if rng.random() < 0.8 else 2
        value = float(rng.integers(0, 6) / 5 if seed % 3 == 0 else rng.normal() + 0.05 * epoch[trial.trial_id])
        result = {"epoch": epoch[trial.trial_id], "v": value}
        decision = ray_asha.on_trial_result(None, trial, result)
        assert ours.on_trial_result(None, trial, dict(result)) == decision, (seed, trial.trial_id, result)
        decisions += 1
        if decision == STOP:
            ray_asha.on_trial_complete(None, trial, result)
            ours.on_trial_complete(None, trial, dict(result))
            live.remove(trial)
            if result["epoch"] < max_t:
                ray_stopped[trial.trial_id] = result["epoch"]
    assert ours.stopped_at == ray_stopped and 0 < len(ray_stopped) < len(trials), ray_stopped
    assert [[r.milestone for r in rungs] for rungs in ours.brackets] == [
        [m for m, _ in reversed(b._rungs)] for b in ray_asha._brackets
    ]


def test_a_dominating_trial_continues_whatever_the_arrival_order():
    results = {
        "a": (0.50, 0.9),
        "b": (0.60, 0.7),
        "c": (0.40, 0.5),
        "d": (0.62, 1.1),
        "e": (0.55, 0.6),
        "best": (0.70, 0.4),
    }  # (accuracy to maximise, loss to minimise)
    trials, decisions_of_last = {t: fake_trial(t) for t in results}, {}
    for arrival in itertools.permutations(results):
        scheduler = MOASHAScheduler(["acc", "loss"], ["max", "min"], max_t=8, grace_period=1, reduction_factor=2)
        for trial_id in arrival:
            trial = trials[trial_id]
            scheduler.on_trial_add(None, trial)
            acc, loss = results[trial_id]
            decision = scheduler.on_trial_result(None, trial, {"epoch": 1, "acc": acc, "loss": loss})
            assert trial_id != "best" or decision == CONTINUE, arrival
        decisions_of_last.setdefault(arrival[-1], set()).add(decision)
        assert len(scheduler.brackets[0][0].recorded) == len(results)
    # arriving last, each meets the same set whatever the order before it: one decision each. The fronts of the
    # six: best; d, b, e, c; a. With 5 recorded and η = 2 the cutoff sits at position 2 (0 the worst): best at 4.5
    # continues, a member of front 2 in the middle of positions 1-3 (at 2) continues, a at -0.5 stops.
    assert decisions_of_last == {
        "best": {CONTINUE},
        "d": {CONTINUE},
        "c": {CONTINUE},
        "e": {CONTINUE},
        "b": {CONTINUE},
        "a": {STOP},
    }


def two_budget_trials(tmp_path) -> tuple[MOASHAScheduler, dict[str, Trial]]:
    """The spec's scheduler (rungs at 10, 30 and 90 of 100 epochs) and trials with the configs its searcher
    proposes: sgd trains the spec's 100 epochs, fast_at its own 15."""
    from sweeps.run import make_scheduler
    from sweeps.search import make_searcher
    from sweeps.space import train_config
    from sweeps.spec import validate_spec

    spec = validate_spec(
        {
            **SPEC,
            "methods": {"sgd": {}, "fast_at": {"epochs": 15, "schedule": "cyclic"}},
            "train": {"epochs": 100},
            "search": {"sampler": "random"},
            "scheduler": {"type": "moasha", "grace_period": 10, "reduction_factor": 3},
        }
    )
    searcher = make_searcher(spec, "t", f"sqlite:///{tmp_path / 'optuna.db'}").searcher
    configs = {}
    for i in itertools.count():
        config = searcher.suggest(f"t{i}")
        configs.setdefault(config["method"], []).append(config)
        if len(configs.get("sgd", [])) >= 1 and len(configs.get("fast_at", [])) >= 3:
            break
    assert [train_config(configs[m][0]).epochs for m in ("sgd", "fast_at")] == [100, 15]
    trials = {"long": Trial("__fake", config=configs["sgd"][0], trial_id="long", stub=True)}
    trials |= {
        f"short{i}": Trial("__fake", config=c, trial_id=f"short{i}", stub=True)
        for i, c in enumerate(configs["fast_at"])
    }
    scheduler = make_scheduler(spec)
    assert [r.milestone for r in scheduler.brackets[0]] == [10, 30, 90]
    for trial in trials.values():
        scheduler.on_trial_add(None, trial)
    return scheduler, trials


def test_a_shorter_budget_meets_the_rungs_at_the_same_shares_of_it(tmp_path):
    """Rungs at 10 %, 30 % and 90 % of 100 epochs: a 15-epoch trial meets them at epochs 2, 5 and 14 (the first
    epochs at or past 1.5, 4.5 and 13.5), is judged there against the 100-epoch trials' epochs 10, 30 and 90, and
    its 15th epoch ends it as the 100th ends the others: finished, not stopped, and never judged."""
    scheduler, trials = two_budget_trials(tmp_path)
    values = {"clean_acc": 0.5, "robust_acc/pgd_linf_2of255": 0.3}
    entered, decisions = {}, []
    for epoch in range(1, 16):
        decisions.append(scheduler.on_trial_result(None, trials["short0"], {"epoch": epoch, **values}))
        for i, rung in enumerate(scheduler.brackets[0]):
            if "short0" in rung.recorded:
                entered.setdefault(i, epoch)
    assert entered == {0: 2, 1: 5, 2: 14}
    assert decisions == [CONTINUE] * 14 + [STOP] and not scheduler.stopped_at

    strong = {"clean_acc": 0.9, "robust_acc/pgd_linf_2of255": 0.6}
    assert scheduler.on_trial_result(None, trials["long"], {"epoch": 10, **strong}) == CONTINUE
    weak = {"clean_acc": 0.4, "robust_acc/pgd_linf_2of255": 0.2}  # dominated by both results at the first rung
    assert scheduler.on_trial_result(None, trials["short1"], {"epoch": 1, **weak}) == CONTINUE
    assert scheduler.on_trial_result(None, trials["short1"], {"epoch": 2, **weak}) == STOP
    assert scheduler.stopped_at == {"short1": 2}

    worst = {"clean_acc": 0.0, "robust_acc/pgd_linf_2of255": 0.0}
    result = {"epoch": 15, **worst}  # its last epoch: it finished its budget, whatever its values
    assert scheduler.on_trial_result(None, trials["short2"], result) == STOP and "short2" not in scheduler.stopped_at
    scheduler.on_trial_complete(None, trials["short2"], result)  # as Ray's ASHA: recorded at the highest rung
    assert [("short2" in r.recorded) for r in scheduler.brackets[0]] == [False, False, True]


def test_results_without_finite_objectives_are_not_recorded_and_do_not_crash():
    scheduler = MOASHAScheduler(["acc", "loss"], ["max", "min"], max_t=8, grace_period=2, reduction_factor=2)
    trial = fake_trial("t")
    scheduler.on_trial_add(None, trial)
    for result in [
        {"epoch": 2, "acc": float("nan"), "loss": 1.0},
        {"epoch": 2, "acc": 0.5, "loss": float("inf")},
        {"epoch": 2, "acc": None, "loss": 1.0},
        {"epoch": 2, "acc": "n/a", "loss": 1.0},
        {"epoch": 2, "acc": 0.5},
        {"acc": 0.5, "loss": 1.0},
        {"epoch": 3, "acc": [0.5], "loss": 1.0},
    ]:
        assert scheduler.on_trial_result(None, trial, result) == CONTINUE
        scheduler.on_trial_complete(None, trial, result)
    assert not any(r.recorded for r in scheduler.brackets[0])
    assert scheduler.on_trial_result(None, trial, {"epoch": 3, "acc": 0.5, "loss": 1.0}) == CONTINUE
    assert scheduler.brackets[0][0].recorded == {"t": (0.5, 1.0)}  # the first finite result is judged and kept
    assert scheduler.on_trial_result(None, trial, {"epoch": 8, "acc": float("nan"), "loss": 1.0}) == STOP  # max_t


def test_metric_and_mode_may_come_from_tune():
    scheduler = MOASHAScheduler(max_t=4)
    with pytest.raises(ValueError, match="one mode"):
        scheduler.on_trial_add(None, fake_trial("t"))
    assert scheduler.set_search_properties(["acc", "loss"], ["max", "min"])
    assert not scheduler.set_search_properties("acc", "max")  # already set: Tune then refuses the conflict
    scheduler.on_trial_add(None, fake_trial("t"))
    assert scheduler.metric is None  # Tune's strict check reads one name; the objectives are checked here


def test_state_round_trip_keeps_rungs_decisions_and_the_callbacks_handle():
    scheduler = MOASHAScheduler(["acc", "loss"], ["max", "min"], max_t=8, grace_period=1, reduction_factor=2)
    for i, (acc, loss) in enumerate([(0.9, 0.1), (0.1, 0.9)]):
        scheduler.on_trial_add(None, fake_trial(f"t{i}"))
        scheduler.on_trial_result(None, fake_trial(f"t{i}"), {"epoch": 1, "acc": acc, "loss": loss})
    saved = pickle.loads(pickle.dumps(SchedulerCheckpoint(scheduler).get_state()))  # as Tune saves callbacks
    # tuner.pkl pickles the scheduler and the callback together: the callback keeps hold of that scheduler
    fresh = MOASHAScheduler(["acc", "loss"], ["max", "min"], max_t=8, grace_period=1, reduction_factor=2)
    config = pickle.loads(pickle.dumps({"scheduler": fresh, "callbacks": [SchedulerCheckpoint(fresh)]}))
    config["callbacks"][0].set_state(saved)
    restored = config["scheduler"]
    assert restored.brackets == scheduler.brackets and restored.stopped_at == scheduler.stopped_at == {"t1": 1}
    assert restored.on_trial_result(None, fake_trial("t1"), {"epoch": 2, "acc": 0.2, "loss": 0.8}) == STOP


# --- resume through Tune -----------------------------------------------------------------------------------------


def two_objectives(config):
    for epoch in range(1, 4):
        tune.report({"epoch": epoch, "acc": config["q"] + 0.01 * epoch, "loss": 1 - config["q"]})


class InterruptAfter(tune.Callback):
    """Interrupts the run as Ctrl-C would (Tune ends it on SIGUSR1 too, and saves the experiment) once `count`
    trials finished; only once, although Tune brings the callback back on restore."""

    def __init__(self, count: int, marker):
        self.count, self.marker, self.finished = count, marker, 0

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.finished += 1
        if self.finished == self.count and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGUSR1)


@pytest.fixture
def local_ray():
    started = start_ray(None, num_cpus=2)  # samat's local Ray: no idle workers started for tasks that never come
    yield
    if started:
        ray.shutdown()


def test_rungs_survive_an_interruption_and_tuner_restore(local_ray, tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AIR_NEW_OUTPUT", "0")
    strong, weak = [0.8, 0.9], [0.1]  # the strong ones (in this order) continue, the weak one loses to them
    scheduler = MOASHAScheduler(["acc", "loss"], ["max", "min"], max_t=3, grace_period=1, reduction_factor=2)
    tuner = tune.Tuner(
        two_objectives,
        param_space={"q": tune.grid_search(strong + weak)},
        tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(
            name="moasha",
            storage_path=str(tmp_path),
            verbose=0,
            callbacks=[SchedulerCheckpoint(scheduler), InterruptAfter(len(strong), tmp_path / "interrupted")],
        ),
    )
    first = {r.config["q"]: r.metrics for r in tuner.fit()}
    assert [first[q].get("epoch") for q in strong] == [3, 3] and not any(first.get(q) for q in weak)
    before = copy.deepcopy(scheduler.brackets)
    assert [len(r.recorded) for r in before[0]] == [2, 2]

    restored = tune.Tuner.restore(str(tmp_path / "moasha"), two_objectives, resume_unfinished=True, resume_errored=True)
    restored_scheduler = restored._local_tuner._tune_config.scheduler  # Tune's own (private) handle on it
    assert not any(r.recorded for r in restored_scheduler.brackets[0])  # tuner.pkl alone: the rungs are gone
    second = {r.config["q"]: r.metrics for r in restored.fit()}
    after = restored_scheduler.brackets[0]
    assert all(after[i].recorded.items() >= before[0][i].recorded.items() for i in range(2))
    # judged against the strong trials recorded before the interruption, the weak one stops at once (with empty
    # rungs it would have continued: the first result at a rung always does)
    assert [second[q]["epoch"] for q in strong + weak] == [3, 3, 1]
    assert list(restored_scheduler.stopped_at.values()) == [1]


# --- the spec's scheduler block and what Optuna hears --------------------------------------------------------------

SPEC = {"name": "t", "models": ["mlp"], "methods": {"sgd": {}}, "train": {"epochs": 10}}


@pytest.mark.parametrize(
    "scheduler,train,where",
    [
        ({"type": "asha"}, {}, "scheduler.type=asha: Input should be 'moasha'"),
        ({"type": "moasha", "reduction_factor": 1}, {}, "scheduler.reduction_factor=1: Input should be greater than 1"),
        ({"type": "moasha", "grace_period": 0}, {}, "scheduler.grace_period=0"),
        ({"type": "moasha", "eta": 3}, {}, "scheduler.eta=3: Extra inputs are not permitted"),
        (
            {"type": "moasha", "grace_period": 10},
            {},
            "scheduler.grace_period: 10 must be below the trials' epochs (10)",
        ),
        ({"type": "moasha", "grace_period": 4}, {"epochs": {"low": 2, "high": 4}}, "trials' epochs (4)"),
        ({"type": "moasha", "brackets": 4, "reduction_factor": 3}, {}, "scheduler.brackets: 4 brackets"),
    ],
)
def test_bad_scheduler_blocks_name_the_field_and_value(scheduler, train, where):
    from sweeps.spec import SpecError, validate_spec

    with pytest.raises(SpecError) as e:
        validate_spec({**SPEC, "train": {**SPEC["train"], **train}, "scheduler": scheduler}, "spec.yaml")
    message = str(e.value)
    assert "\n" not in message and message.startswith("spec.yaml: ") and where in message, message


@pytest.mark.parametrize("epochs,max_t", [(10, 10), ({"low": 2, "high": 12}, 12), ({"choices": [3, 7]}, 7), (None, 10)])
def test_the_spec_gives_the_scheduler_its_objectives_and_epochs(epochs, max_t):
    from sweeps.run import make_scheduler
    from sweeps.spec import validate_spec

    train = {} if epochs is None else {"epochs": epochs}  # unset: TrainConfig's default, 10
    spec = validate_spec({**SPEC, "train": train, "scheduler": {"type": "moasha", "reduction_factor": 2}})
    scheduler = make_scheduler(spec)
    assert scheduler.max_t == spec.max_epochs == max_t and scheduler.time_attr == "epoch"
    assert scheduler.metrics == ["clean_acc", "robust_acc/pgd_linf_2of255"] and scheduler.modes == ["max", "max"]
    assert [r.milestone for r in scheduler.brackets[0]] == [2**k for k in range(int(math.log2(max_t)) + 1)]
    assert make_scheduler(validate_spec(SPEC)) is None  # no block, no scheduler


def test_optuna_hears_pruned_for_a_stopped_trial_fail_for_a_failed_one(tmp_path):
    from sweeps.ray_private import optuna_study
    from sweeps.search import make_searcher
    from sweeps.spec import validate_spec

    spec = validate_spec({**SPEC, "train": {"epochs": 4, "lr": {"low": 0.01, "high": 0.1}}})
    searcher = make_searcher(spec, "t", f"sqlite:///{tmp_path / 'optuna.db'}").searcher
    values = dict.fromkeys(spec.directions, 0.5)
    outcomes = {
        "full": ({**values, "epochs": 4, "done": True}, "COMPLETE"),
        "stopped": ({**values, "epochs": 1, "done": True}, "PRUNED"),
        "diverged": ({**dict.fromkeys(spec.directions, math.nan), "failure": "loss is nan"}, "FAIL"),
        "crashed": (None, "FAIL"),
    }
    for trial_id, (result, _) in outcomes.items():
        assert searcher.suggest(trial_id)["epochs"] == 4 and searcher.planned_epochs[trial_id] == 4
        searcher.on_trial_complete(trial_id, result, error=result is None)
    study = optuna_study(searcher)
    assert [t.state.name for t in study.trials] == [state for _, state in outcomes.values()]
    assert study.trials[0].values == [0.5, 0.5] and study.trials[1].values is None  # PRUNED carries no values
    searcher.save(str(tmp_path / "searcher.pkl"))  # what Tune saves with each experiment checkpoint
    restored = make_searcher(spec, "t", f"sqlite:///{tmp_path / 'optuna.db'}").searcher
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.planned_epochs == dict.fromkeys(outcomes, 4)
