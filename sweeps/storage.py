"""The results folder's storage faults: a disk that fills up or turns read-only while a sweep runs.

Tune copies its experiment state, each trial's result files and each checkpoint into the results folder through
a pyarrow filesystem, which opens the destination (emptying it) and writes into it; it copies every file again at
each state save. Once the disk is full, each copy leaves an empty file where a good one was: the experiment state
included, and a sweep whose state is empty cannot be resumed. `whole_files(root)` is the local filesystem with
one change for the files of an experiment's own folder (Tune's experiment, searcher and scheduler state, what a
resume reads): such a file is written beside its destination and renamed over it only when complete, so a write
that fails leaves the previous version in place. Trial files go straight through, as in pyarrow: going through
Python costs ~0.2 ms a file, and Tune copies every trial's files at every state save (5,000 files a second at
1,000 trials); they are protected instead by the sweep stopping before a state save once the disk is full.

`check_writable` (called by the sweep's StorageGuard before each of Tune's steps, so before any state save) and
the storage errors of any write raise `StorageFault`, which stops the sweep when its folder cannot be written
(read-only, or less than MIN_FREE_BYTES free): one line naming the folder, everything written before kept, to be
resumed once it can be written again.
Imports no Ray: the CLI checks a folder before a sweep starts."""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import shutil
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

MIN_FREE_BYTES = 16 * 2**20  # a state save and a few checkpoints of the small models; below this, stop
STORAGE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT}


class StorageFault(Exception):
    """The results folder cannot take the sweep's writes; the sweep stopped, and can resume once it can."""

    def __init__(self, folder: str | Path, why: str):
        super().__init__(f"the results folder {folder} {why}")
        self.folder = str(folder)


def storage_fault(error: BaseException, folder: str | Path) -> StorageFault | None:
    """The StorageFault behind `error`, or None: a StorageFault samat raised (Tune may wrap it), else the folder's
    state now (any write may fail first: a checkpoint, Tune's state, sqlite's "database or disk is full"), else
    an OSError of a full or read-only disk in the chain of causes."""
    causes = []
    while error is not None and error not in causes:
        causes.append(error)
        error = error.__cause__ or error.__context__
    fault = next((c for c in causes if isinstance(c, StorageFault)), None)
    if fault is None:
        try:
            check_writable(folder)
        except StorageFault as now:
            fault = now
    full = next((c for c in causes if isinstance(c, OSError) and c.errno in STORAGE_ERRNOS), None)
    if fault is None and full is not None:
        fault = StorageFault(folder, f"cannot be written ({os.strerror(full.errno)})")
    return fault


def remove_partial_files(folder: str | Path) -> None:
    """A driver killed mid-write leaves `.partial` files (never the file itself half written): gone on resume."""
    for partial in Path(folder).rglob(".*.partial"):
        partial.unlink(missing_ok=True)


class QuietStorageErrors(logging.Filter):
    """Drops two kinds of Tune's error logs, each with a traceback:
    - errors a full or read-only disk caused (a trial failing to write its checkpoint), since the sweep stops on
      them with one line of its own;
    - a resumed trial's old checkpoint that is gone already: Tune deletes all but the last two checkpoints as
      soon as a new one is written, before its next state save, so a sweep stopped in between resumes with a
      state that still lists one; Tune finds it missing when it deletes it again, and the trial goes on."""

    WORDS = tuple(os.strerror(number) for number in sorted(STORAGE_ERRNOS))

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, FileNotFoundError) and "Error handling checkpoint" in record.msg:
            return False
        return not any(word in f"{record.getMessage()} {error}" for word in self.WORDS)


def quiet_storage_errors() -> None:
    """Filter Tune's controller log (once per process) through QuietStorageErrors."""
    log = logging.getLogger("ray.tune.execution.tune_controller")
    if not any(isinstance(f, QuietStorageErrors) for f in log.filters):
        log.addFilter(QuietStorageErrors())


def check_writable(folder: str | Path) -> None:
    """Raise StorageFault if the local `folder` is read-only or has less than MIN_FREE_BYTES free (a shared URI,
    s3://..., is the storage service's to check)."""
    if "://" in str(folder):
        return
    if not os.access(folder, os.W_OK):
        raise StorageFault(folder, "is read-only")
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        raise StorageFault(folder, f"is full ({free / 2**20:.1f} MiB free, a sweep needs {MIN_FREE_BYTES // 2**20})")


def whole_files(root: str) -> pafs.FileSystem:
    """The local filesystem for Ray's storage under `root`, each file of an experiment's own folder written
    whole or not at all (see the module's text)."""
    return pafs.PyFileSystem(WholeFileHandler(root))


class WholeFileHandler(pafs.FileSystemHandler):
    """pyarrow's LocalFileSystem, but `open_output_stream` writes the files directly in an experiment folder
    (`root/<sweep>/<file>`) through a WholeFile."""

    def __init__(self, root: str):
        self.root, self.local = os.path.normpath(root), pafs.LocalFileSystem()

    def __eq__(self, other):
        return isinstance(other, WholeFileHandler) and other.root == self.root

    def __hash__(self):
        return hash((WholeFileHandler, self.root))

    def is_experiment_file(self, path: str) -> bool:
        return os.path.dirname(os.path.dirname(os.path.normpath(path))) == self.root

    def get_type_name(self):
        return "samat-whole-files"

    def normalize_path(self, path):
        return self.local.normalize_path(path)

    def get_file_info(self, paths):
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.local.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.local.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.local.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise OSError(errno.EPERM, "samat's results filesystem never empties the root folder")

    def delete_file(self, path):
        self.local.delete_file(path)

    def move(self, src, dest):
        self.local.move(src, dest)

    def copy_file(self, src, dest):
        if not self.is_experiment_file(dest):
            self.local.copy_file(src, dest)
            return
        whole = WholeFile(dest)
        try:
            with self.local.open_input_stream(src) as source:
                while chunk := source.read(2**20):
                    whole.write(chunk)
        except BaseException:
            whole.failed = True
            raise
        finally:
            whole.close()

    def open_input_stream(self, path):
        return self.local.open_input_stream(path)

    def open_input_file(self, path):
        return self.local.open_input_file(path)

    def open_output_stream(self, path, metadata):
        if self.is_experiment_file(path):
            return pa.PythonFile(WholeFile(path), mode="w")
        return self.local.open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path, metadata):
        return self.local.open_append_stream(path)


class WholeFile(io.RawIOBase):
    """A file written as `.<name>.<random>.partial` beside `path`, renamed to `path` when closed after every
    write succeeded; removed instead if any failed, or if it is dropped without being closed (a writer that
    gave up)."""

    file = None  # until the partial file is open (opening it can fail: then there is nothing to keep)
    failed = True

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        folder, name = os.path.split(path)
        self.partial = os.path.join(folder, f".{name}.{uuid.uuid4().hex[:8]}.partial")
        self.file = open(self.partial, "wb")  # noqa: SIM115 - closed by close()
        self.failed = False

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except BaseException:
            self.failed = True
            raise

    def __del__(self):
        self.failed = True  # only a file closed on purpose is kept
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self.file is not None:
                self.file.close()  # flushes: a full disk may fail here
            if not self.failed:
                os.replace(self.partial, self.path)
        except OSError:
            self.failed = True
            raise
        finally:
            if self.failed and self.file is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self.partial)
            super().close()
