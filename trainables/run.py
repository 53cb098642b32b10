"""One training run with torch alone: build everything from a TrainConfig, train epoch by epoch, evaluate,
save and resume. Ray, the CLI and the benchmarks all drive it through `fit` or the `Run` methods."""

from __future__ import annotations

import math
import os
import time
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import torch

from trainables.config import TrainConfig
from trainables.corruptions import check_corruptions_fit, corrupt
from trainables.data import ImageData, augment, load_corruption_files, load_dataset
from trainables.evaluate import evaluate
from trainables.models import build_model
from trainables.step import PGD, eval_mode, make_step
from trainables.usage import UsageError
from trainables.vocabulary import (
    BEST_EPOCH,
    COLLAPSE_EPOCH,
    COLLAPSED,
    EVAL_TIME_S,
    GUARD_ROBUST_ACC,
    INPUT_PERTURBATION,
    CorruptionSpec,
    corruptions_named,
    metric_on_test,
)

CHECKPOINT_FORMAT = "samat-checkpoint-1"
# Robust test accuracy keeps the benchmarks' first `eval_n` test images (RobustBench's and the paper's first 1000
# CIFAR ones); a prefix holding fewer classes than a random draw of as many images would hold with this chance
# says the test set is ordered (by class), and that those accuracies describe some classes only
ORDERED_TEST_CHANCE = 1e-3


class CheckpointError(UsageError):
    """A checkpoint file that is unreadable, not samat's, or for another model."""


class DivergenceError(Exception):
    """The training loss became NaN or infinite."""


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda was asked for but no CUDA device is available")
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else ("cpu" if name == "auto" else name))


def lr_factor(schedule: str, progress: float) -> float:
    """Multiplier of the peak learning rate at `progress` in [0, 1) of training."""
    if schedule == "piecewise":  # the paper's: x1 to 75%, x0.1 to 90%, then x0.01
        return 1.0 if progress < 0.75 else 0.1 if progress < 0.9 else 0.01
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "cyclic":  # FastAT's one cycle (train_cifar.py): 0 -> peak at 2/5 of training -> 0
        return progress / 0.4 if progress < 0.4 else max(0.0, (1 - progress) / 0.6)
    return 1.0


def make_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    """The base optimiser: SGD with momentum (the paper's CNNs), Adam with an L2 penalty (its DeiT runs, lr 1e-3),
    or AdamW (decoupled weight decay). Adam and AdamW take no momentum nor Nesterov."""
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=config.weight_decay
    )


class CollapseGuard:
    """FastAT's guard against catastrophic overfitting (Wong et al. 2020; locuslab/fast_adversarial
    CIFAR10/train_fgsm.py `--early-stop`). After every epoch it measures PGD accuracy on one fixed training
    minibatch: `batch_size` training images drawn once with the split's seed, unaugmented, PGD-5 with α = ε/4
    and a random start at the training ε and norm (Wong's: 5 steps of 2/255 at ε = 8/255), model in eval mode.
    Accuracy falling more than `collapse_drop` below its best so far is a collapse: the best epoch's weights
    (parameters and BatchNorm statistics) are put back and training stops.

    Where Wong's code differs: it compares with the previous epoch (not the best), keeps the previous epoch's
    weights, and checks a fresh first minibatch each epoch. The best so far also catches a collapse spread over
    two epochs, and one fixed minibatch keeps epochs comparable. Drawn at random rather than the first images, it
    holds every class even where the training images load class by class."""

    STEPS = 5

    def __init__(self, run: Run):
        cfg = run.config
        x, self.y = run.data.train_sample(cfg.batch_size)
        self.x = x.contiguous(memory_format=run.memory_format)
        self.attack = PGD(cfg.norm, cfg.eps, cfg.eps / 4, self.STEPS)
        self.drop = cfg.collapse_drop
        self.last_acc = math.nan
        self.best_acc = -1.0
        self.best_epoch = 0
        self.best_weights: dict[str, torch.Tensor] = {}
        self.collapse_epoch = 0  # 0: no collapse

    def check(self, run: Run) -> bool:
        """Measure after an epoch; True on a collapse, with the best epoch's weights back in `run.net`."""
        adv = self.attack(run.model, self.x, self.y)
        with eval_mode(run.model), torch.no_grad():
            self.last_acc = (run.model(adv).argmax(1) == self.y).float().mean().item()
        if self.last_acc > self.best_acc:
            self.best_acc, self.best_epoch = self.last_acc, run.epoch
            self.best_weights = {k: v.detach().clone() for k, v in run.net.state_dict().items()}
        elif self.last_acc < self.best_acc - self.drop:
            self.collapse_epoch = run.epoch
            run.net.load_state_dict(self.best_weights)
            return True
        return False

    def metrics(self) -> dict[str, float]:
        collapsed = {COLLAPSE_EPOCH: self.collapse_epoch} if self.collapse_epoch else {}
        return {
            GUARD_ROBUST_ACC: self.last_acc,
            COLLAPSED: int(self.collapse_epoch > 0),
            BEST_EPOCH: self.best_epoch,
        } | collapsed

    def state_dict(self) -> dict:
        keys = ("last_acc", "best_acc", "best_epoch", "collapse_epoch", "best_weights")
        return {k: getattr(self, k) for k in keys}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)


class Run:
    def __init__(self, config: TrainConfig, data: ImageData | None = None):
        self.config = config
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        data = data or load_dataset(config.dataset, config.data_dir, config.download, config.image_size)
        data = data.hold_out(config.validation_share)  # the same validation images for every trial and seed
        self.data = data.to(self.device)
        n, covered, chance = data.test_prefix_coverage(config.eval_n)
        if chance < ORDERED_TEST_CHANCE:
            warnings.warn(
                f"{data.name}: robust test accuracy uses the first {n} test images, which hold {covered} of its "
                f"{data.num_classes} classes ({n} images drawn at random hold so few with a chance under "
                f"{ORDERED_TEST_CHANCE:g}): the test set is ordered, and those figures speak for these classes only",
                stacklevel=2,
            )
        # every corruption a final evaluation names, from the published files where given: checked now, so a bad
        # folder stops the run before it trains
        named = corruptions_named([*config.epoch_attacks, *config.eval_attacks])
        check_corruptions_fit(named, data.test_x.shape[-1])
        self.corruption_files = (
            load_corruption_files(config.corruption_dir, named, data.test_y, data.test_x.shape[1:])
            if config.corruption_dir and named
            else None
        )
        self.corrupted_sets: dict[tuple[CorruptionSpec, bool], tuple[torch.Tensor, torch.Tensor]] = {}
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        # `net` holds the weights (checkpoints, optimiser); `model` runs forward passes: the same module, or its
        # torch.compile wrapper, whose state_dict keys would carry an `_orig_mod.` prefix
        self.net = build_model(
            config.model,
            channels=data.channels,
            num_classes=data.num_classes,
            image_size=data.image_size,
            mean=data.mean,
            std=data.std,
            depth=config.depth,
            width=config.width,
            dropout=config.dropout,
            init=config.init,
        ).to(self.device, memory_format=self.memory_format)
        self.model = torch.compile(self.net) if config.compile else self.net
        self.optimizer = make_optimizer(config, self.net.parameters())
        self.batches_per_epoch = max(1, len(data.train_y) // config.batch_size)  # drop the ragged last batch
        total = config.epochs * self.batches_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(config.schedule, step / total)
        )
        self.step = make_step(
            config.method,
            rho=config.rho,
            eta=config.eta,
            norm=config.norm,
            eps=config.eps,
            attack_steps=config.attack_steps,
            alpha=config.alpha,
            forward_dtype=torch.bfloat16 if config.precision == "bf16" else None,
            step_schedule=config.step_schedule,
            craft_bn=config.craft_bn,
        )
        guarded = config.collapse_guard and INPUT_PERTURBATION[config.method] == "fgsm"
        self.guard = CollapseGuard(self) if guarded else None
        self.epoch = 0
        self.train_time_s = 0.0
        self.eval_time_s = 0.0

    def train_epoch(self, on_batch: Callable[[Run, int], None] | None = None) -> dict[str, float]:
        data, cfg = self.data, self.config
        self.model.train()
        start = time.perf_counter()
        order = torch.randperm(len(data.train_y), device=self.device)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        for i in range(self.batches_per_epoch):
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            x = augment(data.train_x[idx], data.crop_padding, data.flip).contiguous(memory_format=self.memory_format)
            y = data.train_y[idx]
            loss, logits = self.step(self.model, x, y, self.optimizer)
            self.scheduler.step()
            loss_sum += loss * len(y)  # accumulated on the device: no host sync inside the epoch
            correct += (logits.argmax(1) == y).sum()
            if on_batch:
                on_batch(self, i)
        seen = self.batches_per_epoch * cfg.batch_size
        train_loss = loss_sum.item() / seen
        self.train_time_s += time.perf_counter() - start
        self.epoch += 1
        if not math.isfinite(train_loss):
            raise DivergenceError(
                f"training loss became {train_loss} in epoch {self.epoch} (lr={cfg.lr:g}); lower the learning rate"
            )
        return {
            "epoch": self.epoch,
            "train_loss": train_loss,
            "train_acc": correct.item() / seen,
            "lr": self.scheduler.get_last_lr()[0],
            "train_time_s": self.train_time_s,
        }

    def evaluate(self, attacks=None, on_test: bool = False) -> dict[str, float]:
        """Clean accuracy and loss on all, robust accuracy on the first `eval_n` of the validation images (the
        test images with `on_test`, their metrics named `test/...`; also without a validation split). Before the
        last epoch, robust accuracy uses the first `epoch_eval_n` validation images only."""
        cfg = self.config
        attacks = cfg.epoch_attack_specs if attacks is None else attacks
        x, y = (self.data.test_x, self.data.test_y) if on_test else self.data.selection
        last = on_test or self.epoch >= cfg.epochs
        robust_n = cfg.eval_n if last or cfg.epoch_eval_n is None else min(cfg.epoch_eval_n, cfg.eval_n)
        start = time.perf_counter()
        # the attacks' random starts draw from their own seeded stream: the same weights always get the same
        # accuracies (a run resumed from its last checkpoint reports exactly what it reported before), and
        # evaluating never moves the training's random stream
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(cfg.seed)
            metrics = evaluate(
                self.model,
                x,
                y,
                self.data.num_classes,
                attacks,
                robust_n,
                standalone=cfg.epoch_attack_specs,
                corrupted=lambda corruption, n: self.corrupted(corruption, n, on_test),
            )
        self.eval_time_s += time.perf_counter() - start  # evaluate syncs with the device: the time is real
        if on_test:
            metrics = {metric_on_test(k): v for k, v in metrics.items()}
        return metrics | {EVAL_TIME_S: self.eval_time_s}

    def corrupted(self, corruption: CorruptionSpec, n: int, on_test: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The first `n` evaluation images under a corruption: read from the published files for the test images
        where `corruption_dir` names them, else made once per run from the first `eval_n` images (validation or
        test) with a seed of the corruption's own, the same for every trial, seed and resume on one kind of device
        (a CPU's and a GPU's random streams differ)."""
        key = (corruption, on_test)
        if key not in self.corrupted_sets:
            n_all = self.config.eval_n
            if on_test and self.corruption_files:
                x, y = self.corruption_files.images(corruption.corruption, corruption.severity, n_all)
            else:
                x, y = (self.data.test_x, self.data.test_y) if on_test else self.data.selection
                x, y = x[:n_all], y[:n_all]
                seed = zlib.crc32(f"{corruption.name} on {'test' if on_test else 'validation'}".encode())
                x = corrupt(x, corruption.corruption, corruption.severity, seed)
            self.corrupted_sets[key] = (x.to(self.device), y.to(self.device))
        x, y = self.corrupted_sets[key]
        return x[:n], y[:n]

    def test(self) -> dict[str, float]:
        """The test images, once after the last epoch, with every attack (epoch and final ones)."""
        cfg = self.config
        metrics = self.evaluate(
            [*cfg.epoch_attack_specs, *(a for a in cfg.attack_specs if a not in cfg.epoch_attack_specs)], on_test=True
        )
        self.corrupted_sets = {key: images for key, images in self.corrupted_sets.items() if not key[1]}  # done
        return metrics

    # ---- checkpoints: tensors, numbers and strings only, so torch.load(weights_only=True) can read them ----

    def state_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.model_dump(mode="json"),
            "epoch": self.epoch,
            "train_time_s": self.train_time_s,
            "eval_time_s": self.eval_time_s,
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        } | ({"guard": self.guard.state_dict()} if self.guard else {})

    def load_state_dict(self, state: dict, source: str = "checkpoint") -> None:
        saved = state["config"]
        for field in ("dataset", "model", "depth", "width", "method", "optimizer"):
            if saved.get(field, TrainConfig.model_fields[field].default) != getattr(self.config, field):
                raise CheckpointError(
                    f"{source}: saved for {field}={saved.get(field)!r}, this run has "
                    f"{field}={getattr(self.config, field)!r}"
                )
        try:
            self.net.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{source}: does not fit this model: {str(e).splitlines()[0]}") from e
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.train_time_s = state["epoch"], state["train_time_s"]
        self.eval_time_s = state.get("eval_time_s", 0.0)
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        if self.guard and "guard" in state:
            self.guard.load_state_dict(state["guard"])

    def save(self, path: str | Path) -> Path:
        """Write atomically: a crash mid-write leaves the previous checkpoint, never half a file."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)
        return path

    def load(self, path: str | Path) -> None:
        self.load_state_dict(read_checkpoint(path), str(path))


def read_checkpoint(path: str | Path) -> dict:
    """Read a samat checkpoint without ever unpickling code (weights_only=True)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as e:  # noqa: BLE001 - corrupt, truncated or foreign files all end here
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: not a readable samat checkpoint ({first})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a samat checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    return state


def fit(
    config: TrainConfig,
    on_epoch: Callable[[dict, Run], None] | None = None,
    on_batch: Callable[[Run, int], None] | None = None,
    resume_from: str | Path | None = None,
    data: ImageData | None = None,
) -> dict[str, float]:
    """Train to `config.epochs`, calling `on_epoch(metrics, run)` after each epoch with metrics on the validation
    images; the last epoch's metrics also hold the test images' (`test/...`, every attack of `config.eval_attacks`)
    and are returned. `resume_from` continues from a checkpoint.

    fast_at runs also report their collapse guard's metrics every epoch (`guard_robust_acc`, `collapsed`,
    `best_epoch`; see CollapseGuard). A collapse in epoch k ends the run there: the best epoch's weights are
    restored, evaluated with every final attack, and reported as the run's last result with `epoch` = `epochs`
    = config.epochs (the run is finished; the sweep layer counts it complete), `collapsed` = 1 and
    `collapse_epoch` = k. Its checkpoint holds the restored weights, so resuming it reports the same result."""
    run = Run(config, data)
    if resume_from:
        run.load(resume_from)
    metrics: dict[str, float] = {}
    while run.epoch < config.epochs:
        metrics = run.train_epoch(on_batch)
        if run.guard and run.guard.check(run):
            run.epoch = metrics["epoch"] = config.epochs  # a collapse ends training with the best weights
        metrics |= run.evaluate() | (run.guard.metrics() if run.guard else {})
        if run.epoch == config.epochs:
            metrics |= run.test()
        metrics["epochs"] = run.epoch
        if on_epoch:
            on_epoch(metrics, run)
    if not metrics:  # resumed from a checkpoint of the last epoch: nothing to train, report the result again
        metrics = {"epoch": run.epoch, "epochs": run.epoch, "train_time_s": run.train_time_s}
        metrics |= run.evaluate() | run.test()
        metrics |= run.guard.metrics() if run.guard else {}
        if on_epoch:
            on_epoch(metrics, run)
    return metrics
