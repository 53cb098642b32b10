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
def craft_mode(model: nn.Module, bn: str):
    """The mode attacks are crafted in: "eval" (running statistics, untouched; dropout off) or "train" (batch
    statistics, each pass updating the running ones, as the paper's code does); the mode is restored after."""
    was_training = model.training
    model.train(bn == "train")
    try:
        yield
    finally:
        model.train(was_training)


def bn_buffers(model: nn.Module) -> list[torch.Tensor]:
    """Every BatchNorm's running_mean, running_var and num_batches_tracked (those it has), in one list."""
    return [
        b
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        for b in (m.running_mean, m.running_var, m.num_batches_tracked)
        if b is not None
    ]


@contextmanager
def bn_running_stats_frozen(model: nn.Module):
    """BatchNorm still normalises with batch statistics, and its running statistics end as they were: snapshot
    and restored, which also holds for `momentum=None` (a cumulative average over num_batches_tracked, where
    setting momentum to 0 would not help)."""
    buffers = bn_buffers(model)
    saved = [b.clone() for b in buffers]
    try:
        yield
    finally:
        if buffers:
            with torch.no_grad():
                torch._foreach_copy_(buffers, saved)


# ---- input perturbations -------------------------------------------------------------------------------------


class NoInputPerturbation:
    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x


@dataclass
class PGD:
    """Projected gradient ascent on the loss in the ε-ball around x, clipped to [0, 1] (Madry et al. 2018).
    Crafted with the model in eval mode by default, so attack passes never touch BatchNorm statistics;
    `craft_bn="train"` crafts in train mode as the paper's code does (batch statistics, running ones updated)."""

    norm: str  # "linf" | "l2"
    eps: float
    alpha: float
    steps: int
    random_start: bool = True
    forward_dtype: torch.dtype | None = None  # bf16 autocast for the attack's forward passes
    craft_bn: str = "eval"  # "eval" | "train": the model's mode while crafting

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
        with craft_mode(model, self.craft_bn):
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

    def __init__(
        self,
        norm: str,
        eps: float,
        alpha: float | None = None,
        forward_dtype: torch.dtype | None = None,
        craft_bn: str = "eval",
    ):
        super().__init__(
            norm,
            eps,
            1.25 * eps if alpha is None else alpha,
            steps=1,
            random_start=True,
            forward_dtype=forward_dtype,
            craft_bn=craft_bn,
        )


PAPER_SMALL_EPS = 2 / 255  # the paper's AT: ℓ∞ ε up to this takes 5 steps of ε/2, larger ε 10 steps of ε/4


def pgd_steps(
    norm: str, eps: float, attack_steps: int = 10, alpha: float | None = None, step_schedule: str = "fixed"
) -> tuple[int, float]:
    """(steps, α) of training PGD. fixed: `attack_steps`, and α = 2.5ε/steps unless given (Madry et al.'s
    ratio); paper: the paper's rule (weizeming/SAM_AT's runs): ℓ∞ ε <= 2/255 -> 5 steps of ε/2, ℓ∞ ε > 2/255 ->
    10 steps of ε/4, ℓ2 (ε 16-128/255) -> 5 steps of ε/2."""
    if step_schedule == "paper":
        if alpha is not None:
            raise ValueError("step_schedule paper sets the step size from ε; leave alpha unset")
        if norm == "l2" or eps <= PAPER_SMALL_EPS * (1 + 1e-6):  # 2/255 written as a decimal still counts
            return 5, eps / 2
        return 10, eps / 4
    if step_schedule != "fixed":
        raise ValueError(f"unknown step_schedule {step_schedule!r}; choose fixed or paper")
    return attack_steps, 2.5 * eps / attack_steps if alpha is None else alpha


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

    def perturbation(
        self, params: list[torch.Tensor], grads: list[torch.Tensor], scaled: list[bool] | None = None
    ) -> list[torch.Tensor]:
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        return torch._foreach_mul(grads, self.rho / (norm + 1e-12))

    def ascent_params(self, model: nn.Module) -> tuple[list[torch.Tensor], list[bool] | None]:
        """The parameters the ascent moves (those with a gradient) and, for ASAM, which of them it scales."""
        return [p for p in model.parameters() if p.grad is not None], None

    def step(self, model: nn.Module, loss_fn: LossFn, optimizer: torch.optim.Optimizer):
        optimizer.zero_grad(set_to_none=True)
        loss, logits = loss_fn()
        loss.backward()
        params, scaled = self.ascent_params(model)
        with torch.no_grad():  # ascent
            e = self.perturbation(params, [p.grad for p in params], scaled)
            torch._foreach_add_(params, e)
        optimizer.zero_grad(set_to_none=True)
        with bn_running_stats_frozen(model):  # descent: running statistics stay as the first pass left them
            loss_fn()[0].backward()
        with torch.no_grad():
            torch._foreach_sub_(params, e)
        optimizer.step()
        return loss.detach(), logits.detach()


class ASAM(SAM):
    """Adaptive SAM (Kwon et al. 2021): the ball is scaled per weight by T = |w| + η, e = ρ·T²g/‖Tg‖, so the
    sharpness measure is invariant to rescaling the weights. As the authors' code (SamsungLabs/ASAM, copied by
    the paper's fork) only parameters whose name contains `weight` are scaled; the others (biases, ViT's class
    token and position embedding) keep T = 1. The norm runs over all parameters."""

    def __init__(self, rho: float, eta: float = 0.01):
        super().__init__(rho)
        self.eta = eta

    def perturbation(
        self, params: list[torch.Tensor], grads: list[torch.Tensor], scaled: list[bool] | None = None
    ) -> list[torch.Tensor]:
        idx = list(range(len(params))) if scaled is None else [i for i, s in enumerate(scaled) if s]
        tg, t2g = list(grads), list(grads)  # T g and T² g, with T = 1 outside `idx`
        if idx:
            t = torch._foreach_add(torch._foreach_abs([params[i] for i in idx]), self.eta)
            scaled_once = torch._foreach_mul([grads[i] for i in idx], t)
            scaled_twice = torch._foreach_mul(scaled_once, t)
            for i, once, twice in zip(idx, scaled_once, scaled_twice):
                tg[i], t2g[i] = once, twice
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tg)))
        return torch._foreach_mul(t2g, self.rho / (norm + 1e-12))

    def ascent_params(self, model: nn.Module) -> tuple[list[torch.Tensor], list[bool]]:
        named = [(n, p) for n, p in model.named_parameters() if p.grad is not None]
        return [p for _, p in named], ["weight" in n for n, _ in named]


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
    step_schedule: str = "fixed",
    craft_bn: str = "eval",
) -> TrainStep:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    kind = INPUT_PERTURBATION[method]
    if kind == "pgd":  # the step schedule is PGD's alone: only resolved for methods that craft with PGD
        steps, step_size = pgd_steps(norm, eps, attack_steps, alpha, step_schedule)
        inputs = PGD(norm, eps, step_size, steps, forward_dtype=forward_dtype, craft_bn=craft_bn)
    elif kind == "fgsm":
        inputs = FGSM(norm, eps, alpha, forward_dtype=forward_dtype, craft_bn=craft_bn)
    else:
        inputs = NoInputPerturbation()
    weights = {"none": NoWeightPerturbation(), "sam": SAM(rho), "asam": ASAM(rho, eta)}[WEIGHT_PERTURBATION[method]]
    return TrainStep(inputs, weights, forward_dtype)
