"""Sweep specs: the shipped ones load; bad ones fail with one line naming the field path and the value."""

import optuna
import pytest

from sweeps.space import SearchSpace, searched_params, train_config
from sweeps.spec import SpecError, available_specs, load_spec, validate_spec
from tests.conftest import tiny_spec

GOOD = {
    "name": "t",
    "models": ["small_cnn"],
    "methods": {"sgd": {}, "sam": {"rho": {"low": 0.01, "high": 0.5}}},
}


def test_shipped_specs_load():
    assert {"quick", "cifar10", "cifar10_arch", "cifar100", "tinyimagenet"} <= set(available_specs())
    for name in available_specs():
        spec = load_spec(name)
        assert 2 <= len(spec.objectives) <= 3 and list(spec.directions)[0] == "clean_acc"
    quick = load_spec("quick")
    assert (
        quick.dataset == "digits"
        and quick.search.trials >= 12
        and set(quick.methods) >= {"sgd", "sam", "at", "fast_at"}
    )
    paper = load_spec("cifar10")
    assert paper.models == ["preact_resnet18"] and paper.train["epochs"] == 100 and paper.train["lr"] == 0.1


def test_an_objective_that_is_one_part_of_a_mean_is_measured_every_epoch():
    spec = validate_spec(
        {
            **GOOD,
            "final_attacks": ["corrupt_paper9_3"],
            "objectives": [{"metric": "clean_acc"}, {"metric": "corruption_acc/fog_3"}],
        }
    )
    assert "corrupt_paper9_3" in spec.base_config()["epoch_attacks"]


def test_defaults_give_clean_and_objective_attack():
    spec = validate_spec(GOOD)
    assert [(o.metric, o.direction) for o in spec.objectives] == [
        ("clean_acc", "max"),
        ("robust_acc/pgd_linf_2of255", "max"),
    ]
    assert spec.search.sampler == "nsga2" and spec.methods["sgd"] == {}


@pytest.mark.parametrize(
    "change,where",
    [
        ({"colour": "red"}, "colour"),
        ({"methods": {"sam": {"rho": -0.1}}}, "spec.yaml: methods.sam.rho: -0.1 is not allowed"),
        ({"methods": {"at": {"eps": {"low": 0.1, "high": 1.5}}}}, "spec.yaml: methods.at.eps: 1.5 is not allowed"),
        ({"methods": {}}, "methods"),
        ({"methods": {"sgd": {"rho": 0.1}}}, "spec.yaml: methods.sgd.rho: sgd takes no 'rho'"),
        ({"methods": {"adam": {}}}, "methods.adam"),
        ({"models": ["resnet50"]}, "models.0=resnet50"),
        ({"models": []}, "models"),
        ({"search": {"sampler": "cmaes"}}, "search.sampler=cmaes"),
        ({"search": {"trials": 0}}, "search.trials=0"),
        ({"objectives": [{"metric": "clean_acc"}] * 4}, "2 or 3 objectives, got 4"),
        ({"objectives": [{"metric": "clean_acc"}]}, "2 or 3 objectives, got 1"),
        (
            {"objectives": [{"metric": "clean_acc"}, {"metric": "robust_acc/pgd_linf_9of255"}]},
            "'robust_acc/pgd_linf_9of255' is not a metric this sweep reports (add pgd_linf_9of255 to final_attacks)",
        ),
        (
            {"objectives": [{"metric": "clean_acc"}, {"metric": "corruption_acc/paper9_3"}]},
            "'corruption_acc/paper9_3' is not a metric this sweep reports (add corrupt_paper9_3 to final_attacks)",
        ),
        (
            {"objectives": [{"metric": "clean_acc"}, {"metric": "corruption_acc/fog_9"}]},
            "(unknown corruption 'corrupt_fog_9'",
        ),
        (
            {"objectives": [{"metric": "clean_acc", "direction": "up"}, {"metric": "test_loss"}]},
            "objectives.0.direction",
        ),
        ({"methods": {"sam": {"rho": [0.01, 0.1]}}}, "sam.rho=[0.01, 0.1]: a list is not a parameter: a range is"),
        ({"train": {"lr": [0.01, 0.1]}}, "train.lr=[0.01, 0.1]: a list is not a parameter"),
        ({"train": {"lr": {"low": 0.5, "high": 0.1}}}, "low (0.5) must be below high (0.1)"),
        ({"train": {"lr": {"low": 0, "high": 0.1, "log": True}}}, "log range needs low > 0"),
        ({"train": {"rho": 0.1}}, "spec.yaml: train.rho: set it at the top of the spec or under methods"),
        ({"train": {"epochs": 0}}, "spec.yaml: train.epochs: 0 is not allowed"),
        ({"train": {"optimiser": "adam"}}, "spec.yaml: train.optimiser: unknown training field 'optimiser'"),
        ({"train": {"step_schedule": "paper"}}, "step_schedule: set it at the top of the spec or under methods"),
        ({"methods": {"sam": {"norm": "l2"}}}, "spec.yaml: methods.sam.norm: sam takes no 'norm'"),
        ({"methods": {"fast_at": {"epochs": 0}}}, "spec.yaml: methods.fast_at.epochs: 0 is not allowed"),
        (
            {"methods": {"at": {"step_schedule": "paper", "alpha": 0.01}}},
            "spec.yaml: methods.at: alpha: step_schedule paper",
        ),
        (
            {"methods": {"sam": {"rho": {"linf": 0.1, "l2": 0.2}}}},
            "spec.yaml: methods.sam.rho: per-norm values are for",
        ),
        ({"methods": {"at": {"eps": {"linf": 0.01, "l2": 2.0}}}}, "spec.yaml: methods.at.eps: 2.0 is not allowed"),
        ({"per_model": {"mlp": {"lr": 0.01}}}, "per_model.mlp: mlp is not among the spec's models"),
        ({"per_model": {"small_cnn": {"rho": 0.1}}}, "per_model.small_cnn.rho: set it at the top"),
        ({"per_model": {"small_cnn": {"optimizer": "lbfgs"}}}, "per_model.small_cnn.optimizer: 'lbfgs' is not"),
        (
            {"methods": {"sgd": {"lr": 0.05}}, "per_model": {"small_cnn": {"lr": 0.01}}},
            "per_model.small_cnn.lr: methods.sgd also sets lr",
        ),
        ({"objective_attack": "pgd_linf"}, "unknown attack 'pgd_linf'"),
        ({"resources": {"gpu": -1}}, "resources.gpu=-1"),
        ({"name": "bad name!"}, "name='bad name!'"),
    ],
)
def test_bad_specs_name_the_field_and_value(change, where):
    with pytest.raises(SpecError) as e:
        validate_spec({**GOOD, **change}, "spec.yaml")
    message = str(e.value)
    assert "\n" not in message and message.startswith("spec.yaml: ") and where in message, message
    for field, value in change.items():  # the entry at fault is named, not the whole mapping holding it
        assert not (isinstance(value, dict) and value) or f"{field}={value!r}" not in message, message


def test_bad_files(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nmodels: [small_cnn\n")
    with pytest.raises(SpecError, match=r"broken.yaml: not valid YAML at line \d"):
        load_spec(str(broken))
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="a spec is a mapping"):
        load_spec(str(listing))
    code = tmp_path / "code.yaml"
    code.write_text("name: !!python/object/apply:os.system ['touch pwned']\nmodels: [small_cnn]\n")
    with pytest.raises(SpecError):  # safe_load refuses to build objects: no code runs
        load_spec(str(code))
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec("no_such_spec")


def test_conditional_parameters_only_appear_for_their_method():
    spec = validate_spec(
        {
            **GOOD,
            "models": ["small_cnn", "mlp"],
            "train": {"lr": {"low": 0.01, "high": 0.1, "log": True}},
            "methods": {
                "sgd": {},
                "sam": {"rho": {"low": 0.01, "high": 0.5}},
                "at": {"eps": {"low": 0.01, "high": 0.1}, "norm": "l2", "attack_steps": 3},
                "sam_at": {"rho": {"low": 0.1, "high": 0.2}, "eps": 0.05},
            },
        }
    )
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=1))
    space = SearchSpace(spec)
    seen = {}
    for _ in range(40):
        trial = study.ask()
        constants = space(trial)
        method = trial.params["method"]
        seen.setdefault(method, set()).add(frozenset(trial.params))
        namespaced = {k.split(".")[0] for k in [*trial.params, *constants] if "." in k}
        assert namespaced <= {method}, (method, trial.params, constants)
        study.tell(trial, [0.5, 0.5])
    assert seen["sgd"] == {frozenset({"model", "method", "lr"})}
    assert seen["sam"] == {frozenset({"model", "method", "lr", "sam.rho"})}
    assert seen["at"] == {frozenset({"model", "method", "lr", "at.eps"})}  # norm and steps are constants
    assert seen["sam_at"] == {frozenset({"model", "method", "lr", "sam_at.rho"})}


def sample(spec, n=60, seed=1):
    """n trials of the spec's space: (trial params, the decoded TrainConfig, searched_params) each."""
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=seed))
    space, rows = SearchSpace(spec), []
    for _ in range(n):
        trial = study.ask()
        config = space(trial) | trial.params  # as Ray merges them
        rows.append((dict(trial.params), train_config(config), searched_params(config, spec)))
        study.tell(trial, [0.5, 0.5])
    return rows


def test_per_model_fields_apply_to_every_method_of_that_model():
    spec = validate_spec(
        {
            **GOOD,
            "models": ["small_cnn", "mlp"],
            "methods": {"sgd": {}, "sam": {"rho": {"low": 0.01, "high": 0.5}}},
            "train": {"lr": {"low": 0.01, "high": 0.1, "log": True}, "schedule": "piecewise"},
            "per_model": {"mlp": {"optimizer": "adam", "lr": 0.001, "schedule": "cosine"}},
        }
    )
    seen = set()
    for params, cfg, searched in sample(spec):
        seen.add((cfg.model, cfg.method))
        if cfg.model == "mlp":  # fixed for the model whatever the method; lr is not searched for it
            assert (cfg.optimizer, cfg.lr, cfg.schedule) == ("adam", 0.001, "cosine") and "lr" not in params
        else:
            assert cfg.optimizer == "sgd" and cfg.schedule == "piecewise" and 0.01 <= cfg.lr <= 0.1
            assert "lr" in params and searched["lr"] == cfg.lr
    assert seen == {(m, k) for m in ("small_cnn", "mlp") for k in ("sgd", "sam")}


def test_a_method_overrides_shared_training_fields_for_its_trials_only():
    spec = validate_spec(
        {
            **GOOD,
            "methods": {"sgd": {}, "fast_at": {"eps": 0.1, "epochs": 3, "schedule": "cyclic", "lr": 0.2}},
            "train": {"epochs": 10, "lr": {"low": 0.01, "high": 0.1}, "schedule": "piecewise"},
        }
    )
    assert spec.max_epochs == 10
    for params, cfg, _ in sample(spec, n=30):
        if cfg.method == "fast_at":
            assert (cfg.epochs, cfg.schedule, cfg.lr, cfg.eps) == (3, "cyclic", 0.2, 0.1) and "lr" not in params
        else:
            assert (cfg.epochs, cfg.schedule) == (10, "piecewise") and 0.01 <= cfg.lr <= 0.1
    longer = validate_spec({**GOOD, "methods": {"sgd": {"epochs": 30}}, "train": {"epochs": 10}})
    assert longer.max_epochs == 30  # MO-ASHA's max_t covers a method's own epochs


def test_eps_ranges_per_norm_follow_the_trials_norm():
    spec = load_spec("cifar10")
    at = spec.methods["at"]
    assert at["step_schedule"] == "paper" and {"sam_at", "fast_at"} <= set(spec.methods)
    norms = set()
    for params, cfg, searched in sample(spec, n=80):
        if cfg.method != "at":
            continue
        norms.add(cfg.norm)
        low, high = (1 / 255, 8 / 255) if cfg.norm == "linf" else (16 / 255, 128 / 255)
        assert low * 0.99 <= cfg.eps <= high * 1.01, (cfg.norm, cfg.eps)
        assert f"at.eps.{cfg.norm}" in params and searched["eps"] == cfg.eps and searched["norm"] == cfg.norm
        assert cfg.step_schedule == "paper" and cfg.alpha is None  # the step rule (test_step) resolves both from ε
    assert norms == {"linf", "l2"}


def test_final_audit_and_the_name_recorded_sweeps_have():
    """`final: audit` runs `samat frontier audit`; sweeps recorded before the rename stored `final: certify`, which
    still reads (reseeding and auditing them re-read their spec)."""
    assert validate_spec(tiny_spec(final="audit")).final == "audit"
    assert validate_spec(tiny_spec(final="certify")).final == "audit"
    with pytest.raises(SpecError, match="final"):
        validate_spec(tiny_spec(final="prove"))
