"""The results folder fills up, and later turns read-only, in the middle of one sweep, on a real small disk (a
tmpfs mounted for the test: it needs root, and is skipped where mounting is not allowed). Each time the sweep
stops within seconds with one line naming the folder and exit 1, and no file written before the fault is lost or
emptied; once the folder can be written again `--resume` goes on, and at the end Optuna, Ray and MLflow agree as
after an uninterrupted sweep."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from sweeps.storage import MIN_FREE_BYTES
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
        pytest.skip(f"cannot mount a small disk here: {getattr(e, 'stderr', b'').decode().strip() or e}")
    yield results
    # lazily: a Ray process of the resumed sweep may still hold a file there for a moment, and a busy mount would
    # otherwise stay behind after the test
    while subprocess.run(["umount", "--lazy", str(results)], capture_output=True).returncode == 0:
        pass


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill `disk` with a file of zeros until `leave` bytes are free (to the last byte by default); returns the file."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while (free := shutil.disk_usage(disk).free - leave) > 0:
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

    def full():  # something else fills the disk to under the room samat keeps free; not to the last byte, where
        # a fill landing in the very instant Tune copies its state can still empty that copy (README)
        fill(small_disk, leave=MIN_FREE_BYTES // 2)

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
        # Tune deletes itself, sqlite's rollback journal)
        transient = ("checkpoint_", "-journal")
        lost = [str(p) for p in before if p not in after and p != filler and not any(t in str(p) for t in transient)]
        assert not lost, lost
        command = [SAMAT, "sweep", str(spec_file), "--results", str(small_disk), "--resume"]

    resume_sweep(spec_file, small_disk)
    assert_stores_agree(small_disk, "disk", EPOCHS, TRIALS)


def test_a_sweep_refuses_a_full_results_folder(small_disk, tmp_path):
    fill(small_disk)
    spec_file = write_spec(tmp_path, name="full")
    refused = subprocess.run(
        [SAMAT, "sweep", str(spec_file), "--results", str(small_disk)], capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2 and f"{small_disk} is full" in refused.stderr, refused.stderr
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]  # nothing written
