"""The structure as checked contracts: layers and no cycles (import-linter), lint and format (ruff), every
`--help`, torch-free commands, and one vocabulary shared by the training core and the sweep layer."""

import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from sweeps.space import SearchSpace, method_key, searched_params, train_config
from sweeps.spec import available_specs, load_spec
from tests.conftest import SAMAT
from trainables.vocabulary import (
    METHOD_PARAMS,
    METHODS,
    AttackSpec,
    CorruptionSpec,
    metric_on_test,
    parse_evaluation,
    reported_metrics,
    robust_metrics,
)

ROOT = Path(__file__).parent.parent
BIN = Path(sys.executable).parent


def run(*argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, **kwargs)


def test_import_contracts_hold():
    result = run(str(BIN / "lint-imports"))
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_ruff_lint_and_format_are_clean():
    lint = run(str(BIN / "ruff"), "check", ".")
    assert lint.returncode == 0, lint.stdout[-3000:]
    fmt = run(str(BIN / "ruff"), "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout[-3000:]


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["train"],
        ["sweep"],
        ["frontier"],
        *(["frontier", a] for a in ("list", "show", "export", "plot", "compare", "ui", "audit", "reseed", "sync")),
    ],
)
def test_every_help_exits_0(command):
    result = run(SAMAT, *command, "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage: samat") and not result.stderr


def test_frontier_list_and_help_import_no_torch(tiny_sweep):
    probe = (
        "import sys\n"
        "from sweeps.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "heavy = sorted(m for m in ('torch', 'torchattacks', 'torchvision', 'ray') if m in sys.modules)\n"
        "print('heavy:', heavy)\n"
        "sys.exit(code)\n"
    )
    listed = run(sys.executable, "-c", probe, "frontier", "list", "--tracking-uri", tiny_sweep.tracking_uri)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "tiny" in listed.stdout and "heavy: []" in listed.stdout
    helped = run(sys.executable, "-c", probe.replace("main(sys.argv[1:])", "0"))
    assert "heavy: []" in helped.stdout


def test_frontier_list_reads_the_sweep_index_while_it_matches_the_database(tiny_sweep):
    """`samat frontier list` on a sqlite store needs no MLflow while the index beside the database was taken from
    it as it is; any write to the database sends it back to MLflow, which refreshes the index."""
    from mlflow import MlflowClient

    from analysis.tracking import SweepStore

    probe = (
        "import sys\n"
        "from sweeps.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "print('mlflow imported:', 'mlflow' in sys.modules)\n"
        "sys.exit(code)\n"
    )
    uri = tiny_sweep.tracking_uri

    def listing() -> str:
        listed = run(sys.executable, "-c", probe, "frontier", "list", "--tracking-uri", uri)
        assert listed.returncode == 0 and "tiny" in listed.stdout, listed.stderr[-2000:]
        return listed.stdout

    listing()  # whatever the index's state, this one leaves it current
    assert "mlflow imported: False" in listing()
    parent = SweepStore(uri).sweep_parent(tiny_sweep.name)[1]
    MlflowClient(uri).set_tag(parent.info.run_id, "samat.test", "a write the index has not seen")
    assert "mlflow imported: True" in listing()
    assert "mlflow imported: False" in listing()


@pytest.mark.parametrize("name", available_specs())
def test_every_metric_a_spec_may_name_is_reported_by_its_trials(name):
    """The spec's objective vocabulary and the training core's reported metrics are one list: a spec's objectives
    (timings included) are metrics its trials report per epoch on validation images, also as NaN when a trial
    diverges, and every attack it names is reported on the test images under `test/` (alone, or as the worst case
    of its cascade of radii)."""
    spec = load_spec(name)
    study = optuna.create_study(directions=["maximize"] * len(spec.directions))
    for _ in range(8):
        config = SearchSpace(spec)(trial := study.ask())
        config |= trial.params
        cfg = train_config(config)
        assert set(spec.directions) <= set(cfg.metric_names) and not any(m.startswith("test/") for m in spec.directions)
        evaluations = [parse_evaluation(a) for a in [spec.objective_attack, *spec.final_attacks]]
        attacks = [a for a in evaluations if isinstance(a, AttackSpec)]
        tested = robust_metrics(attacks, standalone=cfg.epoch_attack_specs)  # a cascade's radii: robust_acc_upto/
        corrupted = [m for e in evaluations if isinstance(e, CorruptionSpec) for m in e.metrics]  # a mean's parts too
        assert {metric_on_test(m) for m in [*tested.values(), *corrupted]} <= set(cfg.metric_names)
        assert set(cfg.metric_names) == set(reported_metrics(cfg.epoch_attacks, cfg.eval_attacks))


def test_method_parameters_encode_and_decode_once():
    spec = load_spec("quick")
    study = optuna.create_study(directions=["maximize", "maximize"])
    seen = set()
    for _ in range(30):
        config = SearchSpace(spec)(trial := study.ask())
        config |= trial.params
        method = config["method"]
        cfg, params = train_config(config), searched_params(config, spec)
        seen.add(method)
        for field in spec.methods[method]:
            assert field in METHOD_PARAMS[method]
            assert getattr(cfg, field) == config[method_key(method, field)]
            if field in params:
                assert params[field] == config[method_key(method, field)]
        assert not any(k.partition(".")[0] in METHODS and k.partition(".")[0] != method for k in trial.params)
    assert seen == set(spec.methods)
