"""Pareto ranks and hypervolume against brute force."""

import itertools

import numpy as np
import pytest

from analysis.pareto import _ranks_2d, _ranks_by_peeling, as_maximised, hypervolume, pareto_front, pareto_ranks
from analysis.trials import SweepRecord, TrialRow, front, objective_values, rank_rows


def dominates(a, b, directions):
    sign = np.array([1 if d == "max" else -1 for d in directions])
    a, b = np.asarray(a) * sign, np.asarray(b) * sign
    return bool((a >= b).all() and (a > b).any())


def brute_force_ranks(points, directions):
    """Peel fronts off one by one by checking every pair."""
    ranks, left, rank = [0] * len(points), set(range(len(points))), 1
    while left:
        front = {i for i in left if not any(dominates(points[j], points[i], directions) for j in left)}
        for i in front:
            ranks[i] = rank
        left -= front
        rank += 1
    return ranks


@pytest.mark.parametrize("seed", range(12))
def test_ranks_match_brute_force_on_random_points_with_duplicates(seed):
    rng = np.random.default_rng(seed)
    m = 2 + seed % 2
    directions = [["max", "min"][i] for i in rng.integers(0, 2, m)]
    points = rng.integers(0, 6, (40, m)).astype(float)  # a coarse grid: many ties and exact duplicates
    points = np.vstack([points, points[:5]])
    assert pareto_ranks(points.tolist(), directions) == brute_force_ranks(points.tolist(), directions)


@pytest.mark.parametrize("grid", [4, 30, None])
def test_two_objective_sweep_equals_the_dominance_matrix_on_many_points(grid):
    """The O(n log n) two-objective ranking against the quadratic one, on 600 points: coarse grids (ties in one
    coordinate, exact duplicates) and continuous values (deep fronts)."""
    rng = np.random.default_rng(0)
    points = rng.integers(0, grid, (600, 2)).astype(float) if grid else rng.uniform(0, 1, (600, 2))
    for directions in (["max", "max"], ["max", "min"], ["min", "min"]):
        maximised = as_maximised(points.tolist(), directions)
        assert _ranks_2d(maximised) == _ranks_by_peeling(maximised)


def test_duplicates_share_a_rank_and_front():
    points = [[0.9, 0.1], [0.9, 0.1], [0.5, 0.5], [0.4, 0.4]]
    assert pareto_ranks(points, ["max", "max"]) == [1, 1, 1, 2]
    assert pareto_front(points, ["max", "max"]) == [0, 1, 2]
    assert pareto_ranks(points, ["min", "min"]) == [1, 1, 2, 1]  # (0.4, 0.4) beats only (0.5, 0.5)
    assert pareto_ranks([], ["max", "max"]) == []


def brute_force_hypervolume(points, directions, reference, cells):
    """Count the unit cells of an integer grid that some point dominates (exact for integer coordinates)."""
    sign = np.array([1 if d == "max" else -1 for d in directions])
    p = np.asarray(points) * sign - np.asarray(reference) * sign
    count = 0
    for cell in itertools.product(*[range(cells)] * len(directions)):
        centre = np.asarray(cell) + 0.5
        count += bool(((p >= centre).all(1)).any())
    return count


@pytest.mark.parametrize("seed", range(8))
def test_hypervolume_matches_a_grid_count(seed):
    rng = np.random.default_rng(100 + seed)
    m = 2 + seed % 2
    directions = ["max", "min", "max"][:m] if seed % 4 < 2 else ["min"] * m
    # integer points between 1 and 8 away from the reference, in the objectives' own directions
    offsets = rng.integers(1, 9, (15, m))
    reference = [0.0 if d == "max" else 10.0 for d in directions]
    points = [[ref + o if d == "max" else ref - o for ref, o, d in zip(reference, row, directions)] for row in offsets]
    expected = brute_force_hypervolume(points, directions, reference, cells=9)
    assert hypervolume(points, directions, reference) == pytest.approx(expected)


def test_hypervolume_ignores_points_behind_the_reference_and_needs_2_or_3_objectives():
    assert hypervolume([[0.5, 0.5], [-0.2, 0.9]], ["max", "max"], [0, 0]) == pytest.approx(0.25)
    assert hypervolume([], ["max", "max"]) == 0.0
    with pytest.raises(ValueError, match="2 or 3 objectives"):
        hypervolume([[1, 2, 3, 4]], ["max"] * 4)


def test_rank_rows_ignores_failed_unfinished_and_nan():
    cases = [
        ("complete", 0.9, 0.2),
        ("error", 1.0, 1.0),
        ("complete", float("nan"), 0.9),
        ("unfinished", 1, 1),
        ("complete", 0.5, 0.5),
        ("complete", 0.4, 0.1),
        ("complete", None, 0.3),
    ]
    rows = [TrialRow(str(i), status, {}, {"clean_acc": c, "robust_acc/x": r}) for i, (status, c, r) in enumerate(cases)]
    directions = {"clean_acc": "max", "robust_acc/x": "max"}
    assert [r.rank for r in rank_rows(rows, directions)] == [1, None, None, None, 1, 2, None]
    assert [r.trial_id for r in front(rows, directions)] == ["0", "4"]  # best first by the first objective


def test_objective_values_are_keyed_by_name_not_position():
    row = TrialRow("t", "complete", {}, {"robust_acc/x": 0.2, "clean_acc": 0.9})
    assert objective_values(row, {"clean_acc": "max", "robust_acc/x": "max"}) == [0.9, 0.2]


def reseeded_front(new_seeds: dict[str, list[tuple[float, float]]]) -> SweepRecord:
    """Two front points a (cleaner) and b (more robust), selected at seed 0 with high values, and their new seeds'
    (clean, robust) values."""
    directions = {"clean_acc": "max", "robust_acc/pgd_linf_0.1": "max"}
    rows = [
        TrialRow("a", "complete", {"method": "sgd"}, {"clean_acc": 0.99, "robust_acc/pgd_linf_0.1": 0.30}),
        TrialRow("b", "complete", {"method": "at"}, {"clean_acc": 0.96, "robust_acc/pgd_linf_0.1": 0.70}),
    ]
    record = SweepRecord("s", "1", "p", "finished", directions, [None, None], rank_rows(rows, directions))
    record.reseeds = {
        trial: [
            TrialRow(f"{trial}{k}", "complete", {}, {"clean_acc": c, "robust_acc/pgd_linf_0.1": r})
            for k, (c, r) in enumerate(values)
        ]
        for trial, values in new_seeds.items()
    }
    return record


def test_seed_statistics_leave_out_the_selected_seed():
    """The search chose each point for its values at its own seed (the winner's curse): the new seeds' figures are
    reported apart from them, and the selected value never enters their mean."""
    record = reseeded_front({"a": [(0.95, 0.25), (0.97, 0.27)], "b": [(0.94, 0.60), (0.92, 0.64)]})
    stats = record.seed_stats(record.front[0])
    assert stats["clean_acc"].n == 2 and stats["clean_acc"].mean == pytest.approx(0.96)
    assert stats["robust_acc/pgd_linf_0.1"].mean == pytest.approx(0.26)


def test_front_neighbours_are_told_apart_by_welchs_test_on_the_new_seeds():
    """Ten new seeds each, whose mean ± std intervals overlap in both objectives, but whose robust accuracies differ
    far beyond their noise (Welch's t-test: p < 0.001): separable. Seeds that differ within their noise: not."""
    noise = [0.01 * (k % 2 * 2 - 1) for k in range(10)]  # ± 0.01 alternately: std 0.0105
    separable = reseeded_front(
        {
            "a": [(0.960 + e, 0.500 + e) for e in noise],
            "b": [(0.958 + e, 0.515 + e) for e in noise],
        }
    )
    assert separable.inseparable() == {}
    alike = reseeded_front({"a": [(0.96, 0.50), (0.97, 0.52)], "b": [(0.95, 0.51), (0.97, 0.50)]})
    assert alike.inseparable() == {"a": "b", "b": "a"}
