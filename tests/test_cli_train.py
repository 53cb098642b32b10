"""`samat train`: the JSON result on digits, and one-line exit-2 errors for bad input."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sweeps.cli import main


def samat(*argv):
    return main(list(argv))


@pytest.mark.parametrize(
    "argv,names",
    [
        (["--rho", "-0.1"], "--rho=-0.1"),
        (["--rho", "abc"], "--rho=abc"),
        (["--eps", "1.5"], "--eps=1.5"),
        (["--eps", "-0.01"], "--eps=-0.01"),
        (["--method", "adamw"], "--method=adamw"),
        (["--model", "resnet50"], "--model=resnet50"),
        (["--dataset", "mnist"], "--dataset=mnist"),
        (["--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"], "--data-dir=/nonexistent/cifar"),
        (["--epochs", "0"], "--epochs=0"),
        (["--eval-attacks", "pgd_linf_9of2"], "pgd_linf_9of2"),
        (["--model", "wrn", "--depth", "27"], "depth"),
        (["--resume", "/nonexistent/ck.pt"], "--resume=/nonexistent/ck.pt"),
        (["--frobnicate", "1"], "--frobnicate"),
    ],
)
def test_bad_input_exits_2_with_one_line_naming_the_flag(capsys, argv, names, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = samat("train", *argv)
    except SystemExit as e:  # argparse's own errors (unknown flags) exit from inside the parser
        code = e.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and names in lines[0], err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_train_json_on_digits_reaches_the_clean_accuracy_goal(capsys):
    for method in ("sgd", "sam"):
        assert samat("train", "--method", method, "--rho", "0.05", "--epochs", "10", "--json") == 0
        metrics = json.loads(capsys.readouterr().out)
        assert metrics["clean_acc"] >= 0.95 and metrics["epochs"] == 10 and metrics["train_time_s"] > 0
        # the default final attacks: PGD at 2/255, then at 8/255 on what 2/255 left standing (the worst case of both)
        assert {"test/robust_acc/pgd_linf_2of255", "test/robust_acc_upto/pgd_linf_8of255"} <= set(metrics)
        assert metrics["test/clean_acc"] >= 0.95  # selected on validation, reported on test


def test_save_and_resume_flags(tmp_path, capsys):
    ck = tmp_path / "run.pt"
    assert samat("train", "--epochs", "2", "--save", str(ck), "--eval-attacks", "", "--json") == 0
    first = json.loads(capsys.readouterr().out)
    assert ck.is_file() and first["epochs"] == 2
    assert samat("train", "--epochs", "3", "--resume", str(ck), "--eval-attacks", "", "--json") == 0
    assert json.loads(capsys.readouterr().out)["epochs"] == 3
    bad = tmp_path / "bad.pt"
    bad.write_text("nope")
    assert samat("train", "--resume", str(bad)) == 2
    assert "bad.pt" in capsys.readouterr().err


def test_console_script_prints_a_table_and_json():
    exe = shutil.which("samat", path=str(Path(sys.executable).parent))
    assert exe, "the samat console script is installed with the project"
    table = subprocess.run(
        [exe, "train", "--epochs", "1", "--eval-attacks", "fgsm_linf_0.1"], capture_output=True, text=True, timeout=300
    )
    assert table.returncode == 0, table.stderr
    assert "clean_acc" in table.stdout and "robust_acc/fgsm_linf_0.1" in table.stdout
    bad = subprocess.run([exe, "train", "--rho", "-1"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--rho=-1" in bad.stderr
