"""Every command's places come from one resolver: flag, else environment, else the embedded default."""

from pathlib import Path

import pytest

from trainables.settings import Settings, SettingsError, data_dir, results_location, tracking_uri


def test_results_come_from_the_flag_else_samat_results_else_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SAMAT_RESULTS", raising=False)
    assert results_location() == str(tmp_path / "results")
    monkeypatch.setenv("SAMAT_RESULTS", "runs")
    assert results_location() == str(tmp_path / "runs")
    assert results_location("elsewhere") == str(tmp_path / "elsewhere")
    monkeypatch.setenv("SAMAT_RESULTS", "s3://bucket/sweeps/")
    assert results_location() == "s3://bucket/sweeps"


def test_the_tracking_store_defaults_to_sqlite_in_the_results_folder_and_never_beside_remote_ones(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("SAMAT_RESULTS", "runs")
    assert Settings.resolve() == Settings(
        str(tmp_path / "runs"), f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}", results_from="SAMAT_RESULTS"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri() == "http://127.0.0.1:5000" and tracking_uri("http://head:5000") == "http://head:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with pytest.raises(SettingsError, match="--tracking-uri.*remote"):
        Settings.resolve("s3://bucket/sweeps")


def test_a_relative_data_folder_is_taken_against_samat_data_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SAMAT_DATA_ROOT", raising=False)
    assert data_dir("data") == str(tmp_path / "data")
    monkeypatch.setenv("SAMAT_DATA_ROOT", "/mnt/datasets")
    assert data_dir("data") == "/mnt/datasets/data" and data_dir("/abs/cifar") == "/abs/cifar"
    assert data_dir("~/x") == str(Path.home() / "x")
