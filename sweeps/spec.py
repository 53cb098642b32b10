"""Sweep specs: YAML files in `sweeps/`, validated into a typed SweepSpec with errors that name the field path,
the value and what is allowed. Every value a spec gives a training run is checked against TrainConfig's limits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from trainables.config import TrainConfig
from trainables.usage import UsageError, describe_validation_error
from trainables.vocabulary import (
    CLEAN_ACC,
    CORRUPTION_PREFIX,
    METHOD_PARAMS,
    ROBUST_PREFIX,
    Dataset,
    Method,
    Model,
    parse_attack,
    parse_evaluation,
    reported_metrics,
)

SPEC_DIR = Path(__file__).parent
Scalar = bool | int | float | str

# fields a spec sets elsewhere (or that make no sense per trial), so `train:` may not
NOT_IN_TRAIN = {
    "dataset",
    "data_dir",
    "download",
    "image_size",
    "model",
    "method",
    "eval_attacks",
    "epoch_attacks",
    "eval_n",
    "epoch_eval_n",
    "val_split",
    "device",
    *{p for params in METHOD_PARAMS.values() for p in params},
}


class SpecError(UsageError):
    """A spec that cannot be used; the message is one line naming the file, the field path and the value."""


class Range(BaseModel):
    """A numeric search range; integers when both ends are integers."""

    model_config = ConfigDict(extra="forbid")
    low: float | int = Field(description="lower end")
    high: float | int = Field(description="upper end; integers when both ends are integers")
    log: bool = Field(False, description="sample on a log scale")

    @model_validator(mode="after")
    def check(self):
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        return self

    @property
    def is_int(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)


class Choice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    choices: list[Scalar] = Field(min_length=1, description="the values, searched as a categorical")


def not_a_list(value: Any) -> Any:
    """A list where a parameter goes (a likely slip for a range) is refused saying how to write one, not with
    pydantic's complaint from each member of the union below."""
    if isinstance(value, list):
        raise ValueError(
            f"a list is not a parameter: a range is {{low: ..., high: ...}}, a choice {{choices: {value}}}"
        )
    return value


Param = Annotated[Range | Choice | Scalar, BeforeValidator(not_a_list)]


def renamed_final(value: Any) -> Any:
    """`final: certify`, as specs said (and sweeps recorded) before the audit was renamed, is `final: audit`."""
    return "audit" if value == "certify" else value


class PerNorm(BaseModel):
    """A method's parameter whose values depend on the trial's threat model, for ε (or α), whose ℓ∞ and ℓ2 scales
    differ: `norm: {choices: [linf, l2]}` with `eps: {linf: {low: ..., high: ...}, l2: {low: ..., high: ...}}`.
    Each branch is its own Optuna parameter (`at.eps.linf`, `at.eps.l2`); the trial's config gets `at.eps`."""

    model_config = ConfigDict(extra="forbid")
    linf: Param = Field(description="the value or range for ℓ∞ trials (Optuna parameter `<method>.<field>.linf`)")
    l2: Param = Field(description="the value or range for ℓ2 trials (`<method>.<field>.l2`)")

    def for_norm(self, norm: str) -> Param:
        return getattr(self, norm)


MethodParam = Annotated[Range | Choice | PerNorm | Scalar, BeforeValidator(not_a_list)]


def param_values(value: MethodParam) -> list[Scalar]:
    """The values a parameter can take that bound its range (for checking against TrainConfig's limits)."""
    if isinstance(value, Range):
        return [value.low, value.high]
    if isinstance(value, Choice):
        return list(value.choices)
    if isinstance(value, PerNorm):
        return [*param_values(value.linf), *param_values(value.l2)]
    return [value]


def is_searched(value: MethodParam) -> bool:
    """A value Optuna searches (a range, a choice or per-norm values), not a constant."""
    return isinstance(value, (Range, Choice, PerNorm))


def check_against_train_config(field: str, value: Param, where: str) -> None:
    """Every value a spec can give `field` must be one TrainConfig accepts; errors start with `where`."""
    if field not in TrainConfig.model_fields:
        raise ValueError(f"{where}: unknown training field {field!r}")
    for v in param_values(value):
        try:
            TrainConfig(**{field: v})
        except ValidationError as e:
            raise ValueError(f"{where}: {v!r} is not allowed: {e.errors()[0]['msg']}") from None


class Objective(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metric: str = Field(
        description="a metric the sweep reports on its validation images (clean_acc, robust_acc/<attack>, ...)"
    )
    direction: Literal["max", "min"] = Field("max", description="max or min")
    reference: float | None = Field(
        None, description="hypervolume reference value (default 0 for max; the worst value seen for min)"
    )


class Search(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sampler: Literal["nsga2", "tpe", "gp", "random"] = Field(
        "nsga2", description="Optuna sampler: NSGA-II, multivariate TPE, GP (log EHVI) or random"
    )
    seed: int = Field(0, ge=0, description="the sampler's seed")
    trials: int = Field(16, ge=1, description="trials in the sweep (--trials overrides it)")
    concurrency: int = Field(2, ge=1, description="trials at once (--concurrency overrides it)")
    population_size: int | None = Field(None, ge=2, description="NSGA-II generation size (default: trials/3, 4..50)")


class Scheduler(BaseModel):
    """Early stopping of trials: MO-ASHA (sweeps/moasha.py), rungs at grace_period·η^k epochs up to the trials'
    epochs (`max_epochs`: the high end when `epochs` is searched, a method's own where larger); a trial with fewer
    epochs meets each rung at the same share of its own. At each rung a trial continues only if it ranks in the
    top 1/η of the results recorded there, ranked on all the objectives at once by their Pareto fronts."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["moasha"] = Field(description="the scheduler: moasha")
    grace_period: int = Field(1, ge=1, description="epochs before the first rung")
    reduction_factor: float = Field(3, gt=1, description="η: about 1 in η trials continues at each rung")
    brackets: int = Field(1, ge=1, description="ASHA brackets; bracket s starts at grace_period·η^s epochs")


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cpu: float = Field(1, gt=0, description="CPUs per trial (also its torch threads)")
    gpu: float = Field(0, ge=0, description="GPUs per trial; a fraction packs trials onto one GPU")


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="the sweep's name: its MLflow experiment and results folder (a taken name gets -2, -3, ...)",
    )
    description: str = Field("", description="one line shown beside the sweep")
    dataset: Dataset = Field("digits", description="data set of every trial")
    data_dir: str = Field(
        "data", description="data folder; a relative one resolves against SAMAT_DATA_ROOT, else the driver's folder"
    )
    download: bool = Field(False, description="download CIFAR into data_dir if missing (needs the network)")
    image_size: int | None = Field(None, ge=8, description="resize tinyimagenet to this size (the paper used 32)")
    models: list[Model] = Field(min_length=1, description="architectures, searched as a categorical")
    methods: dict[Method, dict[str, MethodParam]] = Field(
        min_length=1,
        description="training methods, searched as a categorical; each maps its own fields (and any shared "
        "training field it overrides) to a constant, a Range, a Choice or, for ε and α, a PerNorm",
    )
    train: dict[str, Param] = Field(
        {}, description="any other TrainConfig field shared by every trial: a constant, a Range or a Choice"
    )
    per_model: dict[Model, dict[str, Scalar]] = Field(
        {},
        description="training fields fixed per model, over train: (e.g. vit_tiny's optimiser and learning rate, "
        "wrn's dropout), so every method of a model trains with the same settings",
    )
    objective_attack: str = Field(
        "pgd_linf_2of255",
        description="the attack behind the default robust objective, evaluated alone on validation images after "
        "every epoch, and on test images after the last",
    )
    final_attacks: list[str] = Field(
        [],
        description="attacks and corruptions (corrupt_<corruption>_<severity>) evaluated after the last epoch, on the "
        "test images; one an objective names is also evaluated after every epoch, on the validation images",
    )
    corruption_dir: str | None = Field(
        None,
        description="a CIFAR-10-C or CIFAR-100-C folder: test-image corruptions come from its files (relative to "
        "SAMAT_DATA_ROOT where set, else the driver's folder); validation corruptions are always made on the fly",
    )
    eval_n: int = Field(
        1000, ge=1, description="robust accuracy is measured on the first N validation (and test) images"
    )
    epoch_eval_n: int | None = Field(
        None,
        ge=1,
        description="robust accuracy of epochs before the last on the first N validation images only (a cheaper "
        "per-epoch history, and MO-ASHA's rungs); the last epoch, the objectives and the test use eval_n",
    )
    val_split: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="validation share of the training images (default per data set: digits 0.2, "
        "others 0.1; 0: none, and selection then uses the test images)",
    )
    objectives: list[Objective] = Field(
        default_factory=list,
        description="2 or 3 metrics to optimise, each an Objective; default clean_acc and "
        "robust_acc/<objective_attack>, both maximised",
    )
    search: Search = Field(Search(), description="the Optuna sampler and the trial budget")
    resources: Resources = Field(Resources(), description="what one trial asks Ray for")
    scheduler: Scheduler | None = Field(None, description="early stopping; none: every trial trains every epoch")
    max_failures: int = Field(2, ge=0, description="retries of a failed trial from its last checkpoint")
    final: Annotated[Literal["none", "audit"], BeforeValidator(renamed_final)] = Field(
        "none", description="what runs when the search ends: audit = `samat frontier audit` on the front"
    )

    @field_validator("models")
    @classmethod
    def distinct_models(cls, models):
        if len(set(models)) != len(models):
            raise ValueError(f"models are listed twice: {models}")
        return models

    @field_validator("methods", mode="before")
    @classmethod
    def methods_as_mapping(cls, methods):
        if isinstance(methods, list):  # `methods: [sgd, sam]` means every method with its defaults
            return {m: {} for m in methods}
        return {m: (params or {}) for m, params in methods.items()} if isinstance(methods, dict) else methods

    @field_validator("methods")
    @classmethod
    def method_params_belong(cls, methods):
        """A method sets its own fields (METHOD_PARAMS) and may override any shared training field (fast_at's
        epochs and cyclic schedule, say); per-norm values only for its own fields other than norm."""
        for method, params in methods.items():
            own = METHOD_PARAMS[method]
            for field, value in params.items():
                if field not in own and field in NOT_IN_TRAIN:
                    allowed = ", ".join(own) or "none"
                    raise ValueError(
                        f"{method}.{field}: {method} takes no {field!r} (its parameters: {allowed}; any training "
                        f"field may also be set per method)"
                    )
                if isinstance(value, PerNorm) and (field not in own or field == "norm" or "norm" not in own):
                    raise ValueError(f"{method}.{field}: per-norm values are for the ε or α of a method with a norm")
                check_against_train_config(field, value, f"{method}.{field}")
            constants = {f: v for f, v in params.items() if not is_searched(v)}
            try:  # fields valid alone can still clash (step_schedule paper with an alpha)
                TrainConfig(method=method, **constants)
            except ValidationError as e:
                raise ValueError(f"{method}: {describe_validation_error(e, name_of=lambda loc: loc)}") from None
        return methods

    @field_validator("train")
    @classmethod
    def train_fields_valid(cls, train):
        for field, value in train.items():
            if field in NOT_IN_TRAIN:
                raise ValueError(f"{field}: set it at the top of the spec or under methods, not under train")
            check_against_train_config(field, value, field)
        return train

    @field_validator("objective_attack")
    @classmethod
    def canonical_attack(cls, name):
        return parse_attack(name).name

    @field_validator("final_attacks")
    @classmethod
    def canonical_attacks(cls, names):
        return [parse_evaluation(name).name for name in names]

    @model_validator(mode="after")
    def check_objectives(self):
        if not self.objectives:
            self.objectives = [
                Objective(metric=CLEAN_ACC),
                Objective(metric=parse_attack(self.objective_attack).metric),
            ]
        if not 2 <= len(self.objectives) <= 3:
            raise ValueError(f"objectives: a sweep has 2 or 3 objectives, got {len(self.objectives)}")
        known = set(self.metrics_reported)
        for objective in self.objectives:
            if objective.metric not in known:
                raise ValueError(
                    f"objectives: {objective.metric!r} is not a metric this sweep reports{hint(objective, known)}"
                )
        if len({o.metric for o in self.objectives}) != len(self.objectives):
            raise ValueError("objectives: the same metric is listed twice")
        return self

    @model_validator(mode="after")
    def check_scheduler(self):
        """Every bracket needs a rung below the trials' epochs (`max_epochs`; a trial with fewer meets the rungs at
        the same shares of its own), or it would stop nothing."""
        if self.scheduler is None:
            return self
        grace, eta, brackets, epochs = (
            self.scheduler.grace_period,
            self.scheduler.reduction_factor,
            self.scheduler.brackets,
            self.max_epochs,
        )
        if grace >= epochs:
            raise ValueError(
                f"scheduler.grace_period: {grace} must be below the trials' epochs ({epochs}), or no trial is ever "
                f"stopped"
            )
        if grace * eta ** (brackets - 1) >= epochs:
            usable = next(s for s in range(brackets, 0, -1) if grace * eta ** (s - 1) < epochs)
            raise ValueError(
                f"scheduler.brackets: {brackets} brackets put the last one's first rung at grace_period·η^"
                f"{brackets - 1} = {grace * eta ** (brackets - 1):g} epochs, not below the trials' epochs "
                f"({epochs}); at most {usable} here"
            )
        return self

    @model_validator(mode="after")
    def check_per_model(self):
        for model, fields in self.per_model.items():
            if model not in self.models:
                raise ValueError(f"per_model.{model}: {model} is not among the spec's models {self.models}")
            for field, value in fields.items():
                where = f"per_model.{model}.{field}"
                if field in NOT_IN_TRAIN:
                    raise ValueError(f"{where}: set it at the top of the spec or under methods, not per model")
                check_against_train_config(field, value, where)
                clash = [m for m, params in self.methods.items() if field in params]
                if clash:
                    raise ValueError(f"{where}: methods.{clash[0]} also sets {field}; set it in one place")
        return self

    @property
    def max_epochs(self) -> int:
        """The most epochs a trial trains: `train.epochs`, its high end (or largest choice) when searched,
        TrainConfig's default when unset, or a method's or model's own epochs where larger. MO-ASHA's max_t."""
        epochs = self.train.get("epochs", TrainConfig.model_fields["epochs"].default)
        overrides = [p["epochs"] for p in [*self.methods.values(), *self.per_model.values()] if "epochs" in p]
        return int(max(v for e in [epochs, *overrides] for v in param_values(e)))

    @property
    def metrics_reported(self) -> list[str]:
        return reported_metrics(dict.fromkeys([self.objective_attack, *self.final_attacks]))

    @property
    def directions(self) -> dict[str, str]:
        """The objectives in order: metric -> "max" | "min"."""
        return {o.metric: o.direction for o in self.objectives}

    @property
    def hypervolume_reference(self) -> list[float | None]:
        """The stated reference point: the objective's own, else 0 for a maximised one (accuracies); None
        (the worst value seen) for a minimised one without a stated value."""
        return [
            o.reference if o.reference is not None else (0.0 if o.direction == "max" else None) for o in self.objectives
        ]

    def overriding(self, trials: int | None = None, concurrency: int | None = None) -> SweepSpec:
        """This spec with the command line's --trials / --concurrency where given."""
        search = {k: v for k, v in {"trials": trials, "concurrency": concurrency}.items() if v is not None}
        return self.model_copy(update={"search": self.search.model_copy(update=search)})

    def base_config(self) -> dict[str, Any]:
        """The TrainConfig fields every trial shares (the rest come from the search)."""
        return {
            "dataset": self.dataset,
            "data_dir": self.data_dir,
            "download": self.download,
            "image_size": self.image_size,
            "corruption_dir": self.corruption_dir,
            # per epoch, on validation images: the objective attack and any final attack an objective names
            "epoch_attacks": [
                a
                for a in dict.fromkeys([self.objective_attack, *self.final_attacks])
                if a == self.objective_attack or any(m in self.directions for m in parse_evaluation(a).metrics)
            ],
            # after the last epoch, on test images: all of them
            "eval_attacks": [self.objective_attack, *self.final_attacks],
            "eval_n": self.eval_n,
            "epoch_eval_n": self.epoch_eval_n,
            "val_split": self.val_split,
        }


def hint(objective: Objective, known: set[str]) -> str:
    """How to have an objective a sweep does not report: the evaluation to add, else the metrics there are."""
    metric = objective.metric
    for prefix, name in (
        (CORRUPTION_PREFIX, f"corrupt_{metric.removeprefix(CORRUPTION_PREFIX)}"),
        (ROBUST_PREFIX, metric.removeprefix(ROBUST_PREFIX)),
    ):
        if metric.startswith(prefix):
            try:
                return f" (add {parse_evaluation(name).name} to final_attacks)"
            except ValueError as e:
                return f" ({e})"
    return f" (choose from {', '.join(sorted(known))})"


def spec_path(name_or_path: str) -> Path:
    """A spec by file path, or by name in the sweeps/ folder (`quick` -> sweeps/quick.yaml)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return SPEC_DIR / f"{name_or_path}.yaml"


def available_specs() -> list[str]:
    return sorted(p.stem for p in SPEC_DIR.glob("*.yaml"))


def load_spec(name_or_path: str) -> SweepSpec:
    path = spec_path(name_or_path)
    if not path.is_file():
        raise SpecError(
            f"SPEC={name_or_path}: no such spec file {path} (specs in {SPEC_DIR}: {', '.join(available_specs())})"
        )
    try:
        raw = yaml.safe_load(path.read_text())  # safe_load: a spec is data, never code
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise SpecError(f"{path}: not valid YAML{line}: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a spec is a mapping of fields, got {type(raw).__name__}")
    return validate_spec(raw, str(path))


def validate_spec(raw: dict, source: str = "spec") -> SweepSpec:
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as e:
        raise SpecError(f"{source}: {describe_validation_error(e, name_of=lambda loc: loc)}") from None
