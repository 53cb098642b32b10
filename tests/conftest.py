import pytest
import torch

from trainables.config import TrainConfig
from trainables.data import load_digits_data
from trainables.run import Run, fit


@pytest.fixture(scope="session")
def digits():
    return load_digits_data()


@pytest.fixture(scope="session")
def trained_digits_model(digits):
    """small_cnn trained with plain SGD on digits for 10 epochs (about a second on 2 cores)."""
    config = TrainConfig(epochs=10, eval_attacks=())
    run = Run(config, digits)
    while run.epoch < config.epochs:
        run.train_epoch()
    run.model.zero_grad(set_to_none=True)  # so tests can see an attack leave no gradient behind
    run.model.eval()
    return run.model


@pytest.fixture(scope="session")
def robust_digits_metrics(digits):
    """sgd and at trained alike, evaluated with the same PGD attack: {method: metrics}."""
    attack = "pgd_linf_0.1"
    common = dict(epochs=10, eps=0.1, attack_steps=5, eval_attacks=(attack,))
    return {m: fit(TrainConfig(method=m, **common), data=digits) for m in ("sgd", "at")}


def tiny_spec(**changes) -> dict:
    """A sweep spec small enough for tests: digits, 1-2 epochs, three methods with conditional parameters."""
    spec = {
        "name": "tiny", "dataset": "digits", "models": ["small_cnn", "mlp"],
        "methods": {"sgd": {}, "sam": {"rho": {"low": 0.01, "high": 0.3, "log": True}},
                    "at": {"eps": {"low": 0.05, "high": 0.2}, "attack_steps": 2}},
        "train": {"epochs": 2, "lr": {"low": 0.02, "high": 0.1}},
        "objective_attack": "pgd_linf_0.1", "eval_n": 100,
        "search": {"sampler": "random", "seed": 3, "trials": 3, "concurrency": 2},
        "resources": {"cpu": 1},
    }
    spec.update(changes)
    return spec


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
    """One real 3-trial sweep (Ray Tune, Optuna, MLflow on sqlite) shared by the tests that read its records."""
    from sweeps.run import run_sweep
    from sweeps.spec import validate_spec

    results = tmp_path_factory.mktemp("results")
    return run_sweep(validate_spec(tiny_spec()), results_dir=results, num_cpus=2)
