"""Runs: repeatable, resumable from checkpoints to identical results, safe against foreign files, and loud on NaN."""

import pytest
import torch

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
