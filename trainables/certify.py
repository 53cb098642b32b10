"""Certify one model's robustness: AutoAttack (the reference standard version) at the objective's ε and other
radii, and the sanity checks of Carlini et al. 2019, "On Evaluating Adversarial Robustness" (§5), that tell a
robust model from one whose gradients are masked:

    monotone_in_eps         accuracy does not rise as ε grows (PGD-10 over a ladder of radii)
    chance_at_large_eps     and it falls to chance at a radius that can turn every image into any other
    more_steps_not_weaker   PGD with 5x the steps and 5 restarts is not weaker than PGD-10
    black_box_not_stronger  Square (no gradients; 1000 queries) is not stronger than the white-box attacks
    fgsm_not_stronger       one FGSM step is not stronger than PGD (ℓ∞ only)

Two accuracies on the same n images count as different only beyond `slack(n)`: max(1 point, 2 images)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from trainables.evaluate import clean_accuracy, robust_accuracy, robust_correct
from trainables.vocabulary import CLEAN_ACC, AttackSpec

RESTARTS = 5
STEP_FACTOR = 5
SQUARE_QUERIES = 1000  # for the check only: a weaker black box that still beats a masked gradient (AutoAttack's
# own Square keeps the reference 5000)


def slack(n: int) -> float:
    return max(0.01, 2 / n)


def large_eps(norm: str, x: torch.Tensor) -> float:
    """A radius that reaches a constant grey image from any image in [0, 1]: there every class is one guess."""
    return 0.5 if norm == "linf" else 0.5 * math.sqrt(x[0].numel())


def eps_ladder(eps: float, norm: str, x: torch.Tensor) -> list[float]:
    """ε/2, ε, 2ε, 4ε, ... below the large radius, then the large radius."""
    top, ladder = large_eps(norm, x), [eps / 2]
    while ladder[-1] * 2 < top:
        ladder.append(ladder[-1] * 2)
    return [*ladder, top]


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Certificate:
    eps: float
    norm: str
    accuracies: dict[str, float]  # attack name (or clean_acc) -> accuracy on the certified images
    images: int
    checks: list[Check] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "true" if all(c.passed for c in self.checks) else "suspect"

    @property
    def reasons(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.passed]


def worst_of_restarts(model: nn.Module, attack: AttackSpec, x, y, num_classes: int, restarts: int) -> float:
    """Accuracy when an image counts as robust only if it survives every restart (each a fresh random start)."""
    survives = torch.ones(len(y), dtype=torch.bool, device=y.device)
    for _ in range(restarts):
        survives &= robust_correct(model, attack, x, y, num_classes)
    return survives.sum().item() / len(y)


def named(kind: str, norm: str, eps: float, steps: int = 0) -> AttackSpec:
    """An attack as samat names it: ε in 255ths where it is a whole number of them, else a plain number."""
    return AttackSpec(kind, norm, eps, steps, per_255=abs(eps * 255 - round(eps * 255)) < 1e-6)


def certify(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    norm: str,
    eps: float,
    radii: tuple[float, ...] = (),
) -> Certificate:
    """AutoAttack at `eps` and each of `radii`, and the sanity checks at `eps`, on the images x, y."""
    certificate = sanity_checks(model, x, y, num_classes, norm, eps)
    for e in dict.fromkeys([eps, *radii]):
        auto = named("autoattack", norm, e)
        certificate.accuracies[auto.name] = robust_accuracy(model, auto, x, y, num_classes)
    return certificate


def sanity_checks(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, norm: str, eps: float
) -> Certificate:
    """The checks of the module docstring at `eps`, with the accuracies they compare."""

    def spec(kind: str, e: float, steps: int = 0) -> AttackSpec:
        return named(kind, norm, e, steps)

    def acc(attack: AttackSpec) -> float:
        return robust_accuracy(model, attack, x, y, num_classes)

    accuracies = {CLEAN_ACC: clean_accuracy(model, x, y)[CLEAN_ACC]}
    pgd = spec("pgd", eps, 10)
    accuracies[pgd.name] = acc(pgd)
    stronger = spec("pgd", eps, 10 * STEP_FACTOR)
    accuracies[f"{stronger.name}x{RESTARTS}"] = worst_of_restarts(model, stronger, x, y, num_classes, RESTARTS)
    square = spec("square", eps, SQUARE_QUERIES)
    accuracies[square.name] = acc(square)
    ladder = [spec("pgd", e, 10) for e in eps_ladder(eps, norm, x)]
    for attack in ladder:
        accuracies.setdefault(attack.name, acc(attack))

    tol, chance = slack(len(y)), 1 / num_classes
    white_box = min(accuracies[pgd.name], accuracies[f"{stronger.name}x{RESTARTS}"])
    curve = [accuracies[CLEAN_ACC], *(accuracies[a.name] for a in ladder)]
    rises = [(a.name, before, after) for a, before, after in zip(ladder, curve, curve[1:]) if after > before + tol]
    checks = [
        Check(
            "monotone_in_eps",
            not rises,
            "; ".join(f"accuracy rises to {after:.3f} at {n} from {before:.3f}" for n, before, after in rises),
        ),
        Check(
            "chance_at_large_eps",
            curve[-1] <= chance + tol,
            f"{curve[-1]:.3f} at {ladder[-1].name}, chance is {chance:.3f}",
        ),
        Check(
            "more_steps_not_weaker",
            accuracies[f"{stronger.name}x{RESTARTS}"] <= accuracies[pgd.name] + tol,
            f"{stronger.name} x{RESTARTS} restarts {accuracies[f'{stronger.name}x{RESTARTS}']:.3f} > "
            f"{pgd.name} {accuracies[pgd.name]:.3f}",
        ),
        Check(
            "black_box_not_stronger",
            accuracies[square.name] >= white_box - tol,
            f"{square.name} {accuracies[square.name]:.3f} < white-box {white_box:.3f}",
        ),
    ]
    if norm == "linf":
        fgsm = spec("fgsm", eps)
        accuracies[fgsm.name] = acc(fgsm)
        checks.append(
            Check(
                "fgsm_not_stronger",
                accuracies[fgsm.name] >= accuracies[pgd.name] - tol,
                f"{fgsm.name} {accuracies[fgsm.name]:.3f} < {pgd.name} {accuracies[pgd.name]:.3f}",
            )
        )
    return Certificate(eps, norm, accuracies, len(y), checks)
