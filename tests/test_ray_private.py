"""Ray's private parts that samat patches and reads (sweeps.ray_private): each patch takes effect where Ray acts
on it, and a Ray where one does not hold, or of a version outside the tested range, is refused in one line before
a sweep starts. Each undoing below is real: the patched name put back, a field or constant taken away."""

import types
from pathlib import Path

import pytest
import ray
from ray._private import ray_constants
from ray.train._internal import storage as ray_storage
from ray.tune.search.optuna import OptunaSearch

from sweeps import ray_private
from sweeps.cli import main
from sweeps.ray_private import RAY_BELOW, RAY_FROM, RAY_UPLOAD, RayMismatch, check_ray
from sweeps.run import run_sweep
from sweeps.spec import validate_spec
from sweeps.trainable import configure_tune
from sweeps.whole_files import upload_whole
from tests.conftest import tiny_spec, write_spec

ROOT = Path(__file__).resolve().parent.parent
LINE = f"ray {ray.__version__} (samat is tested with ray>={RAY_FROM},<{RAY_BELOW}): "


@pytest.fixture
def patched(monkeypatch):
    """samat's patches as a sweep's driver sets them, Ray's own put back after the test."""
    monkeypatch.setattr(ray_storage, "_upload_to_fs_path", ray_storage._upload_to_fs_path)
    for name in ray_private.RAY_CONSTANT_READERS:
        monkeypatch.setattr(ray_constants, name, getattr(ray_constants, name))
    for variable in (
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER",
        "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS",
        "RAY_AIR_NEW_OUTPUT",
        "TUNE_GLOBAL_CHECKPOINT_S",
    ):
        monkeypatch.delenv(variable, raising=False)
    configure_tune()
    ray_private.keep_ray_on_loopback()
    ray_private.skip_uv_worker_hook()


def test_tunes_syncer_copies_through_samats_upload(patched, tmp_path):
    """Tune's own copy of a staging folder (its StorageContext's syncer, as at each state save) writes each file
    beside its target and renames it on: the target is a new file (inode), never the old one rewritten in place
    as Ray's copy does."""
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "experiment_state.json").write_text('{"new": 1}')
    storage = ray_storage.StorageContext(storage_path=str(tmp_path), experiment_dir_name="sweep")
    target = Path(storage.experiment_fs_path) / "experiment_state.json"
    target.write_text('{"old": 1}')
    old_inode = target.stat().st_ino
    assert storage.syncer.sync_up(str(staging), storage.experiment_fs_path)
    storage.syncer.wait()
    assert target.read_text() == '{"new": 1}' and target.stat().st_ino != old_inode
    assert not list(target.parent.glob(".*.partial"))
    check_ray(upload_whole)  # and the start-up check finds it so


def test_check_refuses_a_ray_whose_syncer_does_not_copy_through_samats_upload(patched, monkeypatch):
    monkeypatch.setattr(ray_storage, "_upload_to_fs_path", RAY_UPLOAD)  # the patch undone
    with pytest.raises(RayMismatch) as refused:
        check_ray(upload_whole)
    assert str(refused.value) == (
        f"{LINE}Tune's syncer copies with ray.train._internal.storage._upload_to_fs_path, not "
        f"sweeps.whole_files.upload_whole (sweeps/ray_private.py)"
    )


def test_each_constant_reads_back_as_set_where_ray_reads_it(patched):
    assert ray._private.services.ray_constants.ENABLE_RAY_CLUSTER is False  # how get_node_ip_address reads it
    assert ray._private.worker.ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV is False  # and the uv hook
    assert ray_private.ray_constant("ENABLE_RAY_CLUSTER") is False


def test_setting_a_constant_its_reader_does_not_see_is_refused(patched, monkeypatch):
    # a Ray whose get_node_ip_address reads a copy of the constants, not the module samat sets
    monkeypatch.setattr(ray._private.services, "ray_constants", types.SimpleNamespace(ENABLE_RAY_CLUSTER=True))
    with pytest.raises(RayMismatch) as refused:
        ray_private.keep_ray_on_loopback()
    assert str(refused.value) == (
        f"{LINE}ray._private.services does not read ray_constants.ENABLE_RAY_CLUSTER as set (sweeps/ray_private.py)"
    )


@pytest.mark.parametrize("name", ["ENABLE_RAY_CLUSTER", "RAY_ENABLE_UV_RUN_RUNTIME_ENV"])
def test_check_refuses_a_ray_without_a_constant_samat_sets(patched, monkeypatch, name):
    monkeypatch.delattr(ray_constants, name)  # a Ray that renamed it: setting it would do nothing
    reader = ray_private.RAY_CONSTANT_READERS[name].__name__
    with pytest.raises(RayMismatch, match=f"ray_constants.{name} in {reader}: no such switch to set"):
        check_ray(upload_whole)


@pytest.mark.parametrize("field", ["_ot_study", "_ot_trials", "_completed_trials"])
def test_check_refuses_an_optuna_search_without_a_field_samat_reads(patched, monkeypatch, field):
    ray_init = OptunaSearch.__init__

    def renaming_init(self, *args, **kwargs):  # an OptunaSearch that keeps the field under another name
        ray_init(self, *args, **kwargs)
        setattr(self, f"{field}_renamed", self.__dict__.pop(field))

    monkeypatch.setattr(OptunaSearch, "__init__", renaming_init)
    with pytest.raises(RayMismatch) as refused:
        check_ray(upload_whole)
    assert str(refused.value).startswith(f"{LINE}OptunaSearch.{field} is NoneType, not the ")


def test_check_refuses_an_optuna_search_that_does_not_note_the_trials_it_told(patched, monkeypatch):
    ray_complete = OptunaSearch.on_trial_complete

    def forgetting_complete(self, trial_id, result=None, error=False):
        ray_complete(self, trial_id, result, error)
        self._completed_trials.discard(trial_id)

    monkeypatch.setattr(OptunaSearch, "on_trial_complete", forgetting_complete)
    with pytest.raises(RayMismatch, match="OptunaSearch._completed_trials does not hold a trial OptunaSearch told"):
        check_ray(upload_whole)


@pytest.mark.parametrize("version", ["2.59.2", "2.61.0", "3.0.0.dev0", "2.6.0", "unknown"])
def test_check_refuses_a_ray_outside_the_tested_range(patched, version):
    with pytest.raises(RayMismatch) as refused:
        check_ray(upload_whole, version)
    assert str(refused.value).startswith(
        f"ray {version} is installed, but samat is tested with ray>={RAY_FROM},<{RAY_BELOW}, whose private parts"
    )


@pytest.mark.parametrize("version", ["2.60.0", "2.60.3"])
def test_check_takes_a_ray_in_the_tested_range(patched, version):
    check_ray(upload_whole, version)


def test_the_tested_range_is_pyprojects_bound_on_ray():
    assert f'"ray[tune]>={RAY_FROM},<{RAY_BELOW}"' in (ROOT / "pyproject.toml").read_text()


def test_a_sweep_on_an_untested_ray_is_refused_before_anything_is_written(patched, tmp_path, monkeypatch):
    monkeypatch.setattr(ray, "__version__", "2.61.0")
    with pytest.raises(RayMismatch, match=r"^ray 2\.61\.0 is installed, but samat is tested with ray>=2\.60,<2\.61"):
        run_sweep(validate_spec(tiny_spec()), results_dir=str(tmp_path / "results"))
    assert list(tmp_path.iterdir()) == [] and not ray.is_initialized()


def test_samat_sweep_on_an_untested_ray_exits_2_with_one_line(patched, capsys, tmp_path, monkeypatch):
    spec_file, results = write_spec(tmp_path, name="untested"), tmp_path / "results"
    monkeypatch.setattr(ray, "__version__", "2.61.0")
    assert main(["sweep", str(spec_file), "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("samat sweep: error: ray 2.61.0 is installed, but samat is tested with"), err
    assert not results.exists() and not ray.is_initialized()  # not even the MLflow store
