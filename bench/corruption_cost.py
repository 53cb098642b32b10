"""Cost of the paper's corruption evaluation against one PGD-10 evaluation of the same images, in one run.

    uv run python bench/corruption_cost.py                          # small_cnn, 1000 CIFAR-shaped images, CPU
    python bench/corruption_cost.py --model preact_resnet18 --device cuda   # torch only: runs on a bare GPU image

Corruption: the nine corruptions of the paper (severity 3) made from the images (trainables.corruptions) and the
model's accuracy on each set. PGD-10: ℓ∞ 8/255 (α = ε/4, random start, torchattacks as samat builds it) on every
image, and the accuracy on the result. The two are timed interleaved, the median of the repeats; goal:
corruption / PGD-10 <= 1."""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from step_cost import synthetic_training

from trainables.corruptions import corrupt
from trainables.evaluate import build_attack, clean_accuracy, input_gradients_only
from trainables.step import eval_mode
from trainables.vocabulary import PAPER_CORRUPTIONS, parse_attack


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def corruption_evaluation(model, x, y) -> float:
    accuracies = [
        clean_accuracy(model, corrupt(x, c, 3, seed), y)["clean_acc"] for seed, c in enumerate(PAPER_CORRUPTIONS)
    ]
    return sum(accuracies) / len(accuracies)


def pgd_evaluation(model, x, y) -> float:
    with eval_mode(model), input_gradients_only(model):
        attack = build_attack(parse_attack("pgd_linf_8of255"), model, 10)
        adversarial = torch.cat([attack(x[i : i + 500], y[i : i + 500]) for i in range(0, len(y), 500)])
    return clean_accuracy(model, adversarial, y)["clean_acc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model, _, x, y = synthetic_training(args.model, args.images, device, channels_last=False)
    x = (x * 255).round() / 255  # 8-bit images, as CIFAR's
    model.eval()
    timings = {"corruption (nine, severity 3)": [], "PGD-10 l_inf 8/255": []}
    runs = dict(zip(timings, (corruption_evaluation, pgd_evaluation)))
    for repeat in range(args.repeats + 1):  # the first round warms up
        for label, run in runs.items():
            sync(device)
            start = time.perf_counter()
            run(model, x, y)
            sync(device)
            if repeat:
                timings[label].append(time.perf_counter() - start)
    medians = {label: statistics.median(t) for label, t in timings.items()}
    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    print(f"{args.model}, {args.images} images 3x32x32, {device} (torch threads {threads}), median of {args.repeats}")
    for label, seconds in medians.items():
        print(f"{label:<32} {seconds:8.3f} s")
    ratio = medians["corruption (nine, severity 3)"] / medians["PGD-10 l_inf 8/255"]
    print(f"{'corruption / PGD-10':<32} {ratio:8.2f}     goal <= 1  {'ok' if ratio <= 1 else 'MISSED'}")


if __name__ == "__main__":
    main()
