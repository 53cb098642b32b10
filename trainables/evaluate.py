"""Clean and robust accuracy through torchattacks, model in eval mode, attacks in pixel space. Attacks are
named as in `trainables.vocabulary` (`pgd_linf_2of255` reports `robust_acc/pgd_linf_2of255`, or
`robust_acc_upto/pgd_linf_2of255` where it is the worst case over a cascade of radii: see `evaluate`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainables.step import eval_mode
from trainables.vocabulary import CLEAN_ACC, TEST_LOSS, AttackSpec, CorruptionSpec, robust_metrics

# (corruption, n) -> the first n evaluation images under that corruption and their labels (trainables.run)
Corrupted = Callable[[CorruptionSpec, int], tuple[torch.Tensor, torch.Tensor]]

# AutoAttack's standard version as its reference code runs it (fra31/auto-attack `autoattack/autoattack.py`,
# `version="standard"`): APGD-CE, APGD-T, FAB-T and Square in that order, each on the images still classified
# correctly; 100 iterations, one restart, EOT 1 and step-size decay ρ = 0.75 for the APGDs; APGD-T and FAB-T over
# the 9 most likely other classes; Square with p_init 0.8, 5000 queries and its schedule NOT rescaled to the query
# budget (`resc_schedule=False`). torchattacks 3.5.1's own AutoAttack keeps its parts' defaults (10 iterations;
# n_classes - 1 targets; Square's rescaled schedule), so the parts are built here with every argument given.
AUTOATTACK_ITERATIONS = 100
AUTOATTACK_TARGETS = 9
APGD_RHO = 0.75
SQUARE_QUERIES = 5000
SQUARE_P_INIT = 0.8
FAB_STEP = {"alpha_max": 0.1, "eta": 1.05, "beta": 0.9}  # FAB's step parameters (fab_base.py's defaults)
SEED = 0


def autoattack(model: nn.Module, norm: str, eps: float, num_classes: int):
    """The reference standard AutoAttack (see AUTOATTACK_ITERATIONS' comment) as one torchattacks MultiAttack."""
    import torchattacks  # noqa: PLC0415 - see build_attack

    # torchattacks targets n_classes - 1 classes: this makes it 9 (every other class when there are fewer)
    targets_as_classes = min(num_classes, AUTOATTACK_TARGETS + 1)
    apgd = {"norm": norm, "eps": eps, "steps": AUTOATTACK_ITERATIONS, "n_restarts": 1, "eot_iter": 1, "seed": SEED}
    return torchattacks.MultiAttack(
        [
            torchattacks.APGD(model, **apgd, loss="ce", rho=APGD_RHO),
            torchattacks.APGDT(model, **apgd, rho=APGD_RHO, n_classes=targets_as_classes),
            torchattacks.FAB(
                model,
                norm=norm,
                eps=eps,
                steps=AUTOATTACK_ITERATIONS,
                n_restarts=1,
                **FAB_STEP,
                multi_targeted=True,
                n_classes=targets_as_classes,
                seed=SEED,
            ),
            torchattacks.Square(
                model,
                norm=norm,
                eps=eps,
                n_queries=SQUARE_QUERIES,
                n_restarts=1,
                p_init=SQUARE_P_INIT,
                loss="margin",
                resc_schedule=False,
                seed=SEED,
            ),
        ]
    )


def build_attack(attack: AttackSpec, model: nn.Module, num_classes: int):
    """The torchattacks object for an attack name's spec."""
    import torchattacks  # noqa: PLC0415 - ~6 s to import (it pulls in robustbench): only evaluation pays it

    norm, eps = {"linf": "Linf", "l2": "L2"}[attack.norm], attack.eps
    if attack.kind == "fgsm":
        return torchattacks.FGSM(model, eps=eps)
    if attack.kind == "pgd" and attack.norm == "linf":
        return torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=attack.steps, random_start=True)
    if attack.kind == "pgd":
        return torchattacks.PGDL2(model, eps=eps, alpha=eps / 4, steps=attack.steps, random_start=True)
    if attack.kind == "apgd":
        return torchattacks.APGD(
            model, norm=norm, eps=eps, steps=attack.steps, n_restarts=1, loss="ce", eot_iter=1, rho=APGD_RHO, seed=SEED
        )
    if attack.kind == "autoattack":
        return autoattack(model, norm, eps, num_classes)
    if attack.kind == "fab":
        return torchattacks.FAB(
            model, norm=norm, eps=eps, steps=AUTOATTACK_ITERATIONS, n_classes=num_classes, seed=SEED
        )
    if attack.kind == "square":  # the Square Attack's own defaults: p_init 0.8, the schedule rescaled to the budget
        return torchattacks.Square(model, norm=norm, eps=eps, n_queries=attack.steps, p_init=SQUARE_P_INIT, seed=SEED)
    return torchattacks.CW(model, c=1, kappa=0, steps=attack.steps, lr=0.01)


@contextmanager
def input_gradients_only(model: nn.Module):
    """Parameters stop requiring grad meanwhile. For attacks that call `.backward()` (torchattacks' FAB and
    CW) this skips every weight-gradient kernel and leaves nothing in `.grad`; attacks that ask
    `torch.autograd.grad` for the input gradient (PGD, FGSM) get both without it."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def clean_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> dict[str, float]:
    correct = torch.zeros((), device=x.device)
    loss = torch.zeros((), device=x.device)
    with eval_mode(model), torch.no_grad():
        for i in range(0, len(y), batch_size):
            logits = model(x[i : i + batch_size])
            correct += (logits.argmax(1) == y[i : i + batch_size]).sum()
            loss += F.cross_entropy(logits, y[i : i + batch_size], reduction="sum")
    return {CLEAN_ACC: correct.item() / len(y), TEST_LOSS: loss.item() / len(y)}  # one host sync each


def robust_accuracy(
    model: nn.Module, attack: AttackSpec, x: torch.Tensor, y: torch.Tensor, num_classes: int, batch_size: int = 500
) -> float:
    """Accuracy on the attacked images."""
    return robust_correct(model, attack, x, y, num_classes, batch_size).sum().item() / len(y)  # exact, not fp32


def robust_correct(
    model: nn.Module,
    attack: AttackSpec,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    batch_size: int = 500,
    among: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per image, whether the model still classifies it correctly once attacked. Only images it classifies
    correctly are attacked, as AutoAttack's reference code does: an image it gets wrong is its own adversarial
    example (ε-ball includes it), never robust, even if a random start happens to land on a correct point.
    With `among` (a mask), only those images are attacked; the others count as broken.
    Parameters are frozen meanwhile: attacks need input gradients only, and FAB and CW call `.backward()`, which
    would otherwise also compute (and keep) weight gradients."""
    correct = []
    with eval_mode(model), input_gradients_only(model):
        atk = build_attack(attack, model, num_classes)
        for i in range(0, len(y), batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            with torch.no_grad():
                survives = model(xb).argmax(1) == yb
            if among is not None:
                survives &= among[i : i + batch_size]
            if survives.any():
                adv = atk(xb[survives], yb[survives])
                with torch.no_grad():
                    survives[survives.clone()] = model(adv).argmax(1) == yb[survives]
            correct.append(survives)
    return torch.cat(correct)


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    attacks: list[AttackSpec | CorruptionSpec] = (),
    n_robust: int = 1000,
    batch_size: int = 500,
    standalone: Sequence[AttackSpec] = (),
    corrupted: Corrupted | None = None,
) -> dict[str, float]:
    """Clean accuracy on the whole test set; robust accuracy on its first `n_robust` images for each attack,
    under the metric names of `trainables.vocabulary.robust_metrics`; for each corruption, accuracy on those
    images corrupted (`corrupted` provides them), and a mean's parts under their own names.

    Attacks of one kind, norm and step count at several radii go smallest first, and each larger radius attacks
    only the images the smaller ones left standing: an adversarial example inside the smaller ε-ball lies inside
    the larger one, so an image broken at ε is broken at every larger ε. The figure at a larger radius is then
    the accuracy under all of that kind's attacks up to it (the worst case found in the ball: `robust_acc_upto/`),
    and each point of a robustness curve costs only what is still standing. An attack in `standalone` (the
    objectives) is measured alone, on every image, so that it means the same wherever it is measured
    (`robust_acc/`); what it leaves standing still narrows the larger radii."""
    metrics = clean_accuracy(model, x, y, batch_size)
    for corruption in (c for c in attacks if isinstance(c, CorruptionSpec)):
        parts = {
            p.metric: clean_accuracy(model, *corrupted(p, n_robust), batch_size)[CLEAN_ACC] for p in corruption.parts
        }
        metrics |= parts | {corruption.metric: sum(parts.values()) / len(parts)}
    attacks = [a for a in attacks if isinstance(a, AttackSpec)]
    names = robust_metrics(attacks, standalone)
    standing: dict[tuple, torch.Tensor] = {}  # (kind, norm, steps) -> survivors of every radius so far
    xs, ys = x[:n_robust], y[:n_robust]
    robust = {}
    for attack in sorted(attacks, key=lambda a: a.eps):
        family = (attack.kind, attack.norm, attack.steps)
        before = standing.get(family)
        alone = attack in standalone
        survivors = robust_correct(model, attack, xs, ys, num_classes, batch_size, None if alone else before)
        robust[attack] = survivors.sum().item() / len(ys)  # exact, not fp32
        standing[family] = survivors & before if alone and before is not None else survivors
    return metrics | {names[a]: robust[a] for a in attacks}
