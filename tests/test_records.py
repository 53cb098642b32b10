"""What a real short sweep leaves in MLflow, read back through the client, the CLI and a real MLflow server."""

import json
import os
import random
import re
import signal
import socket
import subprocess
import urllib.request

import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag

from analysis.export import read_table
from analysis.outbox import Outbox
from analysis.pareto import pareto_ranks
from analysis.tracking import PARETO_FRONT, PARETO_RANK, SweepStore
from analysis.trials import rank_rows
from analysis.ui import port_free
from sweeps.cli import main
from tests.conftest import SAMAT


def frontier(*argv):
    try:
        return main(["frontier", *argv])
    except SystemExit as e:
        return e.code


def test_parent_and_child_runs(tiny_sweep):
    client = MlflowClient(tiny_sweep.tracking_uri)
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("samat.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("samat.role") == "trial"]
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.tags["samat.status"] == "finished"
    assert parent.data.params["search.sampler"] == "random" and parent.data.params["methods.sam.rho.low"] == "0.01"
    hv = client.get_metric_history(parent.info.run_id, "hypervolume")
    steps = [m.step for m in sorted(hv, key=lambda m: m.step)]
    assert steps == sorted(set(steps)) and steps[-1] == 3  # a point per re-rank (step = trials done), all counted
    assert steps[0] < 3  # re-ranked while trials ran (the third starts only once one of the first two finished)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)} | {
        a.path for a in client.list_artifacts(parent.info.run_id, "front")
    }
    assert {"spec.yaml", "front/front.parquet", "front/front.json", "front/front.png", "front/front.html"} <= artifacts

    values, directions = [], ["max", "max"]
    for child in children:
        tags, params = child.data.tags, child.data.params
        assert tags["mlflow.parentRunId"] == parent.info.run_id and child.info.status == "FINISHED"
        assert tags["method"] == params["method"] and tags["model"] == params["model"] and tags["dataset"] == "digits"
        assert tags["ray_trial_id"] and tags["ray_node_id"] and "lr" in params
        assert ("sam.rho" in params) == (params["method"] == "sam")
        # Tune's own bookkeeping (sweeps.ray_private.TUNE_RESULT_KEYS) stays out of a trial's metrics
        assert not {"time_total_s", "training_iteration", "time_this_iter_s", "timestamp"} & set(child.data.metrics)
        history = client.get_metric_history(child.info.run_id, "clean_acc")
        assert sorted(m.step for m in history) == [1, 2]  # per-epoch metrics, step = epoch
        values.append([child.data.metrics["clean_acc"], child.data.metrics["robust_acc/pgd_linf_0.1"]])
    for child, rank in zip(children, pareto_ranks(values, directions)):
        assert child.data.metrics["pareto_rank"] == rank
        assert child.data.tags["pareto_front"] == ("true" if rank == 1 else "false")


def test_export_files_hold_exactly_the_front(tiny_sweep, tmp_path, capsys):
    uri = tiny_sweep.tracking_uri
    front_ids = {r.trial_id for r in tiny_sweep.front}
    out = tmp_path / "front.parquet"
    assert frontier("export", "tiny", "-o", str(out), "--front-only", "--tracking-uri", uri) == 0
    table = pq.read_table(out)
    assert set(table.column("trial_id").to_pylist()) == front_ids and all(table.column("pareto_front").to_pylist())
    by_id = {r.trial_id: r for r in tiny_sweep.trials}
    for row in table.to_pylist():
        ran = by_id[row["trial_id"]]
        # objective columns carry the values Ray reported under the same names
        assert {m: row[m] for m in ran.objectives} == ran.objectives
        assert row["run_id"] and row["method"] == ran.method
    for suffix in ("csv", "json"):
        every = tmp_path / f"all.{suffix}"
        assert frontier("export", "tiny", "-o", str(every), "--tracking-uri", uri) == 0
        rows = read_table(every)
        assert len(rows) == 3 and {r["trial_id"] for r in rows if r["pareto_front"] in (True, "true")} == front_ids
    # a closed sweep exports the table its close kept: the same rows a full read of its trials gives now
    assert frontier("export", "tiny", "-o", str(tmp_path / "all.parquet"), "--tracking-uri", uri) == 0
    assert read_table(tmp_path / "all.parquet") == SweepStore(uri).load_sweep("tiny").table()


def test_show_list_plot_and_compare(tiny_sweep, tmp_path, capsys):
    uri = tiny_sweep.tracking_uri
    assert frontier("list", "--tracking-uri", uri) == 0
    listing = capsys.readouterr().out
    assert "tiny" in listing and "finished" in listing
    assert frontier("show", "tiny", "--tracking-uri", uri) == 0
    shown = capsys.readouterr().out
    assert all(r.trial_id in shown for r in tiny_sweep.front)
    assert frontier("plot", "tiny", "-o", str(tmp_path / "f.png"), "--tracking-uri", uri) == 0
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert frontier("plot", "tiny", "-o", str(tmp_path / "f.html"), "--tracking-uri", uri) == 0
    assert "plotly" in (tmp_path / "f.html").read_text()[:100000]
    assert frontier("compare", "tiny", "tiny", "--tracking-uri", uri) == 0
    compared = capsys.readouterr().out
    shares = re.findall(r"(\d+)%", compared)
    assert shares == ["0", "0"], compared  # a front never dominates itself


def test_every_frontier_command_finds_the_sweep_samat_results_names(tiny_sweep, tmp_path, monkeypatch, capsys):
    """`SAMAT_RESULTS=DIR samat sweep` and then a plain `samat frontier ...` look in the same place: the results
    folder comes from one resolver for every command (with no --results or --tracking-uri given)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("SAMAT_RESULTS", str(tiny_sweep.path).rsplit("/", 1)[0])
    monkeypatch.chdir(tmp_path)  # no ./results here
    assert frontier("list") == 0 and "tiny" in capsys.readouterr().out
    assert frontier("show", "tiny") == 0 and all(r.trial_id in capsys.readouterr().out for r in tiny_sweep.front)
    assert frontier("export", "tiny", "-o", str(tmp_path / "t.json")) == 0
    assert len(read_table(tmp_path / "t.json")) == len(tiny_sweep.trials)
    assert frontier("plot", "tiny", "-o", str(tmp_path / "t.png")) == 0 and (tmp_path / "t.png").stat().st_size
    assert frontier("compare", "tiny", "tiny") == 0 and "tiny" in capsys.readouterr().out
    assert frontier("sync", "tiny") == 0 and "nothing waits" in capsys.readouterr().err
    # audit and reseed find the store (a missing one is "no MLflow store"), then the sweep they are asked for
    for action in ("audit", "reseed", "sync"):
        assert frontier(action, "nope") == 2
        err = capsys.readouterr().err
        assert "'nope'" in err and "no MLflow store" not in err, err
    with pytest.raises(SystemExit) as refused:  # `samat sweep` takes its results folder from the same resolver
        monkeypatch.setenv("SAMAT_RESULTS", str(tmp_path / "t.png"))
        raise SystemExit(main(["sweep"]))
    assert refused.value.code == 2
    assert f"SAMAT_RESULTS={tmp_path / 't.png'}: exists and is not a folder" in capsys.readouterr().err


def test_a_missing_store_names_the_setting_that_chose_its_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SAMAT_RESULTS", "runs")
    assert frontier("show", "x") == 2
    assert f"SAMAT_RESULTS={tmp_path / 'runs'}: no MLflow store" in capsys.readouterr().err
    assert frontier("show", "x", "--results", "other") == 2
    assert f"--results={tmp_path / 'other'}: no MLflow store" in capsys.readouterr().err
    monkeypatch.delenv("SAMAT_RESULTS")
    assert frontier("show", "x") == 2
    assert f"the default results folder {tmp_path / 'results'}: no MLflow store" in capsys.readouterr().err


def test_tables_piped_to_a_file_keep_whole_values(tiny_sweep, tmp_path):
    """stdout to a pipe (CI logs, `tee`): no column of the front table is cut to fit 80 columns."""
    shown = subprocess.run(
        [SAMAT, "frontier", "show", "tiny", "--tracking-uri", tiny_sweep.tracking_uri],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": ""},
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert "…" not in shown.stdout
    assert "robust_acc/pgd_linf_0.1" in shown.stdout and "test/robust_acc/pgd_linf_0.1" in shown.stdout
    assert all(r.trial_id in shown.stdout for r in tiny_sweep.front)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["show", "nope"], "no sweep named 'nope'"),
        (["export", "nope", "-o", "{tmp}/x.csv"], "no sweep named 'nope'"),
        (["export", "tiny", "-o", "{tmp}/x.xlsx"], "unknown format '.xlsx'"),
        (["export", "tiny", "-o", "{tmp}/missing/x.csv"], "cannot write in"),
        (["export", "tiny", "-o", "/proc/x.csv"], "cannot write in /proc"),
        (["plot", "tiny", "-o", "{tmp}/x.jpg"], "unknown format '.jpg'"),
        (["export", "tiny"], "required: -o/--output"),
    ],
)
def test_bad_frontier_input_exits_2_and_writes_nothing(tiny_sweep, tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert frontier(*argv, "--tracking-uri", tiny_sweep.tracking_uri) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_missing_default_store_is_not_created(tmp_path, capsys):
    assert frontier("list", "--results", str(tmp_path / "results")) == 2
    assert "no MLflow store" in capsys.readouterr().err and not (tmp_path / "results").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(base: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGHUP], ids=["ctrl-c", "terminal-closed"])
def test_frontier_ui_serves_the_sweep_and_links_to_its_front(tiny_sweep, tmp_path, stop):
    """`samat frontier ui` starts a real MLflow server on loopback, prints the link to the front's runs page (in
    the training-runs view, not the GenAI one), answers the REST API, and Ctrl-C stops it and all it started; so
    does a closed terminal (SIGHUP)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ui = subprocess.Popen(
        [SAMAT, "frontier", "ui", "tiny", "--port", str(port), "--tracking-uri", tiny_sweep.tracking_uri],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        while not any(line.startswith("Ctrl-C") for line in lines):
            line = ui.stdout.readline()
            assert line, f"samat frontier ui ended early: {''.join(lines)[-2000:]}"
            lines.append(line.strip())
        experiment = api(base, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=tiny")["experiment"]
        link = next(line for line in lines if line.startswith(base))
        assert link == (
            f"{base}/#/experiments/{experiment['experiment_id']}/runs?workflowType=machine_learning"
            "&searchFilter=tags.pareto_front%20%3D%20%22true%22"
        )
        assert urllib.request.urlopen(base, timeout=10).status == 200  # the UI's page itself
        runs = api(
            base, "/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment["experiment_id"]], "max_results": 100}
        )["runs"]
        tags = [{t["key"]: t["value"] for t in run["data"].get("tags", [])} for run in runs]
        parent = [run for run, t in zip(runs, tags) if t.get("samat.role") == "sweep"]
        assert len(parent) == 1
        parent_id = parent[0]["info"]["run_id"]
        children = [t for t in tags if t.get("samat.role") == "trial"]
        assert len(children) == 3 and all(t["mlflow.parentRunId"] == parent_id for t in children)
        on_front = {t["ray_trial_id"] for t in children if t["pareto_front"] == "true"}
        assert on_front == {r.trial_id for r in tiny_sweep.front}
        # the link's filter, as the UI sends it
        front = api(
            base,
            "/api/2.0/mlflow/runs/search",
            {"experiment_ids": [experiment["experiment_id"]], "filter": 'tags.pareto_front = "true"'},
        )["runs"]
        assert len(front) == len(on_front)
        ui.send_signal(stop)
        assert ui.wait(timeout=30) == 130
        assert port_free(port)  # the server and its workers are gone
    finally:
        if ui.poll() is None:
            ui.kill()


def add_trial(store, parent, trial_id, clean, robust, outcome="FINISHED", stopped_at=None):
    """One trial written as the recorder writes it (a run, one epoch of metrics, its end)."""
    run_id = store.create_trial_run(parent, trial_id, {"lr": 0.1}, {"method": "sgd", "model": "mlp", "lr": 0.1}, {})
    store.log_metrics(run_id, {"epoch": 1, "clean_acc": clean, "robust_acc/pgd_linf_0.1": robust}, 1)
    if stopped_at is not None:
        store.stop_trial(run_id, stopped_at, "MO-ASHA")
    else:
        store.finish_trial(run_id, outcome)


def test_front_and_summary_read_alone_match_a_full_read(tmp_path):
    """While a sweep runs, re-ranks write only front membership and the summary; `frontier show` reads those
    alone. Both must equal what a full read of every trial ranks, before and after the close writes every rank."""
    store = SweepStore(f"sqlite:///{tmp_path / 'mlflow.db'}")
    directions = {"clean_acc": "max", "robust_acc/pgd_linf_0.1": "max"}
    parent = store.open_sweep("reads", {"name": "reads"}, directions, [0.0, 0.0], str(tmp_path))
    rng = random.Random(0)
    for i in range(40):
        add_trial(store, parent, f"t{i:02d}", rng.uniform(0.5, 1.0), rng.uniform(0.0, 0.5))
    add_trial(store, parent, "failed", 0.99, 0.99, outcome="FAILED")
    for i, epoch in enumerate((2, 2, 4)):
        add_trial(store, parent, f"s{i}", 0.99, 0.99, stopped_at=epoch)

    def check(record):
        full = store.load_sweep("reads")
        front, summary = store.load_front("reads")
        assert (
            {r.trial_id for r in front.front} == {r.trial_id for r in full.front} == {r.trial_id for r in record.front}
        )
        assert summary == full.summary() and summary.stopped_at == {"2": 2, "4": 1}
        assert (summary.trials, summary.finished, summary.failed, summary.ranked) == (44, 40, 1, 40)
        assert {r.trial_id for r in front.stopped} == {"s0", "s1", "s2"}
        return full

    running = store.load_sweep("reads")  # what the outbox keeps in memory
    store.write_ranks(running, every_rank=False)
    full = check(running)
    behind = [r for r in full.rows if r.rank and r.rank > 1]
    assert behind and all(PARETO_RANK not in r.metrics for r in behind)  # ranks below the front: not yet
    add_trial(store, parent, "best", 1.0, 0.6)  # dominates every trial: each one moves down a rank
    running.rows.append(next(r for r in store.load_sweep("reads").rows if r.trial_id == "best"))
    rank_rows(running.rows, directions)
    store.write_ranks(running, every_rank=False)
    front, summary = store.load_front("reads")
    assert [r.trial_id for r in front.front] == ["best"] and summary == store.load_sweep("reads").summary()
    store.update_front("reads")  # as the sweep closes: every rank
    assert all(r.metrics.get(PARETO_RANK) == (r.rank or 0) for r in store.load_sweep("reads").rows if r.rank)
    # ranks can also go back up: with "best" no longer finished, every other trial moves up one rank, and MLflow's
    # latest rank must be the one written last (not the largest ever written)
    best = next(r for r in store.load_sweep("reads").rows if r.trial_id == "best")
    store.client.set_terminated(best.run_id, "FAILED")
    store.update_front("reads")
    again = store.load_sweep("reads")
    assert all(r.metrics.get(PARETO_RANK) == r.rank for r in again.rows if r.rank)
    assert {r.trial_id for r in store.load_front("reads")[0].front} == {r.trial_id for r in full.front}


def test_a_rank_committed_without_its_tag_is_mended_by_the_next_rerank(tmp_path):
    """MLflow commits a batch's metrics, then its tags: a driver killed between the two leaves a trial's new
    `pareto_rank` beside its old `pareto_front` tag. The resumed driver's first re-rank must mend the tags (the
    UI's front filter and `frontier show` read them), though every rank it computes is already stored."""
    store = SweepStore(f"sqlite:///{tmp_path / 'mlflow.db'}")
    directions = {"clean_acc": "max", "robust_acc/pgd_linf_0.1": "max"}
    parent = store.open_sweep("mend", {"name": "mend"}, directions, [0.0, 0.0], str(tmp_path))
    add_trial(store, parent, "left", 0.8, 0.3)
    add_trial(store, parent, "joined", 0.9, 0.4)
    runs = store.trial_runs(parent)

    def rank(trial, value, front_tag=None):
        tags = [] if front_tag is None else [RunTag(PARETO_FRONT, front_tag)]
        store.client.log_batch(runs[trial], metrics=[Metric(PARETO_RANK, value, store.stamp(), 0)], tags=tags)

    rank("left", 1, "true")  # on the front, written whole, before "joined" finished
    rank("left", 2)  # the killed driver's last re-rank: both ranks committed, neither tag
    rank("joined", 1)

    store.write_ranks(store.load_sweep("mend"), every_rank=False)  # the resumed driver's first re-rank
    tags = {
        r.data.tags["ray_trial_id"]: r.data.tags[PARETO_FRONT] for r in store.child_runs(store.experiment_of(parent))
    }
    assert tags == {"joined": "true", "left": "false"}
    assert [r.trial_id for r in store.load_front("mend")[0].front] == ["joined"]


def test_writes_mlflow_committed_in_part_are_completed_when_written_again(tmp_path):
    """The same split elsewhere: a run created without its params (they are a second write), an epoch's metrics
    committed without its tags (FastAT's collapse, the node). The writes again (the outbox's retry, or a resumed
    driver and Tune replaying a trial's last result) complete them, and the epoch stays there once."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = SweepStore(uri)
    parent = store.open_sweep("split", {"name": "split"}, {"clean_acc": "max"}, [0.0], str(tmp_path))
    params = {"method": "fast_at", "model": "mlp", "lr": 0.1}
    run_id = store.create_trial_run(parent, "t", {}, params, {})  # what the store holds: the run, no params
    metrics, tags = {"epoch": 3, "clean_acc": 0.5, "collapsed": 1}, {"fast_at_collapse": "true"}
    store.log_metrics(run_id, metrics, 3)  # and the epoch's metrics, not its tags

    resumed = Outbox(uri, "split", parent, tmp_path / "pending.jsonl")
    resumed.trial("t", {"lr": 0.1, "epochs": 3}, params, {})
    resumed.epoch("t", metrics, 3, tags)
    run = store.client.get_run(run_id)
    assert run.data.params == {"lr": "0.1", "epochs": "3"} and run.data.tags["fast_at_collapse"] == "true"
    assert [m.step for m in store.client.get_metric_history(run_id, "epoch")] == [3]
    assert list(store.trial_runs(parent).values()) == [run_id]  # found, not made again
