"""The configuration of one training run: the single source of its fields, defaults, limits and help text
(`samat train` builds its flags from it; sweep specs and checkpoints store it)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trainables.settings import data_folders
from trainables.vocabulary import (
    DEFAULT_VAL_SPLIT,
    INPUT_PERTURBATION,
    Dataset,
    Method,
    Model,
    parse_evaluation,
    reported_metrics,
)


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: Dataset = Field("digits", description="data set")
    data_dir: str = Field(
        "data",
        description="folder holding cifar-10-batches-py, cifar-100-python or "
        "tiny-imagenet-200 (digits ships with scikit-learn)",
    )
    download: bool = Field(False, description="download CIFAR into --data-dir if missing (needs the network)")
    corruption_dir: str | None = Field(
        None,
        description="a CIFAR-10-C or CIFAR-100-C folder (<corruption>.npy, labels.npy, as published): corruptions "
        "on the test images come from its files instead of being made on the fly; relative to SAMAT_DATA_ROOT "
        "where set",
    )
    image_size: int | None = Field(None, ge=8, description="resize tinyimagenet to this size (the paper used 32)")
    model: Model = Field("small_cnn", description="architecture")
    depth: int = Field(28, ge=10, description="wrn depth (6n+4)")
    width: int = Field(10, ge=1, description="wrn width factor")
    dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="dropout between the two convolutions of each residual block of wrn and preact_resnet18 "
        "(the paper's WRN-28-10: 0.3); other models ignore it",
    )
    init: Literal["torch", "msra", "paper"] = Field(
        "torch",
        description="weight initialisation of small_cnn, preact_resnet18 and wrn (mlp and vit_tiny keep their own): "
        "torch = PyTorch's defaults; msra = convolutions N(0, 2/(k*k*c_out)), BatchNorm weight 1 bias 0, linear "
        "bias 0 (the WRN authors' MSRinit; Wong et al.'s train_cifar.py); paper = the paper's WRN code: "
        "kaiming normal fan_in, BatchNorm weight U(0,1) bias 0, linear bias 0",
    )
    method: Method = Field("sgd", description="training method: input perturbation x weight perturbation")
    rho: float = Field(0.05, ge=0, description="SAM/ASAM radius ρ (ASAM typically 0.5-2)")
    eta: float = Field(0.01, ge=0, description="ASAM's η in T = |w| + η")
    norm: Literal["linf", "l2"] = Field("linf", description="adversarial-training threat model")
    eps: float = Field(8 / 255, ge=0, le=1, description="adversarial-training radius ε in pixel units [0, 1]")
    attack_steps: int = Field(10, ge=1, description="PGD steps for at / sam_at (with step_schedule fixed)")
    alpha: float | None = Field(
        None,
        gt=0,
        description="attack step size (default 2.5ε/steps for PGD, 1.25ε for FGSM; step_schedule paper sets it)",
    )
    step_schedule: Literal["fixed", "paper"] = Field(
        "fixed",
        description="PGD steps and step size of at / sam_at: fixed = attack_steps and alpha; paper = the paper's "
        "rule from ε: ℓ∞ ε <= 2/255: 5 steps of ε/2, larger ε: 10 steps of ε/4; ℓ2: 5 steps of ε/2",
    )
    craft_bn: Literal["eval", "train"] = Field(
        "eval",
        description="BatchNorm mode while crafting training attacks: eval = running statistics, left untouched "
        "(Bag of Tricks for AT); train = batch statistics, each attack pass updating the running ones (as the "
        "paper's, Wong's and Rice's code)",
    )
    collapse_guard: bool = Field(
        True,
        description="fast_at: after each epoch, PGD-5 (α = ε/4) accuracy on a fixed training minibatch; on a "
        "collapse training stops and the best epoch's weights are kept (Wong et al. 2020's early stop)",
    )
    collapse_drop: float = Field(
        0.2, gt=0, le=1, description="fast_at: a collapse is that accuracy falling more than this below its best"
    )
    epochs: int = Field(10, ge=1, description="training epochs")
    batch_size: int = Field(128, ge=2, description="training batch size")
    optimizer: Literal["sgd", "adam", "adamw"] = Field(
        "sgd",
        description="base optimiser (SAM/ASAM wrap it): sgd uses lr, momentum, nesterov, weight_decay; adam "
        "(L2 penalty, as the paper's DeiT runs) and adamw (decoupled decay) use lr and weight_decay and ignore "
        "momentum and nesterov",
    )
    lr: float = Field(0.1, gt=0, description="peak learning rate")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    nesterov: bool = Field(False, description="Nesterov momentum")
    weight_decay: float = Field(5e-4, ge=0, description="weight decay")
    schedule: Literal["piecewise", "cosine", "constant", "cyclic"] = Field(
        "piecewise",
        description="learning-rate schedule (piecewise: x0.1 at 75%, x0.01 at 90% of training; cyclic: "
        "0 up to lr at 2/5 of training, then down to 0, as FastAT's train_cifar.py)",
    )
    seed: int = Field(0, ge=0, description="random seed (CPU runs repeat exactly)")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="bf16: training and attack-crafting forward "
        "passes under bfloat16 autocast (parameters, "
        "optimiser and evaluation stay fp32)",
    )
    channels_last: bool = Field(
        False, description="NHWC memory layout for the model and its batches (faster convolutions on GPUs)"
    )
    compile: bool = Field(False, description="torch.compile the model (the first steps pay for compiling)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where to train")
    eval_attacks: tuple[str, ...] = Field(
        ("pgd_linf_2of255", "pgd_linf_8of255"),
        description="attacks and corruptions (corrupt_<corruption>_<severity>) evaluated after the last epoch, "
        "comma-separated",
    )
    epoch_attacks: tuple[str, ...] = Field((), description="attacks and corruptions also evaluated after every epoch")
    eval_n: int = Field(1000, ge=1, description="robust accuracy uses the first N validation (and test) images")
    epoch_eval_n: int | None = Field(
        None,
        ge=1,
        description="epochs before the last measure robust accuracy on the first N validation images only, a fixed "
        "subset for a cheaper per-epoch history (default: eval_n); the last epoch always uses eval_n",
    )
    val_split: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="share of the training images held out, seeded and class-stratified, for "
        "per-epoch metrics and selection (default per data set: digits 0.2, others 0.1; 0: none, and then the "
        "test images serve)",
    )

    @field_validator("eval_attacks", "epoch_attacks", mode="before")
    @classmethod
    def split_names(cls, value):
        if isinstance(value, str):
            value = [name for name in value.split(",") if name.strip()]
        return tuple(parse_evaluation(name).name for name in value)  # canonical names, checked

    @model_validator(mode="after")
    def check_combination(self):
        if self.model == "wrn" and (self.depth - 4) % 6:
            raise ValueError(f"depth: wrn depth must be 6n+4 (16, 22, 28, 34, ...), got {self.depth}")
        if self.step_schedule == "paper" and self.alpha is not None and INPUT_PERTURBATION[self.method] == "pgd":
            raise ValueError("alpha: step_schedule paper sets the step size from ε; leave alpha unset")
        return self

    @property
    def metric_names(self) -> list[str]:
        """Every metric a run of this config reports: per epoch on validation images, at the end on test ones."""
        return reported_metrics(self.epoch_attacks, dict.fromkeys(self.epoch_attacks + self.eval_attacks))

    def resolved_folders(self) -> TrainConfig:
        """This config with its data folders absolute (a relative one against SAMAT_DATA_ROOT, trainables.settings)."""
        return self.model_copy(update=data_folders(self.data_dir, self.corruption_dir))

    @property
    def validation_share(self) -> float:
        return DEFAULT_VAL_SPLIT[self.dataset] if self.val_split is None else self.val_split

    @property
    def attack_specs(self):
        """The final evaluations, parsed: AttackSpecs and CorruptionSpecs."""
        return [parse_evaluation(name) for name in self.eval_attacks]

    @property
    def epoch_attack_specs(self):
        return [parse_evaluation(name) for name in self.epoch_attacks]
