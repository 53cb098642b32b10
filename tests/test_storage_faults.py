"""The results folder fills up, and later turns read-only, in the middle of one sweep, on a real small disk (a
tmpfs mounted for the test: it needs root, and is skipped without it; as root, as on CI, a failed mount fails).
Each time the sweep stops within seconds with one line naming the folder and exit 1, and no file written before the
fault is lost or emptied; once the folder can be written again `--resume` goes on, and at the end Optuna, Ray and
MLflow agree as after an uninterrupted sweep. Below it, Tune's copies into the results folder on their own: read
and killed in the middle, and run onto a full disk, through Ray's upload (which cuts files short) and samat's
(sweeps.whole_files)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs
import pytest
from ray.train._internal.storage import _delete_fs_path  # what Tune deletes old checkpoints with (private)

from sweeps.storage import quiet_storage_errors
from sweeps.whole_files import RAY_UPLOAD, upload_whole
from tests.conftest import SAMAT, assert_stores_agree, finished_trials, random_sweep, resume_sweep, write_spec

EPOCHS, TRIALS = 3, 8


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB tmpfs at tmp_path/results, unmounted (with any read-only view over it) afterwards."""
    results = tmp_path / "results"
    results.mkdir()
    try:
        mount("-t", "tmpfs", "-o", "size=64m", "tmpfs", str(results))
    except (OSError, subprocess.CalledProcessError) as e:
        why = getattr(e, "stderr", b"").decode().strip() or e
        if os.geteuid() == 0:  # CI runs as root: there a disk that cannot be mounted fails the run, never skips
            pytest.fail(f"cannot mount a small disk as root: {why}")
        pytest.skip(f"mounting a small disk needs root: {why}")
    yield results
    # lazily: a Ray process of the resumed sweep may still hold a file there for a moment, and a busy mount would
    # otherwise stay behind after the test
    while subprocess.run(["umount", "--lazy", str(results)], capture_output=True).returncode == 0:
        pass


def fill(disk: Path) -> Path:
    """Fill `disk` to the last byte with a file of zeros; returns the file."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while free := shutil.disk_usage(disk).free:
                f.write(b"\0" * min(free, 2**20))
        except OSError:
            pass
    return filler


def written(folder: Path) -> dict[Path, int]:
    """Every non-empty file under `folder`, with its size (a file or folder that vanishes while it is read is
    skipped: Tune deletes old checkpoints, sqlite its journal)."""
    sizes = {}
    for root, _, names in os.walk(folder):
        for path in (Path(root) / name for name in names):
            with contextlib.suppress(OSError):
                if (size := path.stat().st_size) > 0:
                    sizes[path] = size
    return sizes


def sweep_until_fault(command: list[str], sweep_dir: Path, finished: int, fault) -> tuple[str, dict[Path, int]]:
    """Run the sweep until `finished` trials finished, cause `fault`, and return its output once it stopped (it
    must stop by itself, with exit 1) and the files it had written before the fault."""
    sweep = subprocess.Popen(
        command,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300
    while finished_trials(sweep_dir, EPOCHS) < finished:
        assert sweep.poll() is None and time.monotonic() < deadline, "the sweep ended before the fault"
        time.sleep(0.1)
    before = written(sweep_dir.parent)
    fault()
    faulted = time.monotonic()
    output, _ = sweep.communicate(timeout=120)
    assert sweep.returncode == 1, output[-3000:]
    assert time.monotonic() - faulted < 30, "the sweep did not stop soon after the fault"
    return output, before


def test_results_folder_full_then_read_only_mid_sweep(small_disk, tmp_path):
    spec_file = write_spec(tmp_path, **random_sweep("disk", "mlp", EPOCHS, TRIALS, seed=1))
    sweep_dir, filler = small_disk / "disk", small_disk / "filler"
    command = [SAMAT, "sweep", str(spec_file), "--results", str(small_disk)]

    def read_only():  # a read-only view of the folder over it: every new open for writing fails with EROFS
        mount("--bind", str(small_disk), str(small_disk))
        for _ in range(100):  # the remount is refused while the sweep has a file open for writing through it
            if subprocess.run(["mount", "-o", "remount,bind,ro", str(small_disk)], capture_output=True).returncode == 0:
                return
            time.sleep(0.02)
        raise AssertionError("could not make the folder read-only")

    def full():  # something else fills the disk to the last byte, at any instant: Tune's copies included
        fill(small_disk)

    for fault, finished, says in ((full, 2, "is full"), (read_only, 5, "is read-only")):
        output, before = sweep_until_fault(command, sweep_dir, finished, fault)
        lines = [line for line in output.splitlines() if "samat sweep:" in line]
        assert lines and f"the results folder {small_disk} {says}" in lines[-1], output[-3000:]
        assert "Traceback" not in output, output[-3000:]
        if fault is not read_only:
            filler.unlink()
        else:
            subprocess.run(["umount", str(small_disk)], check=True)  # the read-only view goes, the disk is writable
        after = written(sweep_dir.parent)
        # nothing written before the fault was emptied or removed (but what is transient by nature: old checkpoints
        # Tune deletes itself, sqlite's rollback journal, a file being written whole)
        transient = ("checkpoint_", "-journal", ".partial")
        lost = [str(p) for p in before if p not in after and p != filler and not any(t in str(p) for t in transient)]
        assert not lost, lost
        command = [SAMAT, "sweep", str(spec_file), "--results", str(small_disk), "--resume"]

    resume_sweep(spec_file, small_disk)
    assert_stores_agree(small_disk, "disk", EPOCHS, TRIALS)


def test_tunes_failed_delete_of_an_old_checkpoint_on_a_read_only_folder_is_quiet(small_disk, caplog, monkeypatch):
    """Tune deletes all but a trial's last two checkpoints; on a folder turned read-only Ray's delete logs the
    error with a traceback, which the sweep's one line about the folder replaces (sweeps.storage). The filter sits
    on every handler of Ray's logger: Ray's own, which prints, and here pytest's, which captures."""
    for handler in logging.getLogger("ray").handlers:  # without the filter an in-process sweep of this test
        monkeypatch.setattr(handler, "filters", [])  # worker may have installed, put back afterwards
    old = small_disk / "checkpoint_000000"
    old.mkdir()
    (old / "checkpoint.pt").write_bytes(b"weights")
    mount("-o", "remount,ro", str(small_disk))
    with caplog.at_level(logging.ERROR, logger="ray"):
        _delete_fs_path(pyarrow.fs.LocalFileSystem(), str(old))
        assert "Read-only file system" in caplog.text
        caplog.clear()
        quiet_storage_errors()
        _delete_fs_path(pyarrow.fs.LocalFileSystem(), str(old))
    assert old.is_dir() and caplog.records == []


def test_a_sweep_refuses_a_full_results_folder(small_disk, tmp_path):
    fill(small_disk)
    spec_file = write_spec(tmp_path, name="full")
    refused = subprocess.run(
        [SAMAT, "sweep", str(spec_file), "--results", str(small_disk)], capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2 and f"{small_disk} is full" in refused.stderr, refused.stderr
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]  # nothing written


OLD, NEW = b"a" * 2**22, b"b" * (2**22 + 2**16)  # two versions of a 4 MiB experiment state
UPLOADS = {"ray": RAY_UPLOAD, "whole": upload_whole}
# copies staging/old, then staging/new, then old again... into the folder argv[2], as Tune's saves do
COPIER = """
import sys
import pyarrow.fs
from sweeps.whole_files import RAY_UPLOAD, upload_whole
upload, staging, results = sys.argv[1:]
upload = upload_whole if upload == "whole" else RAY_UPLOAD
while True:
    for version in ("old", "new"):
        upload(f"{staging}/{version}", pyarrow.fs.LocalFileSystem(), results)
"""


def staging_versions(tmp_path: Path) -> Path:
    staging = tmp_path / "staging"
    for version, data in (("old", OLD), ("new", NEW)):
        (staging / version).mkdir(parents=True)
        (staging / version / "experiment_state.json").write_bytes(data)
    return staging


@pytest.mark.parametrize("upload", UPLOADS)
def test_copies_a_reader_or_a_kill_sees_in_part_only_through_rays_upload(tmp_path, upload):
    """Tune copying its state again and again, read meanwhile and SIGKILLed: through Ray's own upload a reader
    sees the file cut short; through samat's every read, and the file the kill leaves, is one version whole."""
    staging, results = staging_versions(tmp_path), tmp_path / "results"
    results.mkdir()
    state = results / "experiment_state.json"
    copier = subprocess.Popen([sys.executable, "-c", COPIER, upload, str(staging), str(results)])
    try:
        deadline = time.monotonic() + 60
        while not state.exists():  # the copier imports Ray first
            assert copier.poll() is None and time.monotonic() < deadline, "no copy came"
            time.sleep(0.01)
        reads, deadline = [], time.monotonic() + 1.5
        while time.monotonic() < deadline:
            reads.append(state.read_bytes())
    finally:
        copier.kill()
        copier.wait()
    in_part = [len(r) for r in reads if r not in (OLD, NEW)]
    assert len(reads) > 100, len(reads)
    if upload == "ray":
        assert in_part, "the reader never saw a copy in the middle"
    else:  # both versions came, each whole, and the kill left one
        assert not in_part and {OLD, NEW} <= set(reads) and state.read_bytes() in (OLD, NEW), in_part[:10]


@pytest.mark.parametrize("upload", UPLOADS)
def test_a_copy_onto_a_full_disk_cuts_the_file_short_only_through_rays_upload(small_disk, tmp_path, upload):
    staging, state = staging_versions(tmp_path), small_disk / "experiment_state.json"
    state.write_bytes(OLD)
    fill(small_disk)
    with pytest.raises(OSError, match="No space left"):
        UPLOADS[upload](str(staging / "new"), pyarrow.fs.LocalFileSystem(), str(small_disk))
    left = state.read_bytes()
    if upload == "ray":  # neither version
        assert left not in (OLD, NEW) and NEW.startswith(left), len(left)
    else:  # the old one, and no .partial left
        assert left == OLD and sorted(p.name for p in small_disk.iterdir()) == ["experiment_state.json", "filler"]
