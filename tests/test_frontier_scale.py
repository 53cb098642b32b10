"""`samat frontier show` and `export` at any sweep size. Beside a sqlite store, the front index answers `show`, and
a closed sweep's kept table `export`, with no MLflow import while the database is as they were read from; any
write sends them back to MLflow, which prints the same. A running sweep's export reads its trials a page at a
time, writes the rows a full read gives, and leaves no file when it fails."""

from __future__ import annotations

import math
import os
import pty
import random
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from analysis import stores
from analysis.export import read_table, write_table
from analysis.tracking import RESEED_OF, ROLE, SweepStore
from sweeps.cli import main
from tests.conftest import SAMAT
from tests.test_storage_faults import fill, small_disk  # noqa: F401 - a fixture, used by name

ROOT = Path(__file__).parent.parent
DIRECTIONS = {"clean_acc": "max", "robust_acc/pgd_linf_0.1": "max"}
PAGE = 7  # runs a page in the tests: several pages of a few dozen trials
PROBE = (
    "import sys\n"
    "from sweeps.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print('mlflow imported:', 'mlflow' in sys.modules)\n"
    "sys.exit(code)\n"
)


def add_trial(store, parent, trial_id, rng, outcome="FINISHED", stopped_at=None, tags=None) -> str:
    """A trial written as the recorder writes it: its run, one epoch of validation metrics, the test metrics, its
    end. SGD or SAM at random, so a page may hold no SAM trial and no `sam.rho` value."""
    method = rng.choice(["sgd", "sam"])
    params = {"method": method, "model": "mlp", "lr": round(rng.uniform(0.01, 0.3), 4)}
    if method == "sam":
        params["sam.rho"] = round(rng.uniform(0.01, 1.0), 4)
    run_id = store.create_trial_run(
        parent, trial_id, params, params, {"method": method, "model": "mlp", **(tags or {})}
    )
    clean = rng.uniform(0.5, 1.0)
    metrics = {"epoch": 1, "clean_acc": clean, "robust_acc/pgd_linf_0.1": rng.uniform(0.0, 1.2 - clean)}
    store.log_metrics(run_id, metrics, 1)
    if stopped_at is not None:
        store.stop_trial(run_id, stopped_at, "MO-ASHA")
        return run_id
    store.log_metrics(run_id, {"test/clean_acc": clean - 0.01, "test/robust_acc/pgd_linf_0.1": 0.2}, 1)
    store.finish_trial(run_id, outcome)
    return run_id


def write_sweep(folder: Path, name: str, trials: int, closed: bool) -> SweepStore:
    """A sweep of `trials` trials, 3 stopped ones and a failed one; closed (a front trial reseeded twice and another
    audited first), or left as a driver leaves it between two trials (after a re-rank)."""
    store = SweepStore(f"sqlite:///{folder / 'mlflow.db'}")
    parent = store.open_sweep(name, {"name": name}, DIRECTIONS, [0.0, 0.0], str(folder))
    rng = random.Random(name)
    for i in range(trials):
        add_trial(store, parent, f"t{i:03d}", rng)
    for i, epoch in enumerate((1, 1, 2)):
        add_trial(store, parent, f"s{i}", rng, stopped_at=epoch)
    add_trial(store, parent, "failed", rng, outcome="FAILED")
    if not closed:
        store.write_ranks(store.load_sweep(name), every_rank=False)
        return store
    reseeded, audited = store.load_sweep(name).front[:2]
    for seed in range(2):
        add_trial(store, parent, f"r{seed}", rng, tags={ROLE: "reseed", RESEED_OF: reseeded.trial_id})
    store.record_audit(audited.run_id, {"autoattack_linf_0.1": 0.3}, "passed", [], [])
    store.close_sweep(name, finished=True)
    return store


@pytest.fixture(scope="module")
def closed(tmp_path_factory) -> SweepStore:
    return write_sweep(tmp_path_factory.mktemp("closed"), "closed", 40, closed=True)


@pytest.fixture(scope="module")
def running(tmp_path_factory) -> SweepStore:
    return write_sweep(tmp_path_factory.mktemp("running"), "running", 60, closed=False)


def frontier(store: SweepStore, *argv: str) -> tuple[str, bool]:
    """`samat frontier ARGV` in a fresh process: what it printed, and whether it imported MLflow."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "frontier", *argv, "--tracking-uri", store.tracking_uri],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},  # every column whole
    )
    assert done.returncode == 0, done.stderr[-3000:]
    printed, _, imported = done.stdout.rpartition("mlflow imported: ")
    return printed, imported.strip() == "True"


def test_show_after_the_close_imports_no_mlflow_and_prints_what_mlflow_prints(closed):
    shown, imported = frontier(closed, "show", "closed")
    assert not imported  # the close left the front index current
    assert "new seeds" in shown and "stopped early by MO-ASHA (not ranked): 3 of 44 trials" in shown
    stores.front_index(closed.tracking_uri, "closed").unlink()
    assert frontier(closed, "show", "closed") == (shown, True)  # through MLflow: the same, and the index again
    assert frontier(closed, "show", "closed") == (shown, False)
    record, summary = stores.read_front_index(closed.tracking_uri, "closed")
    full = closed.load_sweep("closed")
    assert summary == full.summary() and [r.trial_id for r in record.front] == [r.trial_id for r in full.front]


def test_show_on_a_running_sweep_reads_mlflow_again_after_any_write(running):
    first, _ = frontier(running, "show", "running")  # whether the index was current or not, it is now
    assert frontier(running, "show", "running") == (first, False)
    on_front = running.load_sweep("running").front[0]
    running.record_audit(on_front.run_id, {"autoattack_linf_0.1": 0.3}, "suspect", ["robust accuracy fell"], [])
    shown, imported = frontier(running, "show", "running")
    assert imported and "suspect" in shown and "suspect" not in first  # the stale index was not read
    assert frontier(running, "show", "running") == (shown, False)


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".json"])
def test_export_of_a_running_sweep_reads_pages_and_writes_the_rows_a_full_read_gives(running, tmp_path, suffix):
    experiment_id = running.sweep_parent("running")[0].experiment_id
    pages = [len(page) for page in running.child_run_pages(experiment_id, page_size=PAGE)]
    trials = len(running.load_sweep("running").rows)
    assert pages == [PAGE] * (trials // PAGE) + [trials % PAGE] * bool(trials % PAGE)
    for front_only in (False, True):
        out, expected = tmp_path / f"out{suffix}", tmp_path / f"expected{suffix}"
        assert running.export_trials("running", out, front_only, page_size=PAGE) == len(rows := read_table(out))
        write_table(running.load_sweep("running").table(front_only), expected)  # what a full read writes
        assert rows == read_table(expected) and len(rows) == (
            len(running.load_sweep("running").front) if front_only else trials
        )
        if suffix == ".parquet":  # written a page at a time
            assert pq.ParquetFile(out).num_row_groups == math.ceil(len(rows) / PAGE)
            assert pq.read_schema(out) == pq.read_schema(expected)
        else:
            assert out.read_bytes() == expected.read_bytes()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, expected.name])  # nothing left over


def test_export_of_a_closed_sweep_copies_its_kept_table_without_mlflow(closed, tmp_path):
    for front_only in (False, True):
        flag = ["--front-only"] if front_only else []
        expected = closed.load_sweep("closed").table(front_only)
        for suffix in (".parquet", ".csv", ".json"):
            out = tmp_path / f"kept{suffix}"
            printed, imported = frontier(closed, "export", "closed", "-o", str(out), *flag)
            assert not imported and f"wrote {len(expected)} " in printed
            write_table(expected, tmp_path / f"expected{suffix}")
            assert read_table(out) == read_table(tmp_path / f"expected{suffix}")


def test_a_failed_export_leaves_no_file_and_the_old_one_as_it_was(closed, running, small_disk, capsys):  # noqa: F811
    out = small_disk / "trials.json"
    out.write_text("an export from before")
    filler = fill(small_disk)
    os.truncate(filler, filler.stat().st_size - 8192)  # room for a few rows, not all
    for store, name in ((closed, "closed"), (running, "running")):  # its kept table, then MLflow's pages
        assert main(["frontier", "export", name, "-o", str(out), "--tracking-uri", store.tracking_uri]) == 2
        assert capsys.readouterr().err.strip().endswith(f"--output={out}: not written (No space left on device)")
        assert out.read_text() == "an export from before"
        assert sorted(small_disk.iterdir()) == sorted([out, filler])
    assert stores.kept_table(closed.tracking_uri, "closed", front_only=False)  # the first was the kept table's copy


def test_export_of_a_running_sweep_shows_its_progress_on_a_terminal(running, tmp_path):
    terminal, stderr = pty.openpty()
    export = subprocess.Popen(
        [SAMAT, "frontier", "export", "running", "-o", str(tmp_path / "t.csv"), "--tracking-uri", running.tracking_uri],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        env={**os.environ, "COLUMNS": "120"},
    )
    os.close(stderr)
    shown = b""
    while True:  # read as it is written (a full terminal would stop the export)
        try:
            chunk = os.read(terminal, 65536)
        except OSError:  # EIO: the export ended and closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(terminal)
    assert export.wait(timeout=120) == 0
    assert b"reading the trials of running" in shown and b"64/64" in shown  # runs read of the summary's count
