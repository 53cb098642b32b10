"""Tune's copies into a local results folder, made whole-or-nothing.

At each state save (once a second) Tune copies its staging folder (in /tmp/ray: the experiment state, the
searcher's, each trial's result files) into the results folder, every file again, rewriting each in place. A
driver killed during a copy, or a disk that fills up in its middle, left the file it was writing cut short,
and an experiment state cut short cannot be resumed. `upload_whole` copies only what changed since the last
copy, each file under a hidden `.partial` name beside its own and renamed onto it once written in full: a reader,
a resumed sweep included, sees the old file or the new one, never a part.

Ray 2.60 offers no hook for this: `write_whole_files` puts `upload_whole` in place of the function Tune's syncer
looks up at each copy (sweeps.ray_private), in the driver (the only process that copies a staging folder; workers
write each checkpoint into a new folder). A public route, a Python `storage_filesystem` whose files are written
whole, costs each file several calls from pyarrow's threads into Python: measured, it made a 1,000-trial sweep
2.5 times longer (bench/scale.py). A URI (s3://...) needs none of this: an object store shows an object once it
is uploaded whole; such copies go through Ray's own function."""

from __future__ import annotations

import contextlib
import filecmp
import os
import shutil

import pyarrow.fs

from sweeps.ray_private import RAY_UPLOAD, route_tune_uploads

# results file -> the (inode, mtime, size) of the staging file last copied onto it: unchanged, it is not copied again
copied: dict[str, tuple[int, int, int]] = {}


def write_whole_files() -> None:
    """Have Tune's copies into local results folders go through `upload_whole` (in this process)."""
    route_tune_uploads(upload_whole)


def upload_whole(local_path: str, fs: pyarrow.fs.FileSystem, fs_path: str, exclude: list | None = None) -> None:
    """Ray's `_upload_to_fs_path`, with each file replaced whole, and only if it changed, on a local filesystem."""
    if exclude or not isinstance(fs, pyarrow.fs.LocalFileSystem):
        return RAY_UPLOAD(local_path, fs, fs_path, exclude)
    if os.path.isfile(local_path):
        return copy_whole(local_path, fs_path)
    for folder, _, names in os.walk(local_path):
        target = os.path.join(fs_path, os.path.relpath(folder, local_path))
        os.makedirs(target, exist_ok=True)
        for name in names:
            copy_whole(os.path.join(folder, name), os.path.join(target, name))


def copy_whole(source: str, target: str) -> None:
    """Copy `source` onto `target` through a `.partial` file beside it and a rename, unless it did not change
    since this process last copied it, or `target` holds its bytes already (after a resume)."""
    try:
        stat = os.stat(source)
    except FileNotFoundError:  # gone since the walk: one of Tune's own temporary files
        return
    seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    if copied.get(target) == seen or same_bytes(source, target):
        copied[target] = seen
        return
    folder, name = os.path.split(target)
    partial = os.path.join(folder, f".{name}.partial")
    try:
        shutil.copyfile(source, partial)
        os.replace(partial, target)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        if isinstance(e, FileNotFoundError) and not os.path.exists(source):
            return  # gone since the walk, as above
        raise
    copied[target] = seen


def same_bytes(source: str, target: str) -> bool:
    try:
        return filecmp.cmp(source, target, shallow=False)
    except OSError:  # no target yet
        return False
