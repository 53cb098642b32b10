"""Certification in the training core: AutoAttack as its reference code runs it, and the sanity checks that
flag a gradient-masked model while a normal one passes."""

import pytest
import torch
import torch.nn as nn

from trainables.certify import sanity_checks
from trainables.evaluate import build_attack, clean_accuracy, robust_accuracy
from trainables.vocabulary import parse_attack

EPS = 0.1
N = 30  # AutoAttack (its Square: 5000 queries) costs about a second per robust image on a CPU core


@pytest.fixture(scope="module")
def at_model(adversarially_trained_digits):
    """small_cnn adversarially trained on digits at ε = 0.1 (PGD-5): robust enough for the accuracies to differ."""
    return adversarially_trained_digits[1]


@pytest.mark.parametrize("classes, targets", [(10, 9), (100, 9), (5, 4)])
def test_autoattack_is_the_reference_standard_version(classes, targets):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, classes))
    apgd, apgdt, fab, square = build_attack(parse_attack("autoattack_linf_8of255"), model, classes).attacks
    assert type(apgd).__name__ == "APGD" and apgd.steps == 100 and apgd.loss == "ce" and apgd.n_restarts == 1
    assert type(apgdt).__name__ == "APGDT" and apgdt.steps == 100 and apgdt.n_target_classes == targets
    assert type(fab).__name__ == "FAB" and fab.multi_targeted and fab.steps == 100 and fab.n_target_classes == targets
    assert type(square).__name__ == "Square" and square.n_queries == 5000
    assert all(a.eps == pytest.approx(8 / 255) for a in (apgd, apgdt, fab, square)) and apgd.seed == 0


def test_autoattack_is_at_least_as_strong_as_pgd50_and_pgd10(at_model, digits):
    x, y = digits.test_x[:N], digits.test_y[:N]
    torch.manual_seed(0)
    clean = clean_accuracy(at_model, x, y)["clean_acc"]
    pgd10, pgd50, auto = (
        robust_accuracy(at_model, parse_attack(name), x, y, 10)
        for name in ("pgd_linf_0.1", "pgd50_linf_0.1", "autoattack_linf_0.1")
    )
    assert auto <= pgd50 <= pgd10 < clean, (auto, pgd50, pgd10, clean)
    assert pgd10 > 0.3  # a robust model, so the ordering says something


class Quantised(nn.Module):
    """Rounds its input to 3 grey levels before the model: the gradient is zero almost everywhere, so gradient
    attacks see nothing while the model is as fragile as before."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.round(x * 2) / 2)


def test_a_gradient_masked_model_is_suspect_and_a_normal_one_passes(at_model, digits):
    x, y = digits.test_x[:N], digits.test_y[:N]
    torch.manual_seed(0)
    normal = sanity_checks(at_model, x, y, 10, "linf", EPS)
    assert normal.verdict == "true", normal.reasons
    assert len(normal.checks) == 5 and normal.accuracies["pgd50_linf_0.1x5"] <= normal.accuracies["pgd_linf_0.1"]
    masked = sanity_checks(Quantised(at_model).eval(), x, y, 10, "linf", EPS)
    assert masked.verdict == "suspect"
    failed = {c.name for c in masked.checks if not c.passed}
    # a zero gradient leaves PGD where its random start put it: even a ball that reaches a uniform grey image
    # does not bring accuracy to chance, and a black-box attack may beat the white-box ones
    assert failed and failed <= {"chance_at_large_eps", "black_box_not_stronger", "monotone_in_eps"}, masked.reasons
