"""A training step = an input perturbation (none | FGSM | PGD) composed with a weight perturbation
(none | SAM | ASAM): the paper's duality, with each side a small class. Which method composes which is the
table in `trainables.vocabulary`; `make_step` builds it."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainables.vocabulary import INPUT_PERTURBATION, METHODS, WEIGHT_PERTURBATION

LossFn = Callable[[], tuple[torch.Tensor, torch.Tensor]]  # () -> (loss, logits) at the current weights


def autocast(x: torch.Tensor, dtype: torch.dtype | None):
    """Forward passes in `dtype` (bf16) where given; a no-op for fp32."""
    return torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None)


@contextmanager
def eval_mode(model: nn.Module):
    """BatchNorm uses running statistics and leaves them alone; dropout is off; the mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextmanager
def bn_running_stats_frozen(model: nn.Module):
    """BatchNorm still normalises with batch statistics but momentum 0 keeps its running statistics as they are."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum


# ---- input perturbations -------------------------------------------------------------------------------------


class NoInputPerturbation:
    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x


@dataclass
class PGD:
    """Projected gradient ascent on the loss in the ε-ball around x, clipped to [0, 1] (Madry et al. 2018).
    Crafted with the model in eval mode so attack passes never touch BatchNorm statistics."""

    norm: str  # "linf" | "l2"
    eps: float
    alpha: float
    steps: int
    random_start: bool = True
    forward_dtype: torch.dtype | None = None  # bf16 autocast for the attack's forward passes

    def project(self, delta: torch.Tensor) -> torch.Tensor:
        if self.norm == "linf":
            return delta.clamp(-self.eps, self.eps)
        norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return delta * (self.eps / norms).clamp(max=1.0)

    def ascend(self, delta: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        if self.norm == "linf":
            return delta + self.alpha * grad.sign()
        norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return delta + self.alpha * grad / norms

    def random_delta(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm == "linf":
            return torch.empty_like(x).uniform_(-self.eps, self.eps)
        direction = torch.randn_like(x)
        direction /= direction.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return direction * self.eps * torch.rand(len(x), 1, 1, 1, device=x.device)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        delta = self.random_delta(x) if self.random_start else torch.zeros_like(x)
        delta = (x + delta).clamp(0, 1) - x
        with eval_mode(model):
            for _ in range(self.steps):
                delta.requires_grad_(True)
                with autocast(x, self.forward_dtype):
                    logits = model(x + delta)
                loss = F.cross_entropy(logits.float(), y)
                # the input gradient only: backward skips the weight-gradient kernels (a step costs ~3/4 of
                # a training pass) and nothing reaches the parameters' .grad, so SAM's ascent sees no leak
                (grad,) = torch.autograd.grad(loss, delta)
                delta = (x + self.project(self.ascend(delta.detach(), grad))).clamp(0, 1) - x
        return (x + delta).detach()


class FGSM(PGD):
    """FastAT's FGSM (Wong et al. 2020): one step of α = 1.25ε from a uniform random start in the ε-ball."""

    def __init__(self, norm: str, eps: float, alpha: float | None = None, forward_dtype: torch.dtype | None = None):
        super().__init__(
            norm, eps, 1.25 * eps if alpha is None else alpha, steps=1, random_start=True, forward_dtype=forward_dtype
        )


# ---- weight perturbations ------------------------------------------------------------------------------------


class NoWeightPerturbation:
    def step(self, model: nn.Module, loss_fn: LossFn, optimizer: torch.optim.Optimizer):
        optimizer.zero_grad(set_to_none=True)
        loss, logits = loss_fn()
        loss.backward()
        optimizer.step()
        return loss.detach(), logits.detach()


class SAM:
    """Sharpness-aware minimisation (Foret et al. 2021), as davda54/sam's two phases:
    ascent   — g = ∇L(w); move to w + e(w) with e = ρ·g/‖g‖ (one norm over all parameters);
    descent  — take ∇L(w + e) with BatchNorm's running statistics frozen, return to w, let the base optimiser
               (SGD, weight decay, momentum) step with that gradient."""

    def __init__(self, rho: float):
        self.rho = rho

    def perturbation(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> list[torch.Tensor]:
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        return torch._foreach_mul(grads, self.rho / (norm + 1e-12))

    def step(self, model: nn.Module, loss_fn: LossFn, optimizer: torch.optim.Optimizer):
        optimizer.zero_grad(set_to_none=True)
        loss, logits = loss_fn()
        loss.backward()
        params = [p for p in model.parameters() if p.grad is not None]
        with torch.no_grad():  # ascent
            e = self.perturbation(params, [p.grad for p in params])
            torch._foreach_add_(params, e)
        optimizer.zero_grad(set_to_none=True)
        with bn_running_stats_frozen(model):  # descent
            loss_fn()[0].backward()
        with torch.no_grad():
            torch._foreach_sub_(params, e)
        optimizer.step()
        return loss.detach(), logits.detach()


class ASAM(SAM):
    """Adaptive SAM (Kwon et al. 2021): the ball is scaled per weight by T = |w| + η, e = ρ·T²g/‖Tg‖, so the
    sharpness measure is invariant to rescaling the weights."""

    def __init__(self, rho: float, eta: float = 0.01):
        super().__init__(rho)
        self.eta = eta

    def perturbation(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> list[torch.Tensor]:
        scales = torch._foreach_add(torch._foreach_abs(params), self.eta)
        scaled = torch._foreach_mul(grads, scales)  # T g
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(scaled)))
        return torch._foreach_mul(torch._foreach_mul(scaled, scales), self.rho / (norm + 1e-12))


# ---- the composition -----------------------------------------------------------------------------------------


@dataclass
class TrainStep:
    input_perturbation: NoInputPerturbation | PGD
    weight_perturbation: NoWeightPerturbation | SAM
    forward_dtype: torch.dtype | None = None  # bf16 autocast for forward passes; the loss and backward stay fp32

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer):
        """One optimiser step; returns (loss, logits) on the (possibly perturbed) batch at the current weights."""
        x = self.input_perturbation(model, x, y)  # detached: no attack gradient reaches the weight step

        def loss_fn():
            with autocast(x, self.forward_dtype):
                logits = model(x)
            return F.cross_entropy(logits.float(), y), logits

        return self.weight_perturbation.step(model, loss_fn, optimizer)


def make_step(
    method: str,
    *,
    rho: float = 0.05,
    eta: float = 0.01,
    norm: str = "linf",
    eps: float = 8 / 255,
    attack_steps: int = 10,
    alpha: float | None = None,
    forward_dtype: torch.dtype | None = None,
) -> TrainStep:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    pgd = PGD(
        norm, eps, 2.5 * eps / attack_steps if alpha is None else alpha, attack_steps, forward_dtype=forward_dtype
    )
    fgsm = FGSM(norm, eps, alpha, forward_dtype=forward_dtype)
    inputs = {"none": NoInputPerturbation(), "pgd": pgd, "fgsm": fgsm}[INPUT_PERTURBATION[method]]
    weights = {"none": NoWeightPerturbation(), "sam": SAM(rho), "asam": ASAM(rho, eta)}[WEIGHT_PERTURBATION[method]]
    return TrainStep(inputs, weights, forward_dtype)
