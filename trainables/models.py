"""Image classifiers. Every model takes pixels in [0, 1]; normalisation is its first layer, so attacks,
ε-balls and clipping all live in pixel space."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainables.vocabulary import MODELS

CONV_MODELS = ("small_cnn", "preact_resnet18", "wrn")  # the models `init` re-initialises


class Normalize(nn.Module):
    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


def conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def small_cnn(channels: int, num_classes: int, width: int = 32) -> nn.Module:
    """Three conv-BN-ReLU blocks and a linear head: trains on digits in seconds on a CPU."""
    return nn.Sequential(
        conv_bn(channels, width),
        conv_bn(width, 2 * width),
        nn.MaxPool2d(2),
        conv_bn(2 * width, 4 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, num_classes),
    )


def mlp(channels: int, num_classes: int, image_size: int, width: int = 256) -> nn.Module:
    """Two hidden layers, no BatchNorm: the architectural opposite of small_cnn for quick sweeps."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(channels * image_size * image_size, width),
        nn.ReLU(inplace=True),
        nn.Linear(width, width),
        nn.ReLU(inplace=True),
        nn.Linear(width, num_classes),
    )


class PreActBlock(nn.Module):
    """Pre-activation residual block (He et al. 2016), optionally with dropout (as in Wide ResNets)."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + shortcut


class PreActResNet(nn.Module):
    def __init__(
        self,
        channels: int,
        num_classes: int,
        stem_width: int,
        stage_widths: list[int],
        blocks: list[int],
        dropout: float = 0.0,
    ):
        super().__init__()
        self.stem = nn.Conv2d(channels, stem_width, 3, 1, 1, bias=False)
        layers, cin = [], stem_width
        for i, (cout, n) in enumerate(zip(stage_widths, blocks)):
            for j in range(n):
                layers.append(PreActBlock(cin, cout, 2 if (i > 0 and j == 0) else 1, dropout))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(cin)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x):
        out = F.relu(self.bn(self.layers(self.stem(x))))
        return self.head(F.adaptive_avg_pool2d(out, 1).flatten(1))


def preact_resnet18(channels: int, num_classes: int, dropout: float = 0.0) -> nn.Module:
    return PreActResNet(channels, num_classes, 64, [64, 128, 256, 512], [2, 2, 2, 2], dropout)


def wrn(channels: int, num_classes: int, depth: int = 28, width: int = 10, dropout: float = 0.0) -> nn.Module:
    """Wide ResNet-depth-width (Zagoruyko & Komodakis 2016): three stages of (depth-4)/6 pre-act blocks, dropout
    between each block's two convolutions after the ReLU, as the authors' models/wide-resnet.lua (the paper's
    WRN-28-10 code, riverback/SAM_AT_seg, drops out the first convolution's output before BatchNorm instead)."""
    if (depth - 4) % 6:
        raise ValueError(f"wrn depth must be 6n+4 (e.g. 16, 22, 28, 34), got {depth}")
    n = (depth - 4) // 6
    return PreActResNet(channels, num_classes, 16, [16 * width, 32 * width, 64 * width], [n, n, n], dropout)


def vit_tiny(channels: int, num_classes: int, image_size: int) -> nn.Module:
    """DeiT-tiny shape (dim 192, 12 layers, 3 heads) with patch 2 at 32 px, as in the paper; patch 2 also suits
    8 px digits, and larger images keep 16x16 patches' worth of tokens."""
    # torchvision.models costs ~3 s to import, paid again by every Ray trial process: only this model pays it
    from torchvision.models import VisionTransformer  # noqa: PLC0415

    patch = max(2, image_size // 16)
    if image_size % patch:
        raise ValueError(f"vit_tiny needs an image size divisible by its patch size {patch}, got {image_size}")
    vit = VisionTransformer(
        image_size, patch, num_layers=12, num_heads=3, hidden_dim=192, mlp_dim=768, num_classes=num_classes
    )
    vit.conv_proj = nn.Conv2d(channels, 192, patch, patch)  # torchvision's stem assumes RGB
    # initialised as torchvision's VisionTransformer.__init__ does its own patchify stem
    fan_in = channels * patch * patch
    nn.init.trunc_normal_(vit.conv_proj.weight, std=math.sqrt(1 / fan_in))
    nn.init.zeros_(vit.conv_proj.bias)
    return vit


def initialize(model: nn.Module, scheme: str) -> nn.Module:
    """Re-initialise convolutions, BatchNorms and linear layers in place.
    msra — convolutions N(0, 2/(k·k·c_out)) (kaiming normal, fan_out), BatchNorm weight 1 bias 0, linear bias 0:
           the WRN authors' `MSRinit`/`FCinit` (szagoruyko/wide-residual-networks models/utils.lua) and Wong et
           al.'s `initialize_weights` (locuslab/fast_adversarial CIFAR10/train_cifar.py);
    paper — the paper's WRN-28-10 code (riverback/SAM_AT_seg train_eval_scripts/model.py, after
           hysts/pytorch_image_classification): kaiming normal fan_in, BatchNorm weight U(0, 1) bias 0, linear bias 0;
    torch — leave PyTorch's defaults."""
    if scheme == "torch":
        return model
    if scheme not in ("msra", "paper"):
        raise ValueError(f"unknown init {scheme!r}; choose torch, msra or paper")
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out" if scheme == "msra" else "fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            if scheme == "msra":
                nn.init.ones_(m.weight)
            else:
                nn.init.uniform_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
    return model


def build_model(
    name: str,
    *,
    channels: int,
    num_classes: int,
    image_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    depth: int = 28,
    width: int = 10,
    dropout: float = 0.0,
    init: str = "torch",
) -> nn.Module:
    """The model `name` behind its normalisation. `dropout` reaches preact_resnet18 and wrn blocks, `init` the
    convolutional models (small_cnn, preact_resnet18, wrn); mlp and vit_tiny keep their own initialisation."""
    if name == "small_cnn":
        body = small_cnn(channels, num_classes)
    elif name == "mlp":
        body = mlp(channels, num_classes, image_size)
    elif name == "preact_resnet18":
        body = preact_resnet18(channels, num_classes, dropout)
    elif name == "wrn":
        body = wrn(channels, num_classes, depth, width, dropout)
    elif name == "vit_tiny":
        body = vit_tiny(channels, num_classes, image_size)
    else:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    if name in CONV_MODELS:
        initialize(body, init)
    return nn.Sequential(Normalize(mean, std), body)
