"""The cluster: cluster.yaml passes Ray's own launcher validation, and a sweep runs across a real two-node Ray
cluster on this machine (loopback only), its driver joining by address from the environment, and survives
losing a node mid-sweep."""

import contextlib
import copy
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import optuna
import pytest
import yaml
from mlflow import MlflowClient
from ray.autoscaler._private.util import prepare_config, validate_config  # `ray up`'s own validation (private)

from tests.conftest import epochs_by_process, last_result, random_sweep, results_of, trial_dirs, write_spec

ROOT = Path(__file__).resolve().parent.parent
SAMAT = shutil.which("samat", path=str(Path(sys.executable).parent))


def validated(config: dict) -> dict:
    config = prepare_config(copy.deepcopy(config))
    validate_config(config)
    return config


def test_cluster_yaml_passes_ray_validation():
    raw = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config = validated(raw)
    assert config["provider"]["type"] == "aws"
    workers = config["available_node_types"]["gpu_worker"]
    assert workers["resources"]["GPU"] >= 1 and workers["min_workers"] == 0 and workers["max_workers"] >= 1
    assert config["available_node_types"]["head"]["resources"] == {"CPU": 0}
    setup = "\n".join(config["setup_commands"])
    assert "uv sync --frozen" in setup and "SAMAT_RESULTS=s3://" in setup  # Ray from the lock; shared storage
    head = "\n".join(config["head_start_ray_commands"])
    assert "mlflow server" in head and "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head


@pytest.mark.parametrize("breakage", ["unknown key", "fractional resource", "unknown node key"])
def test_broken_cluster_yaml_is_rejected(breakage):
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    if breakage == "unknown key":
        config["max_wrokers"] = 3
    elif breakage == "fractional resource":
        config["available_node_types"]["gpu_worker"]["resources"]["GPU"] = 0.5
    else:
        config["available_node_types"]["gpu_worker"]["min_wrokers"] = 0
    with pytest.raises(jsonschema.ValidationError):  # Ray validates against its ray-schema.json
        validated(config)


@contextlib.contextmanager
def two_node_cluster():
    """A real Ray cluster on loopback: a head and one worker node, one CPU each."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False, "node_ip_address": "127.0.0.1"}
    )
    try:
        worker = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        assert len({node.node_id for node in cluster.list_all_nodes()}) == 2
        yield cluster, worker
    finally:
        cluster.shutdown()
    assert not cluster.list_all_nodes()


def cluster_sweep(cluster, spec_file: Path) -> tuple[list, dict, Path]:
    """`samat sweep SPEC` joining `cluster` by address from the environment, as a process, with its storage and
    MLflow store beside the spec file: (its argv, env, storage)."""
    folder = spec_file.parent
    shared = folder / "shared"  # the storage both nodes write checkpoints to
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 keeps the driver on loopback like the nodes: on Linux Ray would
    # otherwise rewrite 127.0.0.1 to this machine's network address, and tests stay on loopback
    env = {
        **os.environ,
        "RAY_ADDRESS": cluster.address,
        "SAMAT_RESULTS": str(shared),
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        # and without Ray's uv hook (on for a cluster, and the tests run under `uv run`): it would build the job a
        # fresh environment from the lock (one here: both nodes share this machine's session folder), compiling its
        # 19,221 modules, 57 of this test's 125 CPU-s: Ray's own machinery, which a test of samat's node loss
        # need not pay for
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
        "PYTHONUNBUFFERED": "1",
    }
    return [SAMAT, "sweep", str(spec_file)], env, shared  # no flags: address, storage, MLflow from the env


def test_a_sweep_across_two_nodes_survives_losing_one_mid_trial(tmp_path):
    """A sweep joins a real two-node cluster by address from the environment and trains on both nodes, with its
    checkpoints in the storage they share. The worker node is removed while its trial trains: the trial continues
    from its last checkpoint on the head, the sweep finishes, and Ray, Optuna and MLflow agree, each epoch
    recorded once."""
    epochs = 5
    with two_node_cluster() as (cluster, worker):
        spec_file = write_spec(tmp_path, **random_sweep("nodeloss", "small_cnn", epochs, 3, seed=2))
        command, env, shared = cluster_sweep(cluster, spec_file)
        sweep = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lost, deadline = None, time.monotonic() + 300
        while lost is None and time.monotonic() < deadline:  # the worker's trial has a checkpoint, and more to do
            for trial in trial_dirs(shared / "nodeloss"):
                last = last_result(trial)
                if last.get("node_id") == worker.node_id and 2 <= last.get("epoch", 0) < epochs:
                    lost = last
                    cluster.remove_node(worker, allow_graceful=False)
                    break
            time.sleep(0.2)
        assert lost, "no trial ran on the worker node"
        output, _ = sweep.communicate(timeout=600)
        assert sweep.returncode == 0, output[-3000:]

        head = cluster.head_node.node_id
        results = {}
        for trial in trial_dirs(shared / "nodeloss"):
            rows = results_of(trial)
            results[rows[-1]["trial_id"]] = rows
            assert sorted(trial.glob("checkpoint_*"))  # checkpoints in the shared storage
            assert all((c / "checkpoint.pt").is_file() for c in trial.glob("checkpoint_*"))
        assert {r["node_id"] for rows in results.values() for r in rows} == {head, worker.node_id}  # both trained
        moved = results[lost["trial_id"]]
        assert moved[-1]["epoch"] == epochs and moved[-1]["node_id"] == head  # finished on the head...
        # ...from the last checkpoint of its process on the lost node, not from scratch (see epochs_by_process);
        # that process may have reported one more epoch between the test's look and the node's removal
        on_worker, _ = epochs_by_process(moved, epochs)
        assert [r["epoch"] for r in moved if r["node_id"] == worker.node_id] == on_worker, moved
        assert on_worker[-1] >= lost["epoch"], (on_worker, lost)

        client = MlflowClient(env["MLFLOW_TRACKING_URI"])
        experiment = client.get_experiment_by_name("nodeloss")
        runs = client.search_runs([experiment.experiment_id], "tags.`samat.role` = 'trial'")
        assert sorted(r.data.tags["ray_trial_id"] for r in runs) == sorted(results)  # one run per trial
        # each run is tagged with the node of its trial's last epoch
        assert {r.data.tags["ray_trial_id"]: r.data.tags["ray_node_id"] for r in runs} == {
            trial_id: rows[-1]["node_id"] for trial_id, rows in results.items()
        }
        assert sum(r.data.tags["pareto_front"] == "true" for r in runs) >= 1
        parent = client.search_runs([experiment.experiment_id], "tags.`samat.role` = 'sweep'")[0]
        assert parent.data.tags["samat.status"] == "finished" and "hypervolume" in parent.data.metrics
        study = optuna.load_study(study_name="nodeloss", storage=f"sqlite:///{shared / 'nodeloss' / 'optuna.db'}")
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
        completed = sorted(tuple(t.values) for t in study.trials)
        for run in runs:
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "epoch"))
            assert steps == list(range(1, epochs + 1)), steps  # every epoch once, the lost node's included
            ray_last = results[run.data.tags["ray_trial_id"]][-1]
            values = (ray_last["clean_acc"], ray_last["robust_acc/pgd_linf_0.1"])
            assert run.info.status == "FINISHED" and run.data.metrics["clean_acc"] == pytest.approx(values[0])
        ray_values = sorted((rows[-1]["clean_acc"], rows[-1]["robust_acc/pgd_linf_0.1"]) for rows in results.values())
        for told, held in zip(completed, ray_values):  # Optuna was told what Ray and MLflow hold
            assert told == pytest.approx(held)
