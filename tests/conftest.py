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
