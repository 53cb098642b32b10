"""The search space, and the one encoding of method parameters in a trial's config.

Optuna's define-by-run space: model, method, then only the chosen method's parameters, keyed `method.field`
(`sam.rho` and `sam_at.rho` are separate distributions, so a conditional space never shares a name); a method's
override of a training field is keyed the same way (`fast_at.epochs`), a per-norm value gets one Optuna parameter
per norm (`at.eps.l2`), and `per_model:` fields are plain constants chosen with the model. A trial's
config is those keys plus the spec's constants; `train_config` decodes it into a TrainConfig and
`searched_params` into what tells trials apart."""

from __future__ import annotations

from typing import Any

from optuna.trial import Trial

from sweeps.spec import Choice, Param, PerNorm, Range, SweepSpec, is_searched
from trainables.config import TrainConfig


def method_key(method: str, field: str) -> str:
    """`sam`, `rho` -> `sam.rho`: the config key of a method's parameter."""
    return f"{method}.{field}"


def train_config(config: dict) -> TrainConfig:
    """A trial's config -> TrainConfig: plain keys are training fields; the chosen method's `method.field` keys
    lose their prefix and win over plain ones (a method's own epochs over the spec's); other keys (other methods',
    per-norm branches such as `at.eps.l2`) are dropped."""
    fields = {key: value for key, value in config.items() if "." not in key and key in TrainConfig.model_fields}
    for key, value in config.items():
        owner, _, field = key.rpartition(".")
        if owner == config["method"]:
            fields[field] = value
    return TrainConfig(**fields)


def searched_params(config: dict, spec: SweepSpec) -> dict[str, Any]:
    """What tells trials apart: model, method, and the searched values (method ones without their prefix);
    constants are left out."""
    method = config.get("method")
    params = {"model": config.get("model"), "method": method}
    params |= {k: config.get(k) for k, v in spec.train.items() if isinstance(v, (Range, Choice)) and k in config}
    params |= {
        name: config.get(method_key(method, name)) for name, v in spec.methods.get(method, {}).items() if is_searched(v)
    }
    return params


class SearchSpace:
    """A class, not a closure, because Ray pickles the searcher (and this with it) with the experiment state."""

    def __init__(self, spec: SweepSpec):
        self.spec = spec

    def __call__(self, trial: Trial) -> dict[str, Any]:
        spec, config = self.spec, dict(self.spec.base_config())
        model = config["model"] = suggest(trial, "model", Choice(choices=list(spec.models)))
        method = config["method"] = suggest(trial, "method", Choice(choices=list(spec.methods)))
        own, per_model = spec.methods[method], spec.per_model.get(model, {})
        for name, value in spec.train.items():
            if name not in own and name not in per_model:  # a method's or a model's own value wins
                config[name] = suggest(trial, name, value)
        config |= per_model
        for name, value in sorted(own.items(), key=lambda item: isinstance(item[1], PerNorm)):  # norm first
            key = method_key(method, name)
            if isinstance(value, PerNorm):
                norm = config.get(method_key(method, "norm"), TrainConfig.model_fields["norm"].default)
                config[key] = suggest(trial, f"{key}.{norm}", value.for_norm(norm))
            else:
                config[key] = suggest(trial, key, value)
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
