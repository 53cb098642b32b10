"""A front a researcher can publish: a quick sweep with `final: audit` (AutoAttack and the sanity checks as Ray
tasks, on the test images, recorded in MLflow), then `samat frontier reseed --seeds 2` (more seeds as Ray trials,
their statistics apart from the selected seed's)."""

import dataclasses
import json
from pathlib import Path

import pytest
import ray
from mlflow import MlflowClient

from analysis.tracking import SweepStore
from analysis.trials import sweep_hypervolume
from sweeps.cli import main
from sweeps.ray_start import start_ray
from sweeps.run import run_sweep
from sweeps.spec import validate_spec
from tests.conftest import tiny_spec


@pytest.fixture(scope="module")
def audited_sweep(tmp_path_factory):
    """The audited sweep, in a Ray this module starts as `samat` does and keeps: the sweep, `audit` and `reseed`
    then find it running and leave it up, so their Ray tasks reuse the workers that already imported torch (each
    fresh Ray and worker costs seconds of CPU)."""
    start_ray(None, num_cpus=2)
    try:
        spec = tiny_spec(name="trusted", final="audit", eval_n=24, models=["small_cnn"])
        yield run_sweep(validate_spec(spec), tmp_path_factory.mktemp("results"))
    finally:
        ray.shutdown()


def test_final_audit_records_verdicts_and_the_audited_front_all_on_test_images(audited_sweep):
    result = audited_sweep
    assert result.finished and result.audit
    sweep, audits = result.audit
    assert set(audits) == {r.trial_id for r in result.front}
    client = MlflowClient(result.tracking_uri)
    rows = sweep.best(1)
    for row in rows:
        run = client.get_run(row.run_id)
        assert run.data.tags["audit"] in ("passed", "suspect") and run.data.tags["audit.reason"]
        unreliable = audits[row.trial_id].pgd_unreliable_at
        assert run.data.tags["audit.pgd_objective"] == (f"unreliable at {unreliable[0]}" if unreliable else "reliable")
        metrics = run.data.metrics
        # AutoAttack at the objective's ε, never above PGD-10 there, both on the same test images
        assert metrics["audit/autoattack_linf_0.1"] <= metrics["audit/pgd_linf_0.1"] <= 1
        assert {"audit/clean_acc", "audit/square1000_linf_0.1", "audit/pgd_linf_0.5"} <= set(metrics)
        # clean accuracy on the whole test set, from the final checkpoint: what the trial itself reported
        assert metrics["audit/full_test_clean_acc"] == pytest.approx(row.metrics["test/clean_acc"])
    parent = client.get_run(sweep.record.parent_run_id)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "audit")}
    assert {"audit/front.json", "audit/front.png", "audit/front.html"} <= artifacts
    audited_front = json.loads(Path(client.download_artifacts(parent.info.run_id, "audit/front.json")).read_text())
    masked = {t for t, a in audits.items() if a.masking_suspected}
    assert not {r["trial_id"] for r in audited_front} & masked  # a sign of masking keeps a point off the front
    for point in audited_front:  # every objective a test figure named for what it is: no validation name
        accuracies = audits[point["trial_id"]].accuracies
        assert point["audit/full_test_clean_acc"] == accuracies["full_test_clean_acc"]
        assert point["audit/autoattack_linf_0.1"] == accuracies["autoattack_linf_0.1"]
        assert "clean_acc" not in point and "robust_acc/pgd_linf_0.1" not in point
    # the search's own points, ranked on their test values, beside the audited ones, on one reference
    searched = [dataclasses.replace(r, objectives={m: r.metrics[f"test/{m}"] for m in r.objectives}) for r in rows]
    assert parent.data.metrics["audit/search_hypervolume"] == pytest.approx(
        sweep_hypervolume(searched, sweep.record.directions, [0.0, 0.0])
    )


def test_audit_command_prints_pgd_against_autoattack_and_show_gives_the_verdicts(audited_sweep, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # the table's width, as in a wide terminal
    uri = audited_sweep.tracking_uri
    assert main(["frontier", "audit", "trusted", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "PGD-10" in out and "AutoAttack" in out and "gap" in out and "test images" in out
    assert all(r.trial_id in out for r in audited_sweep.front)
    assert main(["frontier", "show", "trusted", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "audit" in out and all(a.verdict in out for a in audited_sweep.audit[1].values())


def test_a_sweep_audited_under_the_old_name_still_shows_its_verdicts(audited_sweep):
    """Sweeps audited before the audit was renamed carry the tag `certified` (true | suspect): read as the verdict."""
    store = SweepStore(audited_sweep.tracking_uri)
    row = audited_sweep.audit[0].best(1)[0]  # as MLflow holds it: with its run
    store.client.delete_tag(row.run_id, "audit")
    store.client.set_tag(row.run_id, "certified", "true")
    try:
        assert {r.trial_id: r.audit for r in store.load_sweep("trusted").rows}[row.trial_id] == "passed"
    finally:
        store.client.set_tag(row.run_id, "audit", audited_sweep.audit[1][row.trial_id].verdict)
        store.client.delete_tag(row.run_id, "certified")


def test_reseed_runs_more_seeds_linked_to_their_trials(audited_sweep, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    uri = audited_sweep.tracking_uri
    assert main(["frontier", "reseed", "trusted", "--seeds", "2", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "±" in out and "seeds" in out
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("trusted")
    reseeds = client.search_runs([experiment.experiment_id], "tags.`samat.role` = 'reseed'")
    front = {r.trial_id: r for r in audited_sweep.front}
    assert len(reseeds) == 2 * len(front)
    for run in reseeds:
        original = front[run.data.tags["samat.reseed_of"]]
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"]
        assert run.data.params["method"] == original.method and run.data.params["seed"] in ("1", "2")
    # the search's own trials are untouched: the front is still ranked from them alone
    trials = client.search_runs([experiment.experiment_id], "tags.`samat.role` = 'trial'")
    assert len(trials) == 3
