"""Cost of robust evaluation: PGD-k robust accuracy vs (k+1) training forward+backward passes over the same
images, in one run on the same model.

    uv run python bench/eval_cost.py                       # small_cnn, 1000 CIFAR-shaped images, PGD-10
    uv run python bench/eval_cost.py --model preact_resnet18 --images 200

Goal: robust accuracy of the objective attack costs no more than (steps + 1) forward+backward passes. It
costs less: torchattacks' PGD asks autograd for the input gradient only, so each step's backward skips the
weight-gradient kernels; the data stay on the device and correct counts are summed there (one host sync per
attack), so no per-batch copy or Python overhead adds up."""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from trainables.evaluate import robust_accuracy
from trainables.models import build_model
from trainables.vocabulary import parse_attack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--attack", default="pgd_linf_8of255")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device(args.device)
    model = (
        build_model(args.model, channels=3, num_classes=10, image_size=32, mean=(0.5,) * 3, std=(0.25,) * 3)
        .to(device)
        .eval()
    )
    x = torch.rand(args.images, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.images,), device=device)
    attack = parse_attack(args.attack)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def forward_backward_pass():
        """One training-style pass over the images: forward, loss, backward into the weights."""
        for i in range(0, args.images, args.batch_size):
            F.cross_entropy(model(x[i : i + args.batch_size]), y[i : i + args.batch_size]).backward()
        model.zero_grad(set_to_none=True)

    def evaluation():
        robust_accuracy(model, attack, x, y, 10, args.batch_size)

    def timed(fn) -> float:
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start

    jobs = {"fwd+bwd pass": forward_backward_pass, "robust eval": evaluation}
    for fn in jobs.values():  # warm-up
        fn()
    times = {name: [] for name in jobs}
    for _ in range(args.repeats):
        for name, fn in jobs.items():
            times[name].append(timed(fn))
    median = {name: statistics.median(t) for name, t in times.items()}

    budget = (attack.steps + 1) * median["fwd+bwd pass"]
    print(
        f"{args.model}, {args.images} images of 3x32x32 in batches of {args.batch_size}, {attack.name} "
        f"(PGD-{attack.steps}), device {device}, median of {args.repeats}"
    )
    print(f"one training fwd+bwd pass over the images  {median['fwd+bwd pass']:8.3f} s")
    print(f"budget: (steps+1) passes                   {budget:8.3f} s")
    ratio = median["robust eval"] / budget
    print(
        f"robust accuracy (samat)                    {median['robust eval']:8.3f} s   {ratio:.2f} x budget  "
        f"{'ok' if ratio <= 1 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
