"""The results folder's storage faults: a disk that fills up or turns read-only while a sweep runs.

Tune writes its experiment state, each trial's result files and each checkpoint into the results folder, copying
every file again at each state save (once a second); each file is replaced whole (sweeps.whole_files), so a copy
onto a full disk fails and leaves the file before it. The sweep must still stop: `check_writable`, called by the
sweep's StorageGuard before each of Tune's steps (so before any state save), and the storage errors of any
write raise `StorageFault`, which stops the sweep when its folder cannot be written (read-only, or less than
MIN_FREE_BYTES free): one line naming the folder, everything written before kept, to be resumed once it can be
written again. Imports no Ray: the CLI checks a folder before a sweep starts."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path

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


class QuietStorageErrors(logging.Filter):
    """Drops two kinds of Tune's error logs, each with a traceback:
    - errors a full or read-only disk caused (a trial failing to write its checkpoint, Tune failing to delete an
      old one), since the sweep stops on them with one line of its own;
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
    """Filter (once per process) every log of Ray's through QuietStorageErrors: Ray's loggers (Tune's controller,
    Ray's storage functions, which log a failed delete of an old checkpoint themselves...) all print through the
    handlers of the `ray` logger."""
    for handler in logging.getLogger("ray").handlers:
        if not any(isinstance(f, QuietStorageErrors) for f in handler.filters):
            handler.addFilter(QuietStorageErrors())


def check_writable(folder: str | Path) -> None:
    """Raise StorageFault if the local `folder` is read-only or has less than MIN_FREE_BYTES free."""
    if not os.access(folder, os.W_OK):
        raise StorageFault(folder, "is read-only")
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        raise StorageFault(folder, f"is full ({free / 2**20:.1f} MiB free, a sweep needs {MIN_FREE_BYTES // 2**20})")
