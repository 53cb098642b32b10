import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trainables.config import TrainConfig
from trainables.data import load_digits_data
from trainables.run import Run, fit

# Modules that share a costly session fixture, each group one unit of work for xdist, so the fixture runs once.
SHARED_FIXTURE = {
    **dict.fromkeys(("test_sweep", "test_records", "test_structure"), "tiny_sweep"),
    **dict.fromkeys(("test_evaluate", "test_audit"), "adversarially_trained_digits"),
}
# Every module by the time its unit of work took in the suite, longest first: xdist's two workers take units of
# work in this order, so the last to start is a short one (a module not listed goes last).
SLOWEST_FIRST = [
    "test_random_kills",
    "test_sweep",
    "test_records",
    "test_structure",
    "test_tracking_outage",
    "test_evaluate",
    "test_audit",
    "test_storage_faults",
    "test_moasha_sweep",
    "test_corruption_sweep",
    "test_trusted_fronts",
    "test_faults",
    "test_cluster",
    "test_cli_train",
    "test_run",
    "test_moasha",
]


def module_of(nodeid: str) -> str:
    return Path(nodeid.split("::")[0]).stem


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(module_of(item.nodeid), len(rank)))  # stable: a module keeps its order


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """xdist's module-at-a-time scheduling (a module's fixtures run once), in the order above, with the modules of
    a shared fixture as one unit. (Not xdist_group marks: xdist 3.8 groups by rewriting node ids, which pytest 9.2
    no longer reads, so the marks this suite had were ignored and fixtures ran once per worker.)"""
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # keep the collection's order, not xdist's count of tests

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = module_of(nodeid)
            return SHARED_FIXTURE.get(module, module)

    return ByModule(config, log)


def pytest_configure(config):
    """Torch runs on one thread in the test processes: the torch-only tests (and the session and module fixtures
    that train and attack their models, which run before any function-scoped fixture) share 2 cores with the
    other worker's sweeps, and torch's default of a thread per core made both spin for each other. Ray's trial
    processes set their own threads (sweeps.trainable)."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    return load_digits_data()


@pytest.fixture(scope="session")
def trained_digits_model(digits):
    """small_cnn trained with plain SGD on digits for 10 epochs (about a second on 2 cores)."""
    config = TrainConfig(epochs=10, eval_attacks=())
    run = Run(config, digits)
    while run.epoch < config.epochs:
        run.train_epoch()
    run.model.zero_grad(set_to_none=True)  # so tests can see an attack leave no gradient behind
    run.model.eval()
    return run.model


ROBUST_DIGITS = dict(epochs=10, eps=0.1, attack_steps=5, eval_attacks=("pgd_linf_0.1",))


@pytest.fixture(scope="session")
def adversarially_trained_digits(digits):
    """small_cnn adversarially trained on digits (PGD-5 at ε = 0.1, 10 epochs): (fit's metrics, the model in eval
    mode). test_evaluate compares it with SGD and test_audit attacks it: one unit of work, so it trains once."""
    trained = {}
    config = TrainConfig(method="at", **ROBUST_DIGITS)
    metrics = fit(config, on_epoch=lambda _, run: trained.update(run=run), data=digits)
    return metrics, trained["run"].model.eval()


@pytest.fixture(scope="session")
def robust_digits_metrics(digits, adversarially_trained_digits):
    """sgd and at trained alike, evaluated with the same PGD attack: {method: metrics}."""
    return {"sgd": fit(TrainConfig(method="sgd", **ROBUST_DIGITS), data=digits), "at": adversarially_trained_digits[0]}


def tiny_spec(**changes) -> dict:
    """A sweep spec small enough for tests: digits, 1-2 epochs, three methods with conditional parameters."""
    spec = {
        "name": "tiny",
        "dataset": "digits",
        "models": ["small_cnn", "mlp"],
        "methods": {
            "sgd": {},
            "sam": {"rho": {"low": 0.01, "high": 0.3, "log": True}},
            "at": {"eps": {"low": 0.05, "high": 0.2}, "attack_steps": 2},
        },
        "train": {"epochs": 2, "lr": {"low": 0.02, "high": 0.1}},
        "objective_attack": "pgd_linf_0.1",
        "eval_n": 100,
        "search": {"sampler": "random", "seed": 3, "trials": 3, "concurrency": 2},
        "resources": {"cpu": 1},
    }
    spec.update(changes)
    return spec


def random_sweep(name: str, model: str, epochs: int, trials: int, seed: int, concurrency: int = 2) -> dict:
    """`tiny_spec`'s changes for the fault tests' sweeps: `trials` random draws of one model, `epochs` each."""
    return {
        "name": name,
        "models": [model],
        "train": {"epochs": epochs, "lr": {"low": 0.02, "high": 0.1}},
        "search": {"sampler": "random", "seed": seed, "trials": trials, "concurrency": concurrency},
    }


def write_spec(folder: Path, **changes) -> Path:
    """`tiny_spec(**changes)` as `<folder>/<name>.yaml`, for `samat sweep SPEC`."""
    spec = tiny_spec(**changes)
    path = folder / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
    """One real 3-trial sweep (Ray Tune, Optuna, MLflow on sqlite) shared by the tests that read its records."""
    from sweeps.run import run_sweep
    from sweeps.spec import validate_spec

    results = tmp_path_factory.mktemp("results")
    return run_sweep(validate_spec(tiny_spec()), results_dir=results, num_cpus=2)


SAMAT = shutil.which("samat", path=str(Path(sys.executable).parent))


def start_sweep(spec_file: Path, results: Path) -> subprocess.Popen:
    """`samat sweep SPEC --results RESULTS` as a separate process (so a test can signal or kill it), its
    output unbuffered on one pipe."""
    return subprocess.Popen(
        [SAMAT, "sweep", str(spec_file), "--results", str(results)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def resume_sweep(spec_file: Path, results: Path) -> subprocess.CompletedProcess:
    """`samat sweep SPEC --results RESULTS --resume` to the end; it must succeed."""
    resumed = subprocess.run(
        [SAMAT, "sweep", str(spec_file), "--results", str(results), "--resume"],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    return resumed


def results_of(trial_dir: Path) -> list[dict]:
    """The results a trial reported, from its result.json (a line still being written is skipped)."""
    lines = (trial_dir / "result.json").read_text().splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def epochs_of(trial_dir: Path) -> list[int]:
    return [r.get("epoch") for r in results_of(trial_dir)]


def last_result(trial_dir: Path) -> dict:
    return (results_of(trial_dir) or [{}])[-1]


def epochs_by_process(results: list[dict], epochs: int) -> list[list[int]]:
    """The epochs of a trial's results (`results_of`), one list per process that trained it, after asserting that
    each process continued from the last checkpoint of the one before, never from scratch, and the last reached
    `epochs`. A process starts at the epoch after the one its predecessor reported last, or at that epoch itself:
    Tune registers a reported checkpoint one round trip to the worker after the report, so a worker killed (or a
    sweep interrupted) inside that round trip leaves the checkpoint before as the last, and the epoch is trained
    again."""
    processes: dict[int, list[int]] = {}
    for r in results:
        processes.setdefault(r["pid"], []).append(r["epoch"])
    runs = list(processes.values())
    for before, run in zip([[0], *runs], runs):
        assert run[0] in (before[-1], before[-1] + 1) and run == list(range(run[0], run[-1] + 1)), runs
    assert runs[0][0] == 1 and runs[-1][-1] == epochs, runs
    return runs


def trial_dirs(sweep_dir: Path) -> list[Path]:
    return [p for p in sweep_dir.iterdir() if (p / "result.json").is_file()] if sweep_dir.is_dir() else []


def finished_trials(sweep_dir: Path, epochs: int) -> int:
    """Trials whose result.json reached the last epoch: read-only, so polling never races the sweep's writes."""
    return sum(1 for p in trial_dirs(sweep_dir) if epochs_of(p)[-1:] == [epochs])


def stop_leftovers_of(driver_pid: int) -> None:
    """Ray agents can outlive a SIGKILLed driver; stop exactly those of its session (the session folder's
    name ends with the driver's pid), and no other Ray on the machine."""
    session = re.compile(rf"/session_[\d_-]+_{driver_pid}(/|$)")  # session_<date>_<time>_<microseconds>_<pid>
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(session.search(os.readlink(fd)) for fd in (proc / "fd").iterdir()):
                os.kill(int(proc.name), signal.SIGKILL)
        except OSError:
            continue


def assert_stores_agree(results: Path, name: str, epochs: int, trials: int) -> dict[str, tuple[float, float]]:
    """After a sweep of `trials` trials of `epochs` epochs (objectives clean and PGD accuracy) in `results` ended:
    Ray finished every trial; Optuna holds exactly those as COMPLETE, with Ray's values, and nothing RUNNING;
    MLflow holds one FINISHED run per trial (any other KILLED) with Ray's values and each epoch exactly once; the
    front MLflow tags is the front of Ray's own results. Returns Ray's values by trial id."""
    import optuna
    from mlflow import MlflowClient

    from analysis.pareto import pareto_ranks

    sweep_dir = results / name
    finished = [last_result(d) for d in trial_dirs(sweep_dir) if epochs_of(d)[-1:] == [epochs]]
    ray_values = {r["trial_id"]: (r["clean_acc"], r["robust_acc/pgd_linf_0.1"]) for r in finished}
    assert len(ray_values) == trials

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len(complete) == trials
    for told, held in zip(sorted(tuple(t.values) for t in complete), sorted(ray_values.values())):
        assert told == pytest.approx(held)

    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], "tags.`samat.role` = 'trial'")
    done = [r for r in runs if r.info.status == "FINISHED"]
    assert sorted(r.data.tags["ray_trial_id"] for r in done) == sorted(ray_values)
    assert all(r.info.status == "KILLED" for r in runs if r.info.status != "FINISHED")
    for run in done:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "epoch")]
        assert sorted(steps) == list(range(1, epochs + 1)), steps  # every epoch exactly once
        clean, robust = ray_values[run.data.tags["ray_trial_id"]]
        assert run.data.metrics["clean_acc"] == pytest.approx(clean)
        assert run.data.metrics["robust_acc/pgd_linf_0.1"] == pytest.approx(robust)

    ids = sorted(ray_values)
    ranks = pareto_ranks([list(ray_values[i]) for i in ids], ["max", "max"])
    assert {i for i, rank in zip(ids, ranks) if rank == 1} == {
        r.data.tags["ray_trial_id"] for r in done if r.data.tags["pareto_front"] == "true"
    }
    return ray_values
