"""Every private part of Ray that samat patches or reads, in one place, each checked before a sweep starts.

Ray 2.60 has no public API for what these do (each docstring says what it reaches into and why), and Ray may
change its private parts in any release. So samat is bounded to the Ray it was tested with (RAY_FROM up to
RAY_BELOW, the bound pyproject.toml keeps), and `check_ray` refuses, in one line, a Ray outside that range or one
whose parts no longer hold as samat expects, before Tune starts: rather than a sweep that misbehaves unseen,
with copies cut short by a kill, a Ray listening on every interface, or Optuna told COMPLETE for a failed trial.

Tune's own copies have one `_upload_to_fs_path`, in ray.train._internal.storage; Ray 2.60's second one, in
ray.train.v2._internal.execution.storage, belongs to Ray Train v2 and is no part of Tune's syncer."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import optuna
import pyarrow.fs
import ray
from ray._private import ray_constants, services, worker
from ray.train._internal import storage as ray_storage
from ray.tune.result import AUTO_RESULT_KEYS as RAY_AUTO_RESULT_KEYS
from ray.tune.search.optuna import OptunaSearch

from trainables.usage import UsageError

RAY_FROM, RAY_BELOW = "2.60", "2.61"  # the Ray samat is tested with: pyproject.toml's ray[tune]>=2.60,<2.61
TESTED = f"ray>={RAY_FROM},<{RAY_BELOW}"

RAY_UPLOAD = ray_storage._upload_to_fs_path
"""Ray's own copy of a local file or folder onto a pyarrow filesystem, the one Tune's syncer calls unless
`route_tune_uploads` replaced it: what sweeps.whole_files hands the copies it does not make itself."""

TUNE_RESULT_KEYS = RAY_AUTO_RESULT_KEYS
"""The keys Tune adds to every result (time_total_s, training_iteration, ...; ray.tune.result is documented nowhere):
the recorder leaves them out of a trial's MLflow metrics. Should they change, Tune's bookkeeping shows up among the
metrics, which tests/test_records.py's checks of a trial's metric names catch."""

# Ray's constants that samat sets, each read when Ray acts on it, as `ray_constants.<name>`, in the module named
RAY_CONSTANT_READERS = {"ENABLE_RAY_CLUSTER": services, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": worker}


class RayMismatch(UsageError):
    """The Ray installed is not one samat was tested with, or a private part samat uses did not hold in it."""


def route_tune_uploads(upload: Callable) -> None:
    """Have Tune's syncer copy its staging folders with `upload` (in this process) in place of RAY_UPLOAD.

    Reaches into `ray.train._internal.storage._upload_to_fs_path`: Tune's `_FilesystemSyncer._sync_up_command`
    looks that name up in its own module at each copy, so replacing it there reroutes every copy after. Ray has
    no hook for how a staging folder is copied; the public route, a Python `storage_filesystem`, costs a sweep
    2.5 times its time (sweeps.whole_files). If Ray changes it, these break:
    tests/test_ray_private.py::test_tunes_syncer_copies_through_samats_upload and
    tests/test_sweep.py::test_interrupted_sweep_resumes_without_rerunning_finished_trials."""
    ray_storage._upload_to_fs_path = upload


def tune_upload() -> Callable:
    """The function Tune's syncer calls at its next copy, resolved the way Tune resolves it: the copy command a
    `_FilesystemSyncer` (the syncer of Tune's StorageContext) gives for a local filesystem."""
    syncer = ray_storage._FilesystemSyncer(storage_filesystem=pyarrow.fs.LocalFileSystem())
    command, _ = syncer._sync_up_command(local_path="", uri="")
    return command


def keep_ray_on_loopback() -> None:
    """Ray's switch for a single-machine Ray (the default on Windows and macOS), for this process and its children:
    a local Ray that keeps 127.0.0.1 as its node address (sweeps.ray_start).

    Reaches into `ray._private.ray_constants.ENABLE_RAY_CLUSTER`, which `ray._private.services.get_node_ip_address`
    reads at each call. Ray computes it from RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER when it is imported, and no public
    API sets it later; children read the variable. If Ray changes it, these break:
    tests/test_faults.py::test_local_ray_listens_on_loopback_only and
    tests/test_ray_private.py::test_each_constant_reads_back_as_set_where_ray_reads_it."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    set_ray_constant("ENABLE_RAY_CLUSTER", False)


def skip_uv_worker_hook() -> None:
    """Turn off Ray's uv hook in this process: a driver started by `uv run` no longer makes each worker `uv run`.

    Reaches into `ray._private.ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV`, which
    `ray._private.worker._maybe_modify_runtime_env` reads at each `ray.init`. Ray computes it from the variable
    of that name when it is imported, and no public API sets it later. If Ray changes it, this breaks:
    tests/test_ray_private.py::test_each_constant_reads_back_as_set_where_ray_reads_it."""
    set_ray_constant("RAY_ENABLE_UV_RUN_RUNTIME_ENV", False)


def ray_constant(name: str) -> object:
    """Ray's constant `name` as the module that acts on it reads it (None where that module reads no such thing)."""
    return getattr(getattr(RAY_CONSTANT_READERS[name], "ray_constants", None), name, None)


def set_ray_constant(name: str, value: bool) -> None:
    """Set Ray's constant `name`, refused unless the module that acts on it then reads `value`."""
    setattr(ray_constants, name, value)
    if ray_constant(name) is not value:
        raise RayMismatch(mismatch(f"{RAY_CONSTANT_READERS[name].__name__} does not read ray_constants.{name} as set"))


def optuna_study(searcher: OptunaSearch) -> optuna.Study:
    """The Optuna study that Ray's OptunaSearch asks and tells: its `_ot_study` (Ray exposes none).

    Breaks, if Ray changes it: tests/test_moasha.py::test_optuna_hears_pruned_for_a_stopped_trial_fail_for_a_failed_one
    and tests/test_ray_private.py::test_check_refuses_an_optuna_search_without_a_field_samat_reads."""
    return searcher._ot_study


def optuna_told(searcher: OptunaSearch, trial_id: str) -> bool:
    """Whether Ray's OptunaSearch has told Optuna how Ray trial `trial_id` ended: its `_completed_trials`.

    Ray's own `on_trial_complete` refuses a second telling by that set, and exposes it nowhere. Breaks, as
    `optuna_study` does."""
    return trial_id in searcher._completed_trials


def tell_optuna(searcher: OptunaSearch, trial_id: str, state: optuna.trial.TrialState) -> None:
    """Tell Optuna that Ray trial `trial_id` ended in `state`, without values, as Ray's `on_trial_complete` tells
    it (through `_ot_trials`, the Optuna trial asked for each Ray trial), and mark it told. Ray's own telling
    decides the state itself; no public API tells one of the caller's choice. Breaks, as `optuna_study` does."""
    optuna_study(searcher).tell(searcher._ot_trials[trial_id], state=state)
    searcher._completed_trials.add(trial_id)


def check_ray(upload: Callable, version: str | None = None) -> None:
    """Refuse (RayMismatch, one line) a Ray `version` (the installed one by default) outside the tested range, or
    one where what samat patched and reads does not hold: Tune's syncer copying with `upload`, each constant of
    RAY_CONSTANT_READERS read by its module (so that setting it takes effect), and OptunaSearch's fields."""
    version = version or ray.__version__
    if not release(RAY_FROM) <= release(version) < release(RAY_BELOW):
        raise RayMismatch(
            f"ray {version} is installed, but samat is tested with {TESTED}, whose private parts it patches and "
            f"reads (sweeps/ray_private.py): install a Ray in that range (`uv sync` installs the locked one)"
        )
    for problem in (upload_problem(upload), constants_problem(), optuna_problem()):
        if problem:
            raise RayMismatch(mismatch(problem, version))


def release(version: str) -> tuple[int, ...]:
    """The release numbers a version starts with: "2.60.0rc1" -> (2, 60, 0); () for none."""
    numbers = re.match(r"\d+(\.\d+)*", version)
    return tuple(int(n) for n in numbers.group().split(".")) if numbers else ()


def mismatch(problem: str, version: str | None = None) -> str:
    return f"ray {version or ray.__version__} (samat is tested with {TESTED}): {problem} (sweeps/ray_private.py)"


def upload_problem(upload: Callable) -> str | None:
    try:
        used = tune_upload()
    except (AttributeError, TypeError) as e:
        return f"Tune's syncer gives no copy command where samat reads it ({e})"
    if used is not upload:
        return f"Tune's syncer copies with {qualified(used)}, not {qualified(upload)}"
    return None


def constants_problem() -> str | None:
    unread = [
        f"ray_constants.{name} in {module.__name__}"
        for name, module in RAY_CONSTANT_READERS.items()
        if not isinstance(ray_constant(name), bool)
    ]
    return f"{', '.join(unread)}: no such switch to set" if unread else None


def optuna_problem() -> str | None:
    """What does not hold of OptunaSearch's fields, on a searcher of one parameter (in memory) that proposes a
    trial and is told its result: a study, a dict of the Optuna trial asked for each Ray trial, and a set of the
    Ray trials told, which Ray's own telling adds to."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the probe's study and trial are nobody's news
    try:
        probe = OptunaSearch({"x": optuna.distributions.FloatDistribution(0, 1)}, metric="m", mode="max")
        for field, kind in {"_ot_study": optuna.Study, "_ot_trials": dict, "_completed_trials": set}.items():
            if not isinstance(getattr(probe, field, None), kind):
                found = type(getattr(probe, field, None)).__name__
                return f"OptunaSearch.{field} is {found}, not the {kind.__name__} samat reads"
        probe.suggest("probe")
        if not isinstance(probe._ot_trials.get("probe"), optuna.Trial):
            return "OptunaSearch._ot_trials does not map the Ray trial it proposed to its Optuna trial"
        probe.on_trial_complete("probe", {"m": 0.5})
        if not optuna_told(probe, "probe"):
            return "OptunaSearch._completed_trials does not hold a trial OptunaSearch told Optuna of"
        return None
    except (AttributeError, KeyError, TypeError) as e:
        return f"OptunaSearch fails as samat uses it ({type(e).__name__}: {e})"
    finally:
        optuna.logging.set_verbosity(verbosity)


def qualified(function: Callable) -> str:
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', function)}"
