"""The audit in the training core: AutoAttack as its reference code runs it, and sanity checks that flag a
gradient-masked model, and PGD figures that overstate robustness, while a normal model passes."""

import pytest
import torch
import torch.nn as nn

from trainables.audit import audit
from trainables.evaluate import build_attack
from trainables.vocabulary import parse_attack

EPS = 0.1
N = 30  # AutoAttack (its Square: 5000 queries) costs about a second per robust image on a CPU core
CHECKS_AT_EACH_RADIUS = ("pgd_close_to_autoattack", "black_box_not_stronger", "fgsm_not_stronger")


@pytest.fixture(scope="module")
def at_model(adversarially_trained_digits):
    """small_cnn adversarially trained on digits at ε = 0.1 (PGD-5): robust enough for the accuracies to differ."""
    return adversarially_trained_digits[1]


# The reference standard AutoAttack, read off fra31/auto-attack at commit a392200 (autoattack/autoattack.py; the
# FAB and APGD-T defaults it keeps from fab_base.py and autopgd_base.py), part by part, in the order it runs them
# (`set_version("standard")`, line 307: apgd-ce, apgd-t, fab-t, square):
REFERENCE_AUTOATTACK = {
    # lines 33-35, 185 and 309: APGDAttack(n_iter=100, eot_iter=1, rho=.75), loss "ce", n_restarts set to 1
    "APGD": {"steps": 100, "n_restarts": 1, "loss": "ce", "eot_iter": 1, "thr_decr": 0.75},
    # lines 46-48, 310 and 317: APGDAttack_targeted(n_iter=100, eot_iter=1, rho=.75), 9 target classes, 1 restart;
    # its loss is the targeted DLR loss (autopgd_base.py line 588), the only one torchattacks' APGDT has
    "APGDT": {"steps": 100, "n_restarts": 1, "eot_iter": 1, "thr_decr": 0.75},
    # lines 38-39, 213-214, 316 and 318: FABAttack_PT(n_iter=100) targeted at 9 classes, 1 restart; alpha_max .1,
    # eta 1.05, beta .9 are fab_base.py's defaults (lines 43-45)
    "FAB": {"steps": 100, "n_restarts": 1, "multi_targeted": True, "alpha_max": 0.1, "eta": 1.05, "beta": 0.9},
    # lines 42-43 and 320: SquareAttack(p_init=.8, n_queries=5000, n_restarts=1, resc_schedule=False), margin loss
    "Square": {"n_queries": 5000, "n_restarts": 1, "p_init": 0.8, "loss": "margin", "rescale_schedule": False},
}


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("classes, targets", [(10, 9), (100, 9), (5, 4)])
def test_autoattack_is_the_reference_standard_version(norm, classes, targets):
    """Every parameter of every part, against the reference; targets: 9, or every other class when fewer."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, classes))
    eps = 8 / 255 if norm == "linf" else 0.5
    name = "autoattack_linf_8of255" if norm == "linf" else "autoattack_l2_0.5"
    parts = build_attack(parse_attack(name), model, classes).attacks
    assert [type(a).__name__ for a in parts] == list(REFERENCE_AUTOATTACK)
    for part in parts:
        expected = REFERENCE_AUTOATTACK[type(part).__name__]
        assert {k: getattr(part, k) for k in expected} == expected, type(part).__name__
        assert part.eps == pytest.approx(eps) and part.norm == {"linf": "Linf", "l2": "L2"}[norm]
        assert part.seed == 0
    apgdt, fab = parts[1], parts[2]
    assert apgdt.n_target_classes == targets and fab.n_target_classes == targets


class Quantised(nn.Module):
    """Rounds its input to 3 grey levels before the model: the gradient is zero almost everywhere, so gradient
    attacks see nothing while the model is as fragile as before."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.round(x * 2) / 2)


@pytest.fixture(scope="module")
def audits(at_model, digits):
    """The normal model audited at the training radius and half of it; the masked one at twice it, on fewer
    images (AutoAttack runs every part in full on images a masked gradient keeps)."""
    torch.manual_seed(0)
    normal = audit(at_model, digits.test_x[:N], digits.test_y[:N], 10, "linf", (EPS, EPS / 2))
    masked = audit(Quantised(at_model).eval(), digits.test_x[:12], digits.test_y[:12], 10, "linf", (2 * EPS,))
    return normal, masked


def test_a_normal_model_passes_every_check_at_every_radius_and_autoattack_is_the_strongest(audits):
    normal, _ = audits
    assert normal.verdict == "passed", normal.reasons
    assert {c.name for c in normal.checks} == {
        *(f"{check} at {eps}" for check in CHECKS_AT_EACH_RADIUS for eps in ("0.1", "0.05")),
        "monotone_in_eps",
        "zero_at_large_eps",
    }
    acc = normal.accuracies
    for eps in ("0.1", "0.05"):
        assert acc[f"autoattack_linf_{eps}"] <= acc[f"pgd_linf_{eps}"] < acc["clean_acc"], acc
    assert acc["pgd_linf_0.1"] > 0.3  # a robust model, so the ordering says something
    assert acc["pgd_linf_0.5"] == 0  # an attack that can reach any image breaks every one


def test_a_gradient_masked_model_is_suspect_for_what_a_masked_gradient_causes(audits):
    """A zero gradient leaves PGD where its random start put it: accuracy stays near clean even in a ball that
    reaches any image, the black box (Square) beats the white box, and AutoAttack (whose Square needs no
    gradient) reads far below PGD, so the PGD figures at that radius are flagged."""
    _, masked = audits
    assert masked.verdict == "suspect"
    failed = {c.name for c in masked.checks if not c.passed}
    assert {"zero_at_large_eps", "black_box_not_stronger at 0.2", "pgd_close_to_autoattack at 0.2"} <= failed
    assert "fgsm_not_stronger at 0.2" not in failed, masked.reasons  # FGSM is as blind as PGD here
    assert any("PGD figures overstate robustness at 0.2" in reason for reason in masked.reasons)


def test_the_audited_front_names_each_figure_for_what_it_is_and_keeps_a_point_whose_only_flaw_is_pgds_gap():
    """Like with like, every name true: the audited front holds test figures under their own names (full-test
    clean accuracy, AutoAttack), the search's points their `test/` values; a point flagged only for PGD's gap
    to AutoAttack is ranked on AutoAttack, one with a sign of masking is not ranked."""
    from analysis.trials import SweepRecord, TrialRow
    from sweeps.audit import audited_record, searched_on_test
    from trainables.audit import Audit, Check

    directions = {"clean_acc": "max", "robust_acc/pgd_linf_0.1": "max", "train_time_s": "min"}

    def row(trial_id, validation, test, seconds):
        metrics = {"test/clean_acc": test[0], "test/robust_acc/pgd_linf_0.1": test[1], "train_time_s": seconds}
        objectives = dict(zip(directions, (*validation, seconds)))
        return TrialRow(trial_id, "complete", {"method": "at"}, objectives, metrics)

    def audit(clean, autoattack, failed=()):
        names = ("pgd_close_to_autoattack at 0.1", "black_box_not_stronger at 0.1", "monotone_in_eps")
        accuracies = {"full_test_clean_acc": clean, "autoattack_linf_0.1": autoattack, "pgd_linf_0.1": autoattack + 0.2}
        return Audit("linf", (0.1,), accuracies, 100, [Check(n, n not in failed, "detail") for n in names])

    rows = [row("a", (0.9, 0.5), (0.88, 0.52), 10), row("b", (0.8, 0.6), (0.79, 0.61), 20)]
    rows.append(row("c", (0.7, 0.7), (0.70, 0.69), 30))
    record = SweepRecord("s", "1", "parent", "finished", directions, [0.0, 0.0, None], rows)
    audits = {
        "a": audit(0.87, 0.40),
        "b": audit(0.78, 0.30, failed=["pgd_close_to_autoattack at 0.1"]),
        "c": audit(0.69, 0.50, failed=["black_box_not_stronger at 0.1"]),
    }
    audited = audited_record(record, rows, audits, [parse_attack("pgd_linf_0.1")])
    assert list(audited.directions) == ["audit/full_test_clean_acc", "audit/autoattack_linf_0.1", "train_time_s"]
    ranked = {r.trial_id: r for r in audited.rows}
    assert ranked["a"].objectives == {
        "audit/full_test_clean_acc": 0.87,
        "audit/autoattack_linf_0.1": 0.40,
        "train_time_s": 10,
    }
    assert audits["b"].pgd_unreliable_at == ["0.1"] and not audits["b"].masking_suspected
    assert ranked["b"].rank is not None and ranked["c"].rank is None and audits["c"].masking_suspected
    searched = searched_on_test(record, rows)
    assert list(searched.directions) == ["test/clean_acc", "test/robust_acc/pgd_linf_0.1", "train_time_s"]
    assert [r.objectives["test/robust_acc/pgd_linf_0.1"] for r in searched.rows] == [0.52, 0.61, 0.69]
    assert all(r.rank is None for r in rows) and rows[0].objectives["clean_acc"] == 0.9  # the search's rows untouched
    exported = ranked["a"].export([])  # test figures already: no `test/` twin columns
    assert {"audit/full_test_clean_acc", "audit/autoattack_linf_0.1"} <= set(exported)
    assert not any(k.startswith(("test/audit/", "test/test/")) for k in exported)
    assert not any(k.startswith("test/test/") for k in searched.rows[0].export([]))


def test_the_audited_radii_are_the_robust_objectives_and_the_final_attacks_of_their_norm_not_corruptions():
    from sweeps.audit import audited_radii
    from sweeps.spec import load_spec

    assert audited_radii(load_spec("quick")) == {"linf": (0.1, 0.05, 0.2, 0.3)}  # quick also names corrupt_paper9_3
