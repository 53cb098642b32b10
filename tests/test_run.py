"""Runs: repeatable, resumable from checkpoints to identical results, safe against foreign files, and loud on NaN."""

import math
import warnings

import pytest
import torch

from tests.test_data import class_ordered_data
from trainables.config import TrainConfig
from trainables.run import CheckpointError, DivergenceError, Run, fit, lr_factor, read_checkpoint


def params(model):
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("method", ["sam", "fast_at"])
def test_checkpoint_round_trip_resumes_to_identical_next_epoch(tmp_path, digits, method):
    config = TrainConfig(method=method, epochs=3, eps=0.1, eval_attacks=())
    run = Run(config, digits)
    run.train_epoch()
    path = run.save(tmp_path / "ck.pt")
    expected = run.train_epoch()  # continues with the optimiser momentum, schedule and RNG as they were
    expected_params = params(run.model)

    resumed = Run(config, digits)
    resumed.load(path)
    assert resumed.epoch == 1 and resumed.scheduler.last_epoch == run.batches_per_epoch
    got = resumed.train_epoch()
    assert got["train_loss"] == expected["train_loss"] and got["lr"] == expected["lr"]
    for a, b in zip(params(resumed.model), expected_params):
        assert torch.equal(a, b)


def test_fit_resumes_from_a_checkpoint_and_reports_every_epoch(tmp_path, digits):
    config = TrainConfig(epochs=3, eval_attacks=(), epoch_attacks=("fgsm_linf_0.1",))
    seen = []

    def stop_after_two(metrics, run):
        seen.append(metrics["epoch"])
        run.save(tmp_path / "ck.pt")
        if metrics["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(config, on_epoch=stop_after_two, data=digits)
    final = fit(config, on_epoch=lambda m, r: seen.append(m["epoch"]), resume_from=tmp_path / "ck.pt", data=digits)
    straight = fit(config, data=digits)
    assert seen == [1, 2, 3] and final["epochs"] == 3
    assert final["clean_acc"] == straight["clean_acc"] and final["train_loss"] == straight["train_loss"]
    assert "robust_acc/fgsm_linf_0.1" in final


def test_corrupted_checkpoint_is_named_in_the_error(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"\x80\x04 this is not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pt"):
        read_checkpoint(bad)


def test_checkpoint_with_code_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "samat-checkpoint-1", "model": Payload()}, evil)
    with pytest.raises(CheckpointError, match="evil.pt"):
        read_checkpoint(evil)
    assert not marker.exists()


def test_foreign_and_mismatched_checkpoints_are_refused(tmp_path, digits):
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, foreign)
    with pytest.raises(CheckpointError, match="not a samat checkpoint"):
        read_checkpoint(foreign)
    cnn = Run(TrainConfig(epochs=1), digits)
    path = cnn.save(tmp_path / "cnn.pt")
    with pytest.raises(CheckpointError, match="model='small_cnn'"):
        Run(TrainConfig(model="mlp", epochs=1), digits).load(path)


def test_diverging_training_raises(digits):
    with pytest.raises(DivergenceError, match="lower the learning rate"):
        fit(TrainConfig(model="mlp", lr=1e6, momentum=0.0, epochs=3, eval_attacks=()), data=digits)


def test_same_seed_same_result_on_cpu(digits):
    a = fit(TrainConfig(epochs=2, seed=3, eval_attacks=()), data=digits)
    b = fit(TrainConfig(epochs=2, seed=3, eval_attacks=()), data=digits)
    c = fit(TrainConfig(epochs=2, seed=4, eval_attacks=()), data=digits)
    assert a["train_loss"] == b["train_loss"] and a["train_loss"] != c["train_loss"]


def test_schedules():
    assert [lr_factor("piecewise", p) for p in (0, 0.74, 0.75, 0.89, 0.9, 0.99)] == [1, 1, 0.1, 0.1, 0.01, 0.01]
    assert lr_factor("cosine", 0) == 1 and lr_factor("cosine", 0.5) == pytest.approx(0.5)
    assert lr_factor("constant", 0.9) == 1
    # FastAT's one cycle (train_cifar.py's np.interp([0, 2/5, 1], [0, 1, 0])): up to the peak at 2/5, down to 0
    cyclic = [lr_factor("cyclic", p) for p in (0, 0.2, 0.4, 0.7, 1.0)]
    assert cyclic == [0, pytest.approx(0.5), 1, pytest.approx(0.5), 0]


@pytest.mark.parametrize(
    "name,kind", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)]
)
def test_optimizer_choice_reaches_the_run(digits, name, kind):
    config = TrainConfig(optimizer=name, lr=0.003, weight_decay=1e-4, momentum=0.5, epochs=1, eval_attacks=())
    run = Run(config, digits)
    assert type(run.optimizer) is kind
    group = run.optimizer.param_groups[0]
    assert group["lr"] == 0.003 and group["weight_decay"] == 1e-4
    assert ("momentum" in group) == (name == "sgd")  # Adam and AdamW take no momentum
    assert math.isfinite(run.train_epoch()["train_loss"])
    sam = Run(config.model_copy(update={"method": "sam"}), digits)  # SAM wraps whichever base optimiser
    assert type(sam.optimizer) is kind and math.isfinite(sam.train_epoch()["train_loss"])


def test_dropout_and_init_reach_the_model(digits):
    run = Run(TrainConfig(model="wrn", depth=10, width=1, dropout=0.2, init="msra", epochs=1, eval_attacks=()), digits)
    assert [m.p for m in run.net.modules() if isinstance(m, torch.nn.Dropout)] == [0.2] * 3
    assert all(torch.all(m.weight == 1) for m in run.net.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_config_carries_the_step_schedule_and_craft_mode(digits):
    run = Run(TrainConfig(method="sam_at", eps=8 / 255, step_schedule="paper", craft_bn="train", epochs=1), digits)
    pgd = run.step.input_perturbation
    assert (pgd.steps, pgd.alpha, pgd.craft_bn) == (10, pytest.approx(2 / 255), "train")
    with pytest.raises(ValueError, match="leave alpha unset"):
        TrainConfig(method="at", step_schedule="paper", alpha=0.01)


# all training images (no validation split): the guard test is calibrated on how far 2 epochs get
FAST = dict(method="fast_at", eps=0.1, eval_attacks=("pgd_linf_0.1",), eval_n=100, val_split=0)


def weights(run) -> dict:
    return {k: v.detach().clone() for k, v in run.net.state_dict().items()}


def test_fast_at_collapse_restores_the_best_epoch_and_ends_the_run_complete(tmp_path, digits):
    """A collapse forced in epoch 3 (every weight zeroed in its last batch: the guard's PGD accuracy falls to
    chance) stops training: the best epoch's weights come back, are evaluated with the final attacks, and the
    result is reported as the run's last, with epochs = config.epochs so the sweep counts it complete."""
    config = TrainConfig(epochs=5, **FAST)
    reports, snapshots = [], {}

    def on_epoch(metrics, run):
        reports.append(dict(metrics))
        snapshots[metrics["epoch"]] = weights(run)
        run.save(tmp_path / "ck.pt")

    def collapse_in_epoch_3(run, i):
        if run.epoch == 2 and i == run.batches_per_epoch - 1:
            with torch.no_grad():
                for p in run.net.parameters():
                    p.zero_()

    final = fit(config, on_epoch=on_epoch, on_batch=collapse_in_epoch_3, data=digits)
    assert [r["epoch"] for r in reports] == [1, 2, 5] and [r["epochs"] for r in reports] == [1, 2, 5]
    assert [r["collapsed"] for r in reports] == [0, 0, 1] and all("collapse_epoch" not in r for r in reports[:2])
    best = max((1, 2), key=lambda e: reports[e - 1]["guard_robust_acc"])
    assert final["collapse_epoch"] == 3 and final["best_epoch"] == best
    assert final["guard_robust_acc"] < reports[best - 1]["guard_robust_acc"] - config.collapse_drop
    for k, v in snapshots[5].items():  # the weights the run ends with are the best epoch's, BatchNorm included
        assert torch.equal(v, snapshots[best][k]), k
    assert final["clean_acc"] == reports[best - 1]["clean_acc"] > 0.5
    assert "test/robust_acc/pgd_linf_0.1" in final
    resumed = fit(config, resume_from=tmp_path / "ck.pt", data=digits)  # a finished run reports itself again
    assert {k: resumed[k] for k in ("epochs", "collapsed", "collapse_epoch", "best_epoch", "clean_acc")} == {
        k: final[k] for k in ("epochs", "collapsed", "collapse_epoch", "best_epoch", "clean_acc")
    }


def test_fast_at_without_a_collapse_trains_every_epoch_and_says_so(digits):
    reports = []
    final = fit(TrainConfig(epochs=3, **FAST), on_epoch=lambda m, r: reports.append(m), data=digits)
    assert [r["epoch"] for r in reports] == [1, 2, 3] and final["collapsed"] == 0 and "collapse_epoch" not in final
    assert all(0 <= r["guard_robust_acc"] <= 1 for r in reports)
    unguarded = fit(TrainConfig(epochs=1, collapse_guard=False, **FAST), data=digits)
    assert "collapsed" not in unguarded and "guard_robust_acc" not in unguarded
    assert "collapsed" not in fit(TrainConfig(epochs=1, eval_attacks=()), data=digits)  # only fast_at is guarded


@pytest.mark.parametrize("model", ["preact_resnet18", "wrn", "vit_tiny"])
def test_big_models_take_any_input_size_and_class_count(model):
    from trainables.models import build_model

    kw = {"depth": 10, "width": 1} if model == "wrn" else {}
    for channels, size, classes in [(1, 8, 10), (3, 32, 100)]:
        net = build_model(
            model,
            channels=channels,
            num_classes=classes,
            image_size=size,
            mean=(0.5,) * channels,
            std=(0.25,) * channels,
            **kw,
        )
        assert net(torch.rand(2, channels, size, size)).shape == (2, classes)


@pytest.mark.parametrize("method", ["sgd", "sam", "at"])
def test_bf16_autocast_steps_stay_close_to_fp32_and_keep_fp32_weights(digits, method):
    from trainables.models import build_model
    from trainables.step import make_step

    x, y = digits.train_x[:128], digits.train_y[:128]
    losses = {}
    for dtype in (None, torch.bfloat16):
        torch.manual_seed(0)
        model = build_model("small_cnn", channels=1, num_classes=10, image_size=8, mean=(0.5,), std=(0.25,))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        loss, logits = make_step(method, eps=0.1, attack_steps=2, forward_dtype=dtype)(model, x, y, optimizer)
        assert logits.dtype == (dtype or torch.float32)  # the forward pass ran in bf16
        assert all(p.dtype == torch.float32 for p in model.parameters())
        losses[dtype] = loss.item()
    assert losses[torch.bfloat16] == pytest.approx(losses[None], rel=0.05)


def test_channels_last_and_compile_train_and_checkpoint_like_the_plain_model(tmp_path, digits):
    config = TrainConfig(epochs=2, channels_last=True, compile=True, precision="bf16", eval_attacks=())
    run = Run(config, digits)
    assert run.model is not run.net  # compiled wrapper for forward passes, plain module for weights
    conv = next(m for m in run.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    plain = Run(TrainConfig(epochs=2, eval_attacks=()), digits)  # same seed, none of the three options
    fast_loss, plain_loss = run.train_epoch()["train_loss"], plain.train_epoch()["train_loss"]
    assert fast_loss == pytest.approx(plain_loss, rel=0.1)
    assert abs(run.evaluate([])["clean_acc"] - plain.evaluate([])["clean_acc"]) < 0.1
    path = run.save(tmp_path / "compiled.pt")
    assert not any(k.startswith("_orig_mod") for k in read_checkpoint(path)["model"])
    plain.load(path)  # a compiled run's checkpoint loads into a plain one
    for a, b in zip(plain.net.state_dict().values(), run.net.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu())


def test_guard_batch_samples_every_class_alike_for_every_trial_seed_and_resume(tmp_path):
    """On images in class order the guard's minibatch still holds many classes (the first 128 training images hold
    two), and it, like the validation order, is the same for another trial seed and after a checkpoint round trip."""
    data = class_ordered_data(shuffle_test=True)
    config = TrainConfig(model="mlp", method="fast_at", eps=0.1, epochs=2, val_split=0.1, eval_attacks=())
    run = Run(config, data)
    assert len(run.guard.y.unique()) >= 80
    run.train_epoch()
    run.guard.check(run)
    path = run.save(tmp_path / "ck.pt")
    resumed = Run(config, data)
    resumed.load(path)
    for other in (Run(config.model_copy(update={"seed": 1}), data), resumed):
        assert torch.equal(other.guard.x, run.guard.x) and torch.equal(other.guard.y, run.guard.y)
        assert torch.equal(other.data.val_x, run.data.val_x)


def few_classes_warnings(data) -> list[str]:
    """The warnings about few classes in the test images' prefix that a 2-epoch run on `data` gives."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning, repeated ones too
        fit(TrainConfig(model="mlp", epochs=2, val_split=0.1, eval_attacks=()), data=data)
    return [str(w.message) for w in caught if "test images" in str(w.message)]


def test_a_test_prefix_of_few_classes_is_said_once_per_run():
    """The first eval_n = 1000 of 4000 test images in class order hold 50 of the 200 classes: one warning for the
    run, none when the same test images are shuffled."""
    (message,) = few_classes_warnings(class_ordered_data())
    assert "class_ordered" in message and "1000" in message and "50 of its 200 classes" in message
    assert few_classes_warnings(class_ordered_data(shuffle_test=True)) == []
