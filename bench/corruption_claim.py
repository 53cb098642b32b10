"""The paper's corruption claim on the embedded default: does SAM beat adversarial training on corruption accuracy
at matched clean accuracy? Digits, small_cnn, a few ρ and ε, several seeds each, torch alone (no Ray).

    uv run python bench/corruption_claim.py                  # 3 seeds, two trainings at a time
    uv run python bench/corruption_claim.py --seeds 5 --workers 1

Every configuration trains with the quick sweep's recipe (10 epochs, batch 64, lr 0.05 piecewise) and is
reported on the test images: clean accuracy on all 360, PGD-10 ℓ∞ 0.1 (the quick sweep's objective attack) and the
paper's nine corruptions at severity 3 (made from the images with fixed seeds, the same for every run) on the same
images. Each line: mean ± sample std over the seeds, n = the number of seeds."""

from __future__ import annotations

import argparse
import statistics
from concurrent.futures import ProcessPoolExecutor

import torch

from trainables.config import TrainConfig
from trainables.run import fit

RECIPE = {"model": "small_cnn", "epochs": 10, "batch_size": 64, "lr": 0.05, "schedule": "piecewise"}
CONFIGS = {
    "sgd": {"method": "sgd"},
    "sam rho=0.05": {"method": "sam", "rho": 0.05},
    "sam rho=0.2": {"method": "sam", "rho": 0.2},
    "sam rho=0.5": {"method": "sam", "rho": 0.5},
    "at eps=0.05": {"method": "at", "norm": "linf", "eps": 0.05, "attack_steps": 5},
    "at eps=0.1": {"method": "at", "norm": "linf", "eps": 0.1, "attack_steps": 5},
}
REPORTED = {
    "clean": "test/clean_acc",
    "PGD-10 0.1": "test/robust_acc/pgd_linf_0.1",
    "corruption (nine, sev. 3)": "test/corruption_acc/paper9_3",
}


def train(label: str, seed: int) -> tuple[str, int, dict[str, float]]:
    torch.set_num_threads(1)
    config = TrainConfig(
        **RECIPE,
        **CONFIGS[label],
        seed=seed,
        eval_attacks=("pgd_linf_0.1", "corrupt_paper9_3"),
        eval_n=1000,
    )
    metrics = fit(config)
    return label, seed, {name: metrics[key] for name, key in REPORTED.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    jobs = [(label, seed) for seed in range(args.seeds) for label in CONFIGS]
    results: dict[str, list[dict[str, float]]] = {label: [] for label in CONFIGS}
    with ProcessPoolExecutor(args.workers) as pool:
        for label, seed, figures in pool.map(train, *zip(*jobs)):
            results[label].append(figures)
            print(f"  {label:<14} seed {seed}: " + "  ".join(f"{k} {v:.4f}" for k, v in figures.items()), flush=True)
    print(f"\ndigits test images, {RECIPE['model']}, {RECIPE['epochs']} epochs; mean ± std over n = {args.seeds} seeds")
    print(f"{'config':<14}" + "".join(f"{name:>28}" for name in REPORTED))
    for label, runs in results.items():
        cells = []
        for name in REPORTED:
            values = [r[name] for r in runs]
            cells.append(f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0:.4f}")
        print(f"{label:<14}" + "".join(f"{c:>28}" for c in cells))


if __name__ == "__main__":
    main()
