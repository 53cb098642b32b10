"""The training step: SAM and ASAM against their formulas computed by hand, BatchNorm statistics, attacks."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from trainables.step import ASAM, FGSM, PGD, SAM, TrainStep, make_step


def softmax_regression_grads(w, b, x, y):
    """Hand-derived gradient of mean cross-entropy for logits = x wᵀ + b: ((p - onehot)ᵀ x, Σ(p - onehot)) / N."""
    p = torch.softmax(x @ w.T + b, dim=1)
    r = (p - F.one_hot(y, w.shape[0]).float()) / len(y)
    return r.T @ x, r.sum(0)


@pytest.fixture
def linear_problem():
    torch.manual_seed(0)
    model = nn.Linear(3, 4)
    x, y = torch.randn(8, 3), torch.randint(0, 4, (8,))
    return model, x, y


def one_step(model, method, x, y, lr=0.5, **kw):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    make_step(method, **kw)(model, x, y, optimizer)
    return model.weight.detach(), model.bias.detach()


def test_sam_step_matches_formula(linear_problem):
    model, x, y = linear_problem
    w, b, rho, lr = model.weight.detach().clone(), model.bias.detach().clone(), 0.3, 0.5
    gw, gb = softmax_regression_grads(w, b, x, y)
    norm = torch.sqrt((gw**2).sum() + (gb**2).sum())  # one norm over all parameters
    gw2, gb2 = softmax_regression_grads(w + rho * gw / norm, b + rho * gb / norm, x, y)
    new_w, new_b = one_step(model, "sam", x, y, lr=lr, rho=rho)
    torch.testing.assert_close(new_w, w - lr * gw2)
    torch.testing.assert_close(new_b, b - lr * gb2)
    # and it is not plain SGD
    assert not torch.allclose(new_w, w - lr * gw, atol=1e-5)


def test_asam_step_matches_formula(linear_problem):
    model, x, y = linear_problem
    w, b, rho, eta, lr = model.weight.detach().clone(), model.bias.detach().clone(), 1.0, 0.01, 0.5
    gw, gb = softmax_regression_grads(w, b, x, y)
    tw, tb = w.abs() + eta, b.abs() + eta
    norm = torch.sqrt(((tw * gw) ** 2).sum() + ((tb * gb) ** 2).sum())
    gw2, gb2 = softmax_regression_grads(w + rho * tw**2 * gw / norm, b + rho * tb**2 * gb / norm, x, y)
    new_w, new_b = one_step(model, "asam", x, y, lr=lr, rho=rho, eta=eta)
    torch.testing.assert_close(new_w, w - lr * gw2)
    torch.testing.assert_close(new_b, b - lr * gb2)


def test_sam_with_rho_zero_is_sgd(linear_problem):
    model, x, y = linear_problem
    twin = copy.deepcopy(model)
    torch.testing.assert_close(one_step(model, "sam", x, y, rho=0.0), one_step(twin, "sgd", x, y))


def bn_model():
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)
    )


def test_sam_updates_batchnorm_statistics_in_first_pass_only():
    model = bn_model()
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    bn = model[1]
    before = bn.running_mean.clone()
    first_pass_only = copy.deepcopy(model)
    first_pass_only.train()
    first_pass_only(x)  # what one forward pass at the unperturbed weights does to the statistics
    model.train()
    make_step("sam", rho=0.5)(model, x, y, torch.optim.SGD(model.parameters(), lr=0.1))
    assert not torch.allclose(bn.running_mean, before)
    torch.testing.assert_close(bn.running_mean, first_pass_only[1].running_mean)
    torch.testing.assert_close(bn.running_var, first_pass_only[1].running_var)
    assert bn.momentum == 0.1  # restored after the second pass


@pytest.mark.parametrize(
    "attack", [PGD("linf", 0.1, 0.025, 10), PGD("l2", 0.5, 0.125, 10), FGSM("linf", 0.1), FGSM("l2", 0.5)]
)
def test_input_perturbation_stays_in_ball_and_range_and_raises_loss(trained_digits_model, digits, attack):
    model = trained_digits_model
    model.train()  # the attack must switch to eval itself and come back
    x, y = digits.test_x[:200], digits.test_y[:200]
    stats = model[1][0][1].running_mean.clone()
    torch.manual_seed(0)
    adv = attack(model, x, y)
    assert model.training
    torch.testing.assert_close(model[1][0][1].running_mean, stats, rtol=0, atol=0)  # BN untouched
    assert all(p.grad is None for p in model.parameters())
    delta = (adv - x).flatten(1)
    size = delta.abs().amax(1) if attack.norm == "linf" else delta.norm(dim=1)
    assert size.max() <= attack.eps + 1e-5
    assert adv.min() >= 0 and adv.max() <= 1
    model.eval()
    with torch.no_grad():
        assert F.cross_entropy(model(adv), y) > F.cross_entropy(model(x), y)


def test_sam_at_gets_no_gradient_from_the_attack(trained_digits_model, digits):
    """sam_at must equal: craft PGD examples, forget every gradient, then a SAM step on those examples."""
    x, y = digits.train_x[:64], digits.train_y[:64]
    model_a, model_b = copy.deepcopy(trained_digits_model), copy.deepcopy(trained_digits_model)
    for m in (model_a, model_b):
        m.train()
    step = make_step("sam_at", rho=0.2, eps=0.1, attack_steps=3)
    assert isinstance(step.input_perturbation, PGD) and isinstance(step.weight_perturbation, SAM)
    torch.manual_seed(5)
    step(model_a, x, y, torch.optim.SGD(model_a.parameters(), lr=0.1))

    torch.manual_seed(5)
    adv = PGD("linf", 0.1, 2.5 * 0.1 / 3, 3)(model_b, x, y)
    assert all(p.grad is None for p in model_b.parameters())
    TrainStep(lambda model, x, y: adv, SAM(0.2))(model_b, x, y, torch.optim.SGD(model_b.parameters(), lr=0.1))
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


def test_methods_compose_the_right_perturbations():
    kinds = {
        m: (type(s.input_perturbation).__name__, type(s.weight_perturbation).__name__)
        for m in ("sgd", "sam", "asam", "at", "fast_at", "sam_at")
        for s in [make_step(m)]
    }
    assert kinds == {
        "sgd": ("NoInputPerturbation", "NoWeightPerturbation"),
        "sam": ("NoInputPerturbation", "SAM"),
        "asam": ("NoInputPerturbation", "ASAM"),
        "at": ("PGD", "NoWeightPerturbation"),
        "fast_at": ("FGSM", "NoWeightPerturbation"),
        "sam_at": ("PGD", "SAM"),
    }
    at = make_step("at", eps=0.04, attack_steps=10).input_perturbation
    assert at.alpha == pytest.approx(2.5 * 0.04 / 10) and at.random_start
    fast = make_step("fast_at", eps=0.04).input_perturbation
    assert fast.alpha == pytest.approx(1.25 * 0.04) and fast.steps == 1 and fast.random_start
    assert isinstance(make_step("asam", rho=1.0).weight_perturbation, ASAM)
