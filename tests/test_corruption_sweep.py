"""Corruption robustness as a third objective, end to end: a real sweep (Ray Tune, Optuna's NSGA-II, MO-ASHA,
MLflow on sqlite) of tiny CIFAR-10 files with a tiny CIFAR-10-C folder, read back through the front, the exact 3-D
hypervolume, the export, MLflow and the plots."""

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from analysis.export import read_table
from analysis.pareto import hypervolume
from analysis.trials import objective_values
from sweeps.cli import main
from tests.conftest import tiny_spec
from tests.test_data import write_cifar
from trainables.vocabulary import PAPER_CORRUPTIONS

OBJECTIVES = ["clean_acc", "robust_acc/pgd_linf_2of255", "corruption_acc/paper9_3"]


@pytest.fixture(scope="module")
def corruption_sweep(tmp_path_factory):
    from sweeps.run import run_sweep
    from sweeps.spec import validate_spec
    from trainables.data import load_dataset

    root = tmp_path_factory.mktemp("corruption")
    write_cifar(
        root / "data", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels", 10
    )
    test_y = load_dataset("cifar10", root / "data").test_y.numpy()
    folder = root / "CIFAR-10-C"
    folder.mkdir()
    np.save(folder / "labels.npy", np.tile(test_y.astype(np.uint8), 5))
    for corruption in PAPER_CORRUPTIONS:  # grey images: what a model makes of them is their accuracy
        np.save(folder / f"{corruption}.npy", np.full((5 * len(test_y), 32, 32, 3), 128, np.uint8))
    spec = tiny_spec(
        name="corrupt3",
        dataset="cifar10",
        data_dir=str(root / "data"),
        corruption_dir=str(folder),
        models=["mlp"],
        methods={"sgd": {}, "sam": {"rho": {"low": 0.01, "high": 0.3, "log": True}}},
        train={"epochs": 2, "lr": {"low": 0.02, "high": 0.1}, "batch_size": 2},
        objective_attack="pgd_linf_2of255",
        final_attacks=["corrupt_paper9_3"],
        objectives=[{"metric": m} for m in OBJECTIVES],
        val_split=0.5,
        search={"sampler": "nsga2", "seed": 0, "trials": 4, "concurrency": 2},
        scheduler={"type": "moasha", "grace_period": 1, "reduction_factor": 2},
    )
    return run_sweep(validate_spec(spec), results_dir=root / "results", num_cpus=2), root


def test_a_three_objective_sweep_ranks_records_and_exports_the_corruption_objective(corruption_sweep, capsys):
    result, root = corruption_sweep
    assert result.finished and result.objectives == OBJECTIVES
    ranked = [t for t in result.trials if t.rank is not None]
    assert ranked and all(set(t.objectives) == set(OBJECTIVES) for t in ranked)
    # the objective on validation images (made on the fly), the test figure from the files' grey images
    assert all(0 <= t.objectives["corruption_acc/paper9_3"] <= 1 for t in ranked)
    assert all(
        t.metrics["test/corruption_acc/paper9_3"] == t.metrics["test/corruption_acc/fog_3"] for t in ranked
    )  # nine identical grey sets: the mean is each one
    client = MlflowClient(result.tracking_uri)
    experiment = client.get_experiment_by_name("corrupt3")
    parent = client.search_runs([experiment.experiment_id], "tags.`samat.role` = 'sweep'")[0]
    front = [objective_values(t, result.directions) for t in result.front]
    assert parent.data.metrics["hypervolume"] == pytest.approx(hypervolume(front, ["max"] * 3, [0.0, 0.0, 0.0]))
    trials = client.search_runs([experiment.experiment_id], "tags.`samat.role` = 'trial'")
    assert len(trials) == 4
    for run in trials:  # every epoch's validation figure, the stopped trials' too
        history = client.get_metric_history(run.info.run_id, "corruption_acc/paper9_3")
        assert len(history) == run.data.metrics["epochs"] and "corruption_acc/snow_3" in run.data.metrics
    out = root / "trials.csv"
    assert main(["frontier", "export", "corrupt3", "-o", str(out), "--tracking-uri", result.tracking_uri]) == 0
    exported = read_table(out)
    assert {"corruption_acc/paper9_3", "test/corruption_acc/paper9_3"} <= set(exported[0])
    for suffix in ("png", "html"):
        plot = root / f"front.{suffix}"
        assert main(["frontier", "plot", "corrupt3", "-o", str(plot), "--tracking-uri", result.tracking_uri]) == 0
    assert "scatter3d" in (root / "front.html").read_text()
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "front")}
    assert {"front/front.png", "front/front.html"} <= artifacts
    assert json.loads(Path(client.download_artifacts(parent.info.run_id, "front/front.json")).read_text())
