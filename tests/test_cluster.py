"""The cluster: cluster.yaml passes Ray's own launcher validation, and a sweep runs across a real two-node
Ray cluster on this machine (loopback only), its driver joining by address from the environment."""

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from mlflow import MlflowClient
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.conftest import tiny_spec

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


def test_sweep_runs_on_both_nodes_of_a_real_cluster(tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False, "node_ip_address": "127.0.0.1"}
    )
    try:
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        node_ids = {node.node_id for node in cluster.list_all_nodes()}
        assert len(node_ids) == 2

        spec_file = tmp_path / "multinode.yaml"
        spec_file.write_text(
            yaml.safe_dump(
                tiny_spec(
                    name="multinode",
                    train={"epochs": 2, "lr": {"low": 0.02, "high": 0.1}},
                    search={"sampler": "random", "seed": 1, "trials": 4, "concurrency": 2},
                )
            )
        )
        shared = tmp_path / "shared"  # the storage both nodes write checkpoints to
        store = tmp_path / "mlflow.db"
        # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 keeps the driver on loopback like the nodes: on Linux Ray would
        # otherwise rewrite 127.0.0.1 to this machine's network address, and tests stay on loopback
        env = {
            **os.environ,
            "RAY_ADDRESS": cluster.address,
            "SAMAT_RESULTS": str(shared),
            "MLFLOW_TRACKING_URI": f"sqlite:///{store}",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        }
        sweep = subprocess.run(
            [SAMAT, "sweep", str(spec_file)], env=env, capture_output=True, text=True, timeout=400, cwd=tmp_path
        )  # no flags: address, storage, MLflow from the env
        assert sweep.returncode == 0, sweep.stdout + sweep.stderr[-3000:]

        trial_dirs = [p for p in (shared / "multinode").iterdir() if (p / "result.json").is_file()]
        assert len(trial_dirs) == 4
        ran_on = {}
        for trial in trial_dirs:
            results = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
            ran_on[results[-1]["trial_id"]] = results[-1]["node_id"]
            assert sorted(p.name for p in trial.glob("checkpoint_*"))  # checkpoints in the shared storage
            assert all((c / "checkpoint.pt").is_file() for c in trial.glob("checkpoint_*"))
        assert set(ran_on.values()) == node_ids  # both nodes trained trials

        client = MlflowClient(f"sqlite:///{store}")
        experiment = client.get_experiment_by_name("multinode")
        children = client.search_runs([experiment.experiment_id], "tags.`samat.role` = 'trial'")
        assert {r.data.tags["ray_trial_id"]: r.data.tags["ray_node_id"] for r in children} == ran_on
        assert sum(r.data.tags["pareto_front"] == "true" for r in children) >= 1
        parent = client.search_runs([experiment.experiment_id], "tags.`samat.role` = 'sweep'")[0]
        assert parent.data.tags["samat.status"] == "finished" and "hypervolume" in parent.data.metrics
    finally:
        cluster.shutdown()
    assert not cluster.list_all_nodes()
