"""The search space, and the one encoding of method parameters in a trial's config.

Optuna's define-by-run space: model, method, then only the chosen method's parameters, keyed `method.field`
(`sam.rho` and `sam_at.rho` are separate distributions, so a conditional space never shares a name). A trial's
config is those keys plus the spec's constants; `train_config` decodes it into a TrainConfig and
`searched_params` into what tells trials apart."""

from __future__ import annotations

from typing import Any

from optuna.trial import Trial

from sweeps.spec import Choice, Param, Range, SweepSpec
from trainables.config import TrainConfig


def method_key(method: str, field: str) -> str:
    """`sam`, `rho` -> `sam.rho`: the config key of a method's parameter."""
    return f"{method}.{field}"


def train_config(config: dict) -> TrainConfig:
    """A trial's config -> TrainConfig: the chosen method's `method.field` keys lose their prefix, other
    methods' keys are dropped, plain keys are training fields."""
    fields = {}
    for key, value in config.items():
        owner, _, field = key.rpartition(".")
        if owner == config["method"]:
            fields[field] = value
        elif not owner and key in TrainConfig.model_fields:
            fields[key] = value
    return TrainConfig(**fields)


def searched_params(config: dict, spec: SweepSpec) -> dict[str, Any]:
    """What tells trials apart: model, method, and the searched values (method ones without their prefix);
    constants are left out."""
    method = config.get("method")
    params = {"model": config.get("model"), "method": method}
    params |= {k: config.get(k) for k, v in spec.train.items() if isinstance(v, (Range, Choice))}
    params |= {
        name: config.get(method_key(method, name))
        for name, v in spec.methods.get(method, {}).items()
        if isinstance(v, (Range, Choice))
    }
    return params


class SearchSpace:
    """A class, not a closure, because Ray pickles the searcher (and this with it) with the experiment state."""

    def __init__(self, spec: SweepSpec):
        self.spec = spec

    def __call__(self, trial: Trial) -> dict[str, Any]:
        spec, config = self.spec, dict(self.spec.base_config())
        config["model"] = suggest(trial, "model", Choice(choices=list(spec.models)))
        method = config["method"] = suggest(trial, "method", Choice(choices=list(spec.methods)))
        for name, value in spec.train.items():
            config[name] = suggest(trial, name, value)
        for name, value in spec.methods[method].items():
            config[method_key(method, name)] = suggest(trial, method_key(method, name), value)
        # only searched values are Optuna parameters; constants ride along in the returned dict
        return {k: v for k, v in config.items() if k not in trial.params}


def suggest(trial: Trial, name: str, value: Param):
    if isinstance(value, Range):
        if value.is_int:
            return trial.suggest_int(name, value.low, value.high, log=value.log)
        return trial.suggest_float(name, value.low, value.high, log=value.log)
    if isinstance(value, Choice):
        return trial.suggest_categorical(name, value.choices) if len(value.choices) > 1 else value.choices[0]
    return value
