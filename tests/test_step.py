"""The training step: SAM and ASAM against their formulas computed by hand, BatchNorm statistics, attacks."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from trainables.step import ASAM, FGSM, PGD, SAM, TrainStep, make_step, pgd_steps


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
    """The ASAM authors' rule (SamsungLabs/ASAM asam.py): T = |w| + η for parameters named `weight`, T = 1 for the
    bias; e = ρ·T²g/‖Tg‖ with one norm over both."""
    model, x, y = linear_problem
    w, b, rho, eta, lr = model.weight.detach().clone(), model.bias.detach().clone(), 1.0, 0.01, 0.5
    gw, gb = softmax_regression_grads(w, b, x, y)
    tw = w.abs() + eta  # the weight is scaled; the bias keeps T = 1
    norm = torch.sqrt(((tw * gw) ** 2).sum() + (gb**2).sum())
    gw2, gb2 = softmax_regression_grads(w + rho * tw**2 * gw / norm, b + rho * gb / norm, x, y)
    new_w, new_b = one_step(model, "asam", x, y, lr=lr, rho=rho, eta=eta)
    torch.testing.assert_close(new_w, w - lr * gw2)
    torch.testing.assert_close(new_b, b - lr * gb2)
    # scaling the bias too (the rule samat used to follow) gives a different step
    tb = b.abs() + eta
    norm_all = torch.sqrt(((tw * gw) ** 2).sum() + ((tb * gb) ** 2).sum())
    _, gb_all = softmax_regression_grads(w + rho * tw**2 * gw / norm_all, b + rho * tb**2 * gb / norm_all, x, y)
    assert not torch.allclose(new_b, b - lr * gb_all, atol=1e-4)


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


def test_sam_second_pass_leaves_cumulative_batchnorm_statistics_alone():
    """momentum=None averages over num_batches_tracked: the second pass must not count, whatever the momentum."""
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=None), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10)
    )
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    model.train()
    model(torch.rand(16, 1, 8, 8))  # some history, so the cumulative average is not just this batch
    first_pass_only = copy.deepcopy(model)
    first_pass_only(x)
    make_step("sam", rho=0.5)(model, x, y, torch.optim.SGD(model.parameters(), lr=0.1))
    bn, expected = model[1], first_pass_only[1]
    assert bn.num_batches_tracked.item() == expected.num_batches_tracked.item() == 2
    torch.testing.assert_close(bn.running_mean, expected.running_mean, rtol=0, atol=0)
    torch.testing.assert_close(bn.running_var, expected.running_var, rtol=0, atol=0)
    assert bn.momentum is None


@pytest.mark.parametrize("craft_bn", ["eval", "train"])
def test_craft_bn_mode_decides_whether_attacks_touch_batchnorm(trained_digits_model, digits, craft_bn):
    """eval (default): the attack's passes leave BatchNorm's running statistics alone; train (the paper's code):
    every attack pass updates them, one count per pass. Either way the model's mode comes back."""
    model = copy.deepcopy(trained_digits_model)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    before = [(m.running_mean.clone(), m.num_batches_tracked.item()) for m in bns]
    x, y = digits.test_x[:64], digits.test_y[:64]
    PGD("linf", 0.1, 0.025, 3, craft_bn=craft_bn)(model, x, y)
    assert model.training
    for m, (mean, count) in zip(bns, before):
        if craft_bn == "eval":
            assert torch.equal(m.running_mean, mean) and m.num_batches_tracked.item() == count
        else:
            assert not torch.equal(m.running_mean, mean) and m.num_batches_tracked.item() == count + 3
    step = make_step("at", eps=0.1, attack_steps=3, craft_bn=craft_bn)
    assert step.input_perturbation.craft_bn == craft_bn
    assert make_step("fast_at", eps=0.1, craft_bn=craft_bn).input_perturbation.craft_bn == craft_bn


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


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 0.5)])
def test_training_pgd_beats_uniform_noise_of_the_same_radius(trained_digits_model, digits, norm, eps):
    """An attack that only added its random start (or did nothing) would pass a loss-goes-up test: PGD must raise
    the loss well above random noise drawn from the same ball, on the same model and batch."""
    model = trained_digits_model
    x, y = digits.test_x[:200], digits.test_y[:200]
    torch.manual_seed(0)
    pgd = PGD(norm, eps, eps / 4, 10)
    noise = (x + pgd.random_delta(x)).clamp(0, 1)
    adv = pgd(model, x, y)
    model.eval()
    with torch.no_grad():
        clean_loss, noise_loss, pgd_loss = (F.cross_entropy(model(v), y).item() for v in (x, noise, adv))
    assert pgd_loss > 2 * noise_loss and pgd_loss > noise_loss + 0.5, (clean_loss, noise_loss, pgd_loss)


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


@pytest.mark.parametrize(
    "norm,eps,steps,alpha_over_eps",
    [
        ("linf", 1 / 255, 5, 1 / 2),
        ("linf", 2 / 255, 5, 1 / 2),  # the boundary belongs to the small radii
        ("linf", 0.00784, 5, 1 / 2),  # 2/255 written as a decimal in a spec
        ("linf", 2.5 / 255, 10, 1 / 4),
        ("linf", 4 / 255, 10, 1 / 4),
        ("linf", 8 / 255, 10, 1 / 4),
        ("l2", 16 / 255, 5, 1 / 2),
        ("l2", 128 / 255, 5, 1 / 2),
    ],
)
def test_paper_step_schedule_ties_steps_and_alpha_to_eps(norm, eps, steps, alpha_over_eps):
    """The paper's AT settings (arXiv 2402.15152): ℓ∞ ε <= 2/255 -> 5 steps of ε/2, larger -> 10 steps of ε/4; ℓ2 -> 5
    of ε/2."""
    assert pgd_steps(norm, eps, step_schedule="paper") == (steps, pytest.approx(eps * alpha_over_eps))
    for method in ("at", "sam_at"):
        pgd = make_step(method, norm=norm, eps=eps, attack_steps=7, step_schedule="paper").input_perturbation
        assert (pgd.steps, pgd.alpha, pgd.eps, pgd.norm) == (steps, pytest.approx(eps * alpha_over_eps), eps, norm)
    fixed = make_step("at", norm=norm, eps=eps, attack_steps=7).input_perturbation  # the default ignores ε
    assert (fixed.steps, fixed.alpha) == (7, pytest.approx(2.5 * eps / 7))
    with pytest.raises(ValueError, match="leave alpha unset"):
        make_step("at", eps=eps, alpha=0.01, step_schedule="paper")
