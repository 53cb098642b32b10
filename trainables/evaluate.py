"""Clean and robust accuracy through torchattacks, model in eval mode, attacks in pixel space.

An attack is named the way its metric is keyed, so a name round-trips: `pgd_linf_2of255` is PGD-10 ℓ∞ with
ε = 2/255 (α = ε/4, random start) and reports `robust_acc/pgd_linf_2of255`. Grammar:
`KIND[STEPS]_NORM_EPS` with KIND in fgsm, pgd, autoattack, fab, square; STEPS only for pgd (default 10);
NORM linf | l2; EPS `8of255` or a plain number such as `0.1`. CW (c = 1, unbounded ℓ2) is `cw[STEPS]`."""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainables.step import eval_mode

KINDS = ("fgsm", "pgd", "autoattack", "fab", "square", "cw")
DEFAULT_STEPS = {"pgd": 10, "cw": 10}
_NAME = re.compile(r"^(?P<kind>[a-z]+?)(?P<steps>\d+)?(?:_(?P<norm>linf|l2)_(?P<eps>\d+(?:\.\d+)?(?:e-?\d+)?)"
                   r"(?P<of255>of255)?)?$")


@dataclass(frozen=True)
class AttackSpec:
    kind: str
    norm: str = "l2"
    eps: float = 0.0
    steps: int = 0
    per_255: bool = True  # name ε in 255ths (8of255) or as a plain number (0.1), as the user wrote it

    @property
    def name(self) -> str:
        if self.kind == "cw":
            return "cw" if self.steps == DEFAULT_STEPS["cw"] else f"cw{self.steps}"
        steps = "" if self.steps == DEFAULT_STEPS.get(self.kind, self.steps) else str(self.steps)
        eps = f"{round(self.eps * 255, 6):g}of255" if self.per_255 else f"{self.eps:g}"
        return f"{self.kind}{steps}_{self.norm}_{eps}"

    @property
    def metric(self) -> str:
        return f"robust_acc/{self.name}"

    def build(self, model: nn.Module, num_classes: int):
        import torchattacks  # imported here: it pulls in robustbench, which only evaluation needs

        torch_norm = {"linf": "Linf", "l2": "L2"}[self.norm]
        if self.kind == "fgsm":
            return torchattacks.FGSM(model, eps=self.eps)
        if self.kind == "pgd" and self.norm == "linf":
            return torchattacks.PGD(model, eps=self.eps, alpha=self.eps / 4, steps=self.steps, random_start=True)
        if self.kind == "pgd":
            return torchattacks.PGDL2(model, eps=self.eps, alpha=self.eps / 4, steps=self.steps, random_start=True)
        if self.kind == "autoattack":
            return torchattacks.AutoAttack(model, norm=torch_norm, eps=self.eps, version="standard",
                                           n_classes=num_classes, seed=0)
        if self.kind == "fab":
            return torchattacks.FAB(model, norm=torch_norm, eps=self.eps, n_classes=num_classes, seed=0)
        if self.kind == "square":
            return torchattacks.Square(model, norm=torch_norm, eps=self.eps, seed=0)
        return torchattacks.CW(model, c=1, kappa=0, steps=self.steps, lr=0.01)


def parse_attack(name: str) -> AttackSpec:
    """`pgd_linf_2of255` -> AttackSpec('pgd', 'linf', 2/255, 10); raises ValueError saying what is allowed."""
    m = _NAME.match(name.strip().lower())
    kind = m and m["kind"]
    if not m or kind not in KINDS or (kind == "cw") != (m["eps"] is None) or (m["steps"] and kind not in DEFAULT_STEPS):
        raise ValueError(f"unknown attack {name!r}: expected KIND[STEPS]_NORM_EPS such as pgd_linf_8of255, "
                         f"pgd20_l2_0.5, fgsm_linf_8of255, autoattack_linf_8of255, fab_l2_0.5, square_linf_8of255, "
                         f"or cw / cw50 (KIND in {', '.join(KINDS)})")
    steps = int(m["steps"]) if m["steps"] else DEFAULT_STEPS.get(kind, 0)
    if kind == "cw":
        return AttackSpec("cw", "l2", 0.0, steps)
    eps = float(m["eps"]) / (255 if m["of255"] else 1)
    if not 0 < eps <= 1:
        raise ValueError(f"attack {name!r}: ε must be in (0, 1] in pixel units, got {eps:g}")
    if kind == "fgsm" and m["norm"] != "linf":
        raise ValueError(f"attack {name!r}: FGSM is an ℓ∞ attack; use fgsm_linf_...")
    if kind in DEFAULT_STEPS and steps < 1:
        raise ValueError(f"attack {name!r}: steps must be >= 1")
    return AttackSpec(kind, m["norm"], eps, steps, per_255=bool(m["of255"]))


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
            logits = model(x[i:i + batch_size])
            correct += (logits.argmax(1) == y[i:i + batch_size]).sum()
            loss += F.cross_entropy(logits, y[i:i + batch_size], reduction="sum")
    return {"clean_acc": correct.item() / len(y), "test_loss": loss.item() / len(y)}  # one host sync each


def robust_accuracy(model: nn.Module, attack: AttackSpec, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                    batch_size: int = 500) -> float:
    """Accuracy on the attacked images. Parameters are frozen meanwhile: attacks need input gradients only, and
    FAB and CW call `.backward()`, which would otherwise also compute (and keep) weight gradients."""
    correct = torch.zeros((), device=x.device)
    with eval_mode(model), input_gradients_only(model):
        atk = attack.build(model, num_classes)
        for i in range(0, len(y), batch_size):
            adv = atk(x[i:i + batch_size], y[i:i + batch_size])
            with torch.no_grad():
                correct += (model(adv).argmax(1) == y[i:i + batch_size]).sum()
    return correct.item() / len(y)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, attacks: list[AttackSpec] = (),
             n_robust: int = 1000, batch_size: int = 500) -> dict[str, float]:
    """Clean accuracy on the whole test set; robust accuracy on its first `n_robust` images for each attack."""
    metrics = clean_accuracy(model, x, y, batch_size)
    for attack in attacks:
        metrics[attack.metric] = robust_accuracy(model, attack, x[:n_robust], y[:n_robust], num_classes, batch_size)
    return metrics
