"""A front a researcher can publish: a quick sweep with `final: certify` (AutoAttack and the sanity checks as Ray
tasks, recorded in MLflow), then `samat frontier reseed --seeds 2` (more seeds as Ray trials, mean ± std)."""

import json
from pathlib import Path

import pytest
import ray
from mlflow import MlflowClient

from sweeps.cli import main
from sweeps.ray_start import start_ray
from sweeps.run import run_sweep
from sweeps.spec import validate_spec
from tests.conftest import tiny_spec


@pytest.fixture(scope="module")
def certified_sweep(tmp_path_factory):
    """The certified sweep, in a Ray this module starts as `samat` does and keeps: the sweep, `certify` and
    `reseed` then find it running and leave it up, so their Ray tasks reuse the workers that already imported
    torch (each fresh Ray and worker costs seconds of CPU)."""
    start_ray(None, num_cpus=2)
    try:
        spec = tiny_spec(name="trusted", final="certify", eval_n=24, models=["small_cnn"])
        yield run_sweep(validate_spec(spec), tmp_path_factory.mktemp("results"))
    finally:
        ray.shutdown()


def test_final_certify_records_verdicts_and_the_certified_front(certified_sweep):
    result = certified_sweep
    assert result.finished and result.certification
    sweep, certificates = result.certification
    assert set(certificates) == {r.trial_id for r in result.front}
    client = MlflowClient(result.tracking_uri)
    for row in sweep.best(1):
        run = client.get_run(row.run_id)
        assert run.data.tags["certified"] in ("true", "suspect") and run.data.tags["certified.reason"]
        metrics = run.data.metrics
        # AutoAttack at the objective's ε, never above PGD-10 there, both on the same test images
        assert metrics["certified/autoattack_linf_0.1"] <= metrics["certified/pgd_linf_0.1"] <= 1
        assert {"certified/clean_acc", "certified/square1000_linf_0.1", "certified/pgd50_linf_0.1x5"} <= set(metrics)
    parent = client.get_run(sweep.record.parent_run_id)
    assert "certified_hypervolume" in parent.data.metrics
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "certified")}
    assert {"certified/front.json", "certified/front.png", "certified/front.html"} <= artifacts
    certified_front = json.loads(
        Path(client.download_artifacts(parent.info.run_id, "certified/front.json")).read_text()
    )
    trusted = {t for t, c in certificates.items() if c.verdict == "true"}
    assert {r["trial_id"] for r in certified_front} <= trusted  # suspect points never make the certified front


def test_certify_command_prints_pgd_against_autoattack(certified_sweep, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # the table's width, as in a wide terminal
    uri = certified_sweep.tracking_uri
    assert main(["frontier", "certify", "trusted", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "PGD-10" in out and "AutoAttack" in out and "gap" in out
    assert all(r.trial_id in out for r in certified_sweep.front)


def test_reseed_runs_more_seeds_linked_to_their_trials(certified_sweep, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    uri = certified_sweep.tracking_uri
    assert main(["frontier", "reseed", "trusted", "--seeds", "2", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "±" in out and "seeds" in out
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("trusted")
    reseeds = client.search_runs([experiment.experiment_id], "tags.`samat.role` = 'reseed'")
    front = {r.trial_id: r for r in certified_sweep.front}
    assert len(reseeds) == 2 * len(front)
    for run in reseeds:
        original = front[run.data.tags["samat.reseed_of"]]
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"]
        assert run.data.params["method"] == original.method and run.data.params["seed"] in ("1", "2")
    # the search's own trials are untouched: the front is still ranked from them alone
    trials = client.search_runs([experiment.experiment_id], "tags.`samat.role` = 'trial'")
    assert len(trials) == 3
