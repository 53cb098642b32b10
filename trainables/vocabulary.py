"""samat's words, defined once: methods, models, data sets, metric names and attack names.

Pure Python (no torch), so every layer and every command can speak them without paying for torch's import.

A method is an input perturbation composed with a weight perturbation (the paper's duality):

    method   input perturbation      weight perturbation    its own fields (METHOD_PARAMS)
    sgd      none                    none
    sam      none                    SAM(ρ)                 rho
    asam     none                    ASAM(ρ, η)             rho, eta
    at       PGD(ε, k steps)         none                   norm, eps, attack_steps, alpha, step_schedule
    fast_at  FGSM(ε, random start)   none                   norm, eps, alpha
    sam_at   PGD(ε, k steps)         SAM(ρ)                 rho, norm, eps, attack_steps, alpha, step_schedule

A sweep spec sets a method's own fields under that method only; a method may also override any shared training
field (fast_at's cyclic schedule and fewer epochs, say), which `sweeps/spec.py` checks.

An attack is named the way its metric is keyed, so a name round-trips: `pgd_linf_2of255` is PGD-10 ℓ∞ with
ε = 2/255 (α = ε/4, random start) and reports `robust_acc/pgd_linf_2of255`. Grammar: `KIND[STEPS]_NORM_EPS`
with KIND in fgsm, pgd, apgd, autoattack, fab, square; STEPS only for pgd (default 10), apgd (APGD-CE, default
100: `apgd20_linf_8of255` is a cheaper per-epoch option) and square (queries, default 5000); NORM linf | l2;
EPS `8of255` or a plain number such as `0.1`. `autoattack_*` is the reference standard AutoAttack (see
trainables.evaluate). CW (c = 1, unbounded ℓ2) is `cw[STEPS]`.

A common corruption goes wherever an attack name goes: `corrupt_<corruption>_<severity>` (`corrupt_fog_3`, severity
1-5, as CIFAR-10-C makes them: trainables.corruptions) reports `corruption_acc/<corruption>_<severity>`, accuracy
on the corrupted images; `corrupt_paper9_<severity>` reports the mean over the paper's nine corruptions as
`corruption_acc/paper9_<severity>`, and each of the nine under its own name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

Method = Literal["sgd", "sam", "asam", "at", "fast_at", "sam_at"]
Model = Literal["small_cnn", "mlp", "preact_resnet18", "wrn", "vit_tiny"]
Dataset = Literal["digits", "cifar10", "cifar100", "tinyimagenet"]
# the share of the training images held out for validation, per data set (digits: 287 of 1438 images;
# CIFAR: 5000 of 50000; Tiny ImageNet: 10000 of 100000), drawn with a fixed seed so every trial sees the same
DEFAULT_VAL_SPLIT = {"digits": 0.2, "cifar10": 0.1, "cifar100": 0.1, "tinyimagenet": 0.1}
# each data set's images as (channels, height, width); Tiny ImageNet's side is its `image_size` where resized
IMAGE_SHAPE = {"digits": (1, 8, 8), "cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "tinyimagenet": (3, 64, 64)}
METHODS: tuple[str, ...] = get_args(Method)
MODELS: tuple[str, ...] = get_args(Model)
DATASETS: tuple[str, ...] = get_args(Dataset)

INPUT_PERTURBATION = {"sgd": "none", "sam": "none", "asam": "none", "at": "pgd", "fast_at": "fgsm", "sam_at": "pgd"}
WEIGHT_PERTURBATION = {"sgd": "none", "sam": "sam", "asam": "asam", "at": "none", "fast_at": "none", "sam_at": "sam"}
_INPUT_FIELDS = {
    "none": (),
    "pgd": ("norm", "eps", "attack_steps", "alpha", "step_schedule"),
    "fgsm": ("norm", "eps", "alpha"),
}
_WEIGHT_FIELDS = {"none": (), "sam": ("rho",), "asam": ("rho", "eta")}
# each method's own training fields, which no other method takes: its weight perturbation's, then its input
# perturbation's (a spec's method entry may also override shared training fields; sweeps/spec.py)
METHOD_PARAMS: dict[str, tuple[str, ...]] = {
    m: _WEIGHT_FIELDS[WEIGHT_PERTURBATION[m]] + _INPUT_FIELDS[INPUT_PERTURBATION[m]] for m in METHODS
}

# ---- metric names: what a training run reports (Ray results, MLflow metrics, exports all use these keys) ----
CLEAN_ACC = "clean_acc"
TEST_LOSS = "test_loss"
TRAIN_LOSS = "train_loss"
TRAIN_ACC = "train_acc"
TRAIN_TIME_S = "train_time_s"
EVAL_TIME_S = "eval_time_s"
EPOCH = "epoch"  # the epoch just finished (Ray's time attribute for samat trials)
EPOCHS = "epochs"  # epochs done so far, reported with every result
BASE_METRICS = (CLEAN_ACC, TEST_LOSS, TRAIN_LOSS, TRAIN_ACC, TRAIN_TIME_S, EVAL_TIME_S)
# FastAT's guard against catastrophic overfitting (reported by fast_at runs only, every epoch; not objectives)
GUARD_ROBUST_ACC = "guard_robust_acc"  # PGD accuracy on the guard's fixed training minibatch after this epoch
COLLAPSED = "collapsed"  # 1 once the guard stopped training on a collapse, else 0
COLLAPSE_EPOCH = "collapse_epoch"  # the epoch whose collapse stopped training (reported once collapsed)
BEST_EPOCH = "best_epoch"  # the epoch of the best guard accuracy: a collapsed run ends with its weights
ROBUST_PREFIX = "robust_acc/"  # accuracy under one attack at its own radius
# accuracy under an attack at its own radius and at every smaller radius of the same kind, norm and steps that
# was evaluated with it: the worst case over those radii (see `robust_metrics`)
ROBUST_UPTO_PREFIX = "robust_acc_upto/"

CORRUPTION_PREFIX = "corruption_acc/"  # accuracy on images under one common corruption at one severity

TEST_PREFIX = "test/"  # the test set's metrics, evaluated once after the last epoch (the others: validation)


def robust_metric(attack_name: str) -> str:
    return f"{ROBUST_PREFIX}{attack_name}"


def metric_on_test(metric: str) -> str:
    return f"{TEST_PREFIX}{metric}"


def robust_metrics(attacks, standalone=()) -> dict[AttackSpec, str]:
    """The metric each attack reports when `attacks` are evaluated together (trainables.evaluate.evaluate).
    Attacks of one kind, norm and step count at several radii form a cascade: each larger radius attacks only
    the images every smaller one left standing, so its figure is the worst case over all of them and is named
    `robust_acc_upto/<attack>`. The smallest radius of a kind, and any attack in `standalone` (measured alone on
    every image), report `robust_acc/<attack>`: accuracy under that attack alone."""
    metrics, kinds = {}, set()
    for attack in sorted(attacks, key=lambda a: a.eps):
        kind = (attack.kind, attack.norm, attack.steps)
        worst_case = kind in kinds and attack not in standalone
        metrics[attack] = (ROBUST_UPTO_PREFIX if worst_case else ROBUST_PREFIX) + attack.name
        kinds.add(kind)
    return {a: metrics[a] for a in attacks}


def reported_metrics(epoch_evaluations, test_evaluations=()) -> list[str]:
    """Every metric a run reports: the base ones and, per epoch evaluation (an attack or a corruption, on the
    validation images, each measured alone), its metrics; then clean accuracy, loss and each final evaluation's
    metrics on the test images, where the epoch attacks are measured alone and the others may cascade
    (`robust_metrics`)."""
    epoch = [parse_evaluation(a) for a in epoch_evaluations]
    test = list({parse_evaluation(a): None for a in test_evaluations})
    robust = robust_metrics([a for a in test if isinstance(a, AttackSpec)], standalone=epoch)
    test_metrics = [m for e in test for m in ([robust[e]] if isinstance(e, AttackSpec) else e.metrics)]
    return list(  # a corruption named alone and as a part of paper9 is one metric
        dict.fromkeys(
            [
                *BASE_METRICS,
                *(m for e in epoch for m in e.metrics),
                *(metric_on_test(m) for m in (CLEAN_ACC, TEST_LOSS, *test_metrics)),
            ]
        )
    )


# ---- attack names ----------------------------------------------------------------------------------------------
ATTACK_KINDS = ("fgsm", "pgd", "apgd", "autoattack", "fab", "square", "cw")
DEFAULT_STEPS = {"pgd": 10, "apgd": 100, "square": 5000, "cw": 10}  # square: queries
_NAME = re.compile(
    r"^(?P<kind>[a-z]+?)(?P<steps>\d+)?(?:_(?P<norm>linf|l2)_(?P<eps>\d+(?:\.\d+)?(?:e-?\d+)?)"
    r"(?P<of255>of255)?)?$"
)


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
        return robust_metric(self.name)

    @property
    def metrics(self) -> list[str]:
        return [self.metric]


def parse_attack(name: str) -> AttackSpec:
    """`pgd_linf_2of255` -> AttackSpec('pgd', 'linf', 2/255, 10); raises ValueError saying what is allowed."""
    m = _NAME.match(name.strip().lower())
    kind = m and m["kind"]
    if (
        not m
        or kind not in ATTACK_KINDS
        or (kind == "cw") != (m["eps"] is None)
        or (m["steps"] and kind not in DEFAULT_STEPS)
    ):
        raise ValueError(
            f"unknown attack {name!r}: expected KIND[STEPS]_NORM_EPS such as pgd_linf_8of255, pgd20_l2_0.5, "
            f"apgd_linf_8of255, fgsm_linf_8of255, autoattack_linf_8of255, fab_l2_0.5, square_linf_8of255, "
            f"or cw / cw50 (KIND in {', '.join(ATTACK_KINDS)})"
        )
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


# ---- corruption names ------------------------------------------------------------------------------------------
# the nine the paper evaluates (its `corruption.py`, CIFAR-10-C at severity 3), then the others samat makes
PAPER_CORRUPTIONS = (
    "brightness",
    "fog",
    "frost",
    "gaussian_blur",
    "impulse_noise",
    "jpeg_compression",
    "shot_noise",
    "snow",
    "speckle_noise",
)
CORRUPTIONS = (
    *PAPER_CORRUPTIONS,
    "gaussian_noise",
    "contrast",
    "motion_blur",
    "zoom_blur",
    "saturate",
    "defocus_blur",
    "pixelate",
)
PAPER9 = "paper9"  # the mean over PAPER_CORRUPTIONS
SEVERITIES = (1, 2, 3, 4, 5)
_CORRUPTION = re.compile(r"^corrupt_(?P<corruption>[a-z_]+?\d?)_(?P<severity>\d+)$")


@dataclass(frozen=True)
class CorruptionSpec:
    corruption: str  # one of CORRUPTIONS, or PAPER9
    severity: int

    @property
    def name(self) -> str:
        return f"corrupt_{self.corruption}_{self.severity}"

    @property
    def metric(self) -> str:
        return f"{CORRUPTION_PREFIX}{self.corruption}_{self.severity}"

    @property
    def parts(self) -> tuple[CorruptionSpec, ...]:
        """The single corruptions it averages: the paper's nine for PAPER9, else itself."""
        if self.corruption == PAPER9:
            return tuple(CorruptionSpec(c, self.severity) for c in PAPER_CORRUPTIONS)
        return (self,)

    @property
    def metrics(self) -> list[str]:
        """What it reports: its own metric, and each part's where it averages several."""
        return [self.metric, *(p.metric for p in self.parts if p != self)]


def parse_corruption(name: str) -> CorruptionSpec:
    """`corrupt_fog_3` -> CorruptionSpec('fog', 3); raises ValueError saying what is allowed."""
    m = _CORRUPTION.match(name.strip().lower())
    if not m or m["corruption"] not in (*CORRUPTIONS, PAPER9) or int(m["severity"]) not in SEVERITIES:
        raise ValueError(
            f"unknown corruption {name!r}: expected corrupt_<corruption>_<severity 1-5> with a corruption among "
            f"{', '.join(CORRUPTIONS)}, or {PAPER9} (the mean of the paper's nine), such as corrupt_fog_3"
        )
    return CorruptionSpec(m["corruption"], int(m["severity"]))


def corruptions_named(evaluations) -> list[str]:
    """The single corruptions that evaluation names (or parsed specs) make, a mean's parts included, sorted."""
    parsed = [parse_evaluation(e) if isinstance(e, str) else e for e in evaluations]
    return sorted({p.corruption for e in parsed if isinstance(e, CorruptionSpec) for p in e.parts})


def parse_evaluation(name: str) -> AttackSpec | CorruptionSpec:
    """An attack name or a corruption name (`corrupt_...`), parsed."""
    return parse_corruption(name) if name.strip().lower().startswith("corrupt_") else parse_attack(name)
