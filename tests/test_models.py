"""Architectures as published: parameter counts, dropout, the initialisation options, the ViT's patch stem."""

import math

import pytest
import torch
import torch.nn as nn

from trainables.models import build_model


def cifar_model(name: str, num_classes: int = 10, **kw) -> nn.Module:
    return build_model(name, channels=3, num_classes=num_classes, image_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, **kw)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_the_published_models():
    # PreActResNet-18 as the paper's model.py (weizeming/SAM_AT) and Wong et al.'s preact_resnet.py build it:
    # 11,172,170 for 10 classes. (The often-quoted 11,173,962 is the post-activation ResNet-18, whose three
    # projection shortcuts carry a BatchNorm each: 2·(128 + 256 + 512) = 1,792 parameters more.)
    assert count(cifar_model("preact_resnet18")) == 11_172_170 == 11_173_962 - 2 * (128 + 256 + 512)
    # WRN-28-10 (Zagoruyko & Komodakis 2016): 36.48M
    assert count(cifar_model("wrn", depth=28, width=10)) == 36_479_194
    # the class count only changes the head: 512 inputs (PreActResNet-18), 640 (WRN-28-10), plus biases
    assert count(cifar_model("preact_resnet18", 100)) - count(cifar_model("preact_resnet18")) == 90 * 513
    # dropout adds no parameters
    assert count(cifar_model("wrn", depth=28, width=10, dropout=0.3)) == 36_479_194


def test_wrn_dropout_sits_in_every_block_and_only_acts_in_train_mode():
    torch.manual_seed(0)
    net = cifar_model("wrn", depth=10, width=1, dropout=0.3)
    drops = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 3 and all(d.p == 0.3 for d in drops)  # (10 - 4) / 6 = 1 block per stage, 3 stages
    assert not any(isinstance(m, nn.Dropout) for m in cifar_model("wrn", depth=10, width=1).modules())
    x = torch.rand(4, 3, 32, 32)
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    assert not torch.equal(net(x), net(x))


def conv_std(net: nn.Module) -> list[tuple[float, int, int]]:
    """(measured std, fan_in, fan_out) of every big enough convolution."""
    rows = []
    for m in net.modules():
        if isinstance(m, nn.Conv2d) and m.weight.numel() >= 4096:
            k = m.kernel_size[0] * m.kernel_size[1]
            rows.append((m.weight.std().item(), m.in_channels * k, m.out_channels * k))
    return rows


@pytest.mark.parametrize("model", ["preact_resnet18", "wrn"])
def test_msra_init_is_fan_out_with_unit_batchnorm_and_zero_linear_bias(model):
    torch.manual_seed(0)
    net = cifar_model(model, init="msra", **({"depth": 16, "width": 4} if model == "wrn" else {}))
    rows = conv_std(net)
    assert rows and any(fi != fo for _, fi, fo in rows)  # fan_in and fan_out differ somewhere, so this tells
    for std, _, fan_out in rows:
        assert std == pytest.approx(math.sqrt(2 / fan_out), rel=0.1)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(b.weight == 1) and torch.all(b.bias == 0) for b in bns)
    assert all(torch.all(m.bias == 0) for m in net.modules() if isinstance(m, nn.Linear))


def test_paper_init_is_fan_in_with_uniform_batchnorm_weights():
    """The paper's WRN code (riverback/SAM_AT_seg model.py): kaiming normal fan_in, BatchNorm weight U(0, 1)."""
    torch.manual_seed(0)
    net = cifar_model("wrn", depth=16, width=4, init="paper")
    for std, fan_in, _ in conv_std(net):
        assert std == pytest.approx(math.sqrt(2 / fan_in), rel=0.1)
    weights = torch.cat([m.weight.flatten() for m in net.modules() if isinstance(m, nn.BatchNorm2d)])
    assert weights.min() >= 0 and weights.max() <= 1 and 0.4 < weights.mean() < 0.6
    assert all(torch.all(m.bias == 0) for m in net.modules() if isinstance(m, nn.Linear))


def test_torch_init_is_left_alone():
    torch.manual_seed(0)
    default = cifar_model("preact_resnet18")
    torch.manual_seed(0)
    explicit = cifar_model("preact_resnet18", init="torch")
    for a, b in zip(default.parameters(), explicit.parameters()):
        assert torch.equal(a, b)
    linear = next(m for m in default.modules() if isinstance(m, nn.Linear))
    assert linear.bias.abs().sum() > 0  # PyTorch's default is not zero: msra and paper change it


def test_vit_patch_stem_is_initialised_as_torchvisions():
    """The replaced conv_proj gets VisionTransformer.__init__'s own init: trunc normal, std sqrt(1/fan_in), bias 0."""
    torch.manual_seed(0)
    vit = build_model("vit_tiny", channels=3, num_classes=10, image_size=32, mean=(0.5,) * 3, std=(0.25,) * 3)
    proj = vit[1].conv_proj
    fan_in = 3 * 2 * 2
    assert proj.kernel_size == (2, 2) and torch.all(proj.bias == 0)
    assert proj.weight.std().item() == pytest.approx(math.sqrt(1 / fan_in), rel=0.1)
    # PyTorch's Conv2d default (kaiming uniform, a=√5) has std sqrt(1/(3·fan_in)): clearly different
    assert proj.weight.std().item() > 1.4 * math.sqrt(1 / (3 * fan_in))
