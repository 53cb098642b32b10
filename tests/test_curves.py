"""The paper's figures from a sweep record: accuracy against radius per front point and per method's best,
and the per-method summary at matched clean accuracy."""

import pytest

from analysis.curves import best_per_method, method_summary, radius_curves, write_curves
from analysis.trials import SweepRecord, TrialRow, rank_rows

DIRECTIONS = {"clean_acc": "max", "robust_acc/pgd_linf_0.1": "max"}


def trial(trial_id, method, clean, robust, test_clean, curve):
    """Test metrics as a run reports them: PGD's smallest radius and the objective's alone, the larger one the
    worst case of the cascade."""
    metrics = {"test/clean_acc": test_clean, "test/robust_acc/fgsm_linf_0.1": 0.5}
    metrics |= {f"test/robust_acc{'_upto' if eps == 0.2 else ''}/pgd_linf_{eps}": acc for eps, acc in curve.items()}
    return TrialRow(
        trial_id, "complete", {"method": method}, {"clean_acc": clean, "robust_acc/pgd_linf_0.1": robust}, metrics
    )


@pytest.fixture
def record():
    rows = [
        trial("a", "sgd", 0.99, 0.20, 0.98, {0.05: 0.6, 0.1: 0.2, 0.2: 0.01}),
        trial("b", "at", 0.95, 0.70, 0.94, {0.05: 0.9, 0.1: 0.7, 0.2: 0.3}),
        trial("c", "at", 0.90, 0.60, 0.91, {0.05: 0.8, 0.1: 0.6, 0.2: 0.2}),  # dominated by b
        trial("d", "sam", 0.98, 0.30, 0.97, {0.05: 0.7, 0.1: 0.3, 0.2: 0.05}),
    ]
    return SweepRecord("s", "1", "p", "finished", DIRECTIONS, [None, None], rank_rows(rows, DIRECTIONS))


def test_curves_start_clean_follow_the_radius_and_say_which_points_are_worst_cases(record):
    curves = radius_curves(record.rows[1])
    assert list(curves) == [("pgd", "linf")]  # fgsm has one radius: no curve
    assert curves[("pgd", "linf")] == [(0.0, 0.94, False), (0.05, 0.9, False), (0.1, 0.7, False), (0.2, 0.3, True)]


def test_best_per_method_and_summary_at_matched_clean(record):
    assert {m: r.trial_id for m, r in best_per_method(record).items()} == {"sgd": "a", "at": "b", "sam": "d"}
    summary = {r["method"]: r for r in method_summary(record)}
    assert summary["at"]["best_clean"] == 0.94 and summary["at"]["best_robust"] == 0.7 and summary["at"]["trials"] == 2
    # matched clean accuracy: the least clean method's best (at: 0.94); sgd's 0.98 trial qualifies
    assert all(r["matched_clean"] == 0.94 for r in summary.values())
    assert summary["sgd"]["robust_at_matched_clean"] == 0.2


@pytest.mark.parametrize("suffix", [".png", ".html"])
def test_curve_figures_are_written(record, tmp_path, suffix):
    path = write_curves(record, tmp_path / f"curves{suffix}")
    assert path.stat().st_size > 1000 and not list(tmp_path.glob(".*tmp*"))


def test_no_curve_without_two_radii(record, tmp_path):
    for row in record.rows:
        row.metrics = {k: v for k, v in row.metrics.items() if "pgd" not in k}
    with pytest.raises(ValueError, match="two or more radii"):
        write_curves(record, tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_corruption_curves_run_from_clean_through_the_severities_and_are_plotted_beside_the_radii(record, tmp_path):
    row = record.rows[1]
    row.metrics |= {f"test/corruption_acc/fog_{s}": 0.9 - 0.1 * s for s in (1, 3, 2, 5, 4)}
    row.metrics |= {f"test/corruption_acc/paper9_{s}": 0.8 - 0.1 * s for s in (1, 2, 3, 4, 5)}
    row.metrics["test/corruption_acc/snow_3"] = 0.5  # one severity: no curve
    curves = radius_curves(row)
    assert set(curves) == {("pgd", "linf"), ("severity", "fog"), ("severity", "paper9")}
    assert curves[("severity", "fog")] == [
        (0, 0.94, False),
        *((s, pytest.approx(0.9 - 0.1 * s), False) for s in range(1, 6)),
    ]
    html = write_curves(record, tmp_path / "curves.html").read_text()
    assert "severity, fog (0: clean)" in html and "(PGD linf)" in html and "mean of the paper" in html
