"""What a study searches, as Optuna's own distributions: each model's default space, narrowed or widened by
--search_space, with every value checked by the setting's own config field (its argparse type or choices).

Spaces of comparable size: every model searches the same four shared dimensions (learning rate, weight
decay, dropout, embedding size) and its structure, a width and a depth of four values each: Quixer's qubits
and QSVT degree (the polynomial's degree is how many times tokens mix, as layers are for the classical
models), the LSTM's hidden size and layers, the Transformer's and FNet's feed-forward width and layers. The
bottleneck control has one structural setting, its width (`features`, 3 x the qubits of the Quixer it
controls: the four widths of Quixer's qubit range); a study of the control fixes it with --features. Other
settings keep their config's default unless --search_space names them.

The training scope (--search_scope training) searches only the learning rate, weight decay and dropout, the
same three dimensions for every model, at sizes fixed by --search_space or the config's defaults: a study that
cannot afford trials of the space's largest models (an LSTM of 3 x 256 trains at 0.5 steps/s on one CPU thread)
can still tune how every model is trained, with the same budget.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from ..errors import UserError
from ..models import config_class
from ..runio import read_json
from ..training import TrainConfig

# Rates searched on a log scale (a --search_space range of one of these is log-scaled too).
LOG_SCALED = frozenset({"lr", "weight_decay", "init_std"})
# Training settings a --search_space may name besides the model's own config fields.
TRAINING = ("lr", "weight_decay", "warmup_steps", "grad_clip")


def _float(name: str, low: float, high: float) -> FloatDistribution:
    return FloatDistribution(low, high, log=name in LOG_SCALED)


SHARED: dict[str, BaseDistribution] = {
    "lr": _float("lr", 1e-4, 1e-2),
    "weight_decay": _float("weight_decay", 1e-5, 1e-1),
    "dropout": _float("dropout", 0.0, 0.3),
    "embedding_dim": CategoricalDistribution((32, 64, 128, 256)),
}
_DEPTH = IntDistribution(1, 4)
_FFN = CategoricalDistribution((64, 128, 256, 512))
STRUCTURE: dict[str, dict[str, BaseDistribution]] = {
    "quixer": {"qubits": IntDistribution(3, 6), "qsvt_degree": IntDistribution(1, 4)},
    "lstm": {"hidden_dim": CategoricalDistribution((32, 64, 128, 256)), "num_layers": _DEPTH},
    "transformer": {"ffn_dim": _FFN, "num_layers": _DEPTH},
    "fnet": {"ffn_dim": _FFN, "num_layers": _DEPTH},
    "bottleneck": {"features": IntDistribution(9, 18, step=3)},
}
MODELS = tuple(STRUCTURE)
TRAINING_SCOPE = ("lr", "weight_decay", "dropout")
SCOPES = ("model", "training")


def default_space(model: str, scope: str = "model") -> dict[str, BaseDistribution]:
    """The model's default search space: the shared dimensions, then its structure; or, in the training
    scope, the training dimensions alone."""
    space = {**SHARED, **STRUCTURE[model]}
    return space if scope == "model" else {name: space[name] for name in TRAINING_SCOPE}


def searchable(model: str) -> dict[str, dataclasses.Field]:
    """Every setting --search_space may name for `model` (its config's fields, then the training rates),
    each with the config field whose metadata checks its values."""
    fields = {item.name: item for item in dataclasses.fields(config_class(model))}
    fields.update({item.name: item for item in dataclasses.fields(TrainConfig) if item.name in TRAINING})
    return fields


def suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """Draw `name` from `distribution` through the trial's suggest_* call of its kind."""
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, step=distribution.step,
                                 log=distribution.log)
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(name, distribution.low, distribution.high, step=distribution.step,
                                   log=distribution.log)
    raise TypeError(f"{name}: no suggest call for {type(distribution).__name__}")


def describe(distribution: BaseDistribution) -> str:
    """A distribution as metrics.json and the report show it."""
    if isinstance(distribution, CategoricalDistribution):
        return f"one of {list(distribution.choices)}"
    kind = "int" if isinstance(distribution, IntDistribution) else "float"
    step = f" step {distribution.step}" if distribution.step not in (None, 1) else ""
    return f"{kind} in [{distribution.low}, {distribution.high}]{step}{' (log)' if distribution.log else ''}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def checked(name: str, item: dataclasses.Field, value: Any) -> Any:
    """`value` converted as the flag --NAME would convert it, or a one-line error: the check is the config
    field's own (a switch takes true or false, a field with choices one of them, a number its argparse type)."""
    meta = item.metadata
    if isinstance(item.default, bool):
        if isinstance(value, bool):
            return value
        raise UserError(f"--search_space: {name}={value!r}: expected true or false")
    if "choices" in meta:
        if not isinstance(value, bool) and value in meta["choices"]:
            return value
        raise UserError(f"--search_space: {name}={value!r}: choose from {list(meta['choices'])}")
    kind = meta["type"]
    if not _is_number(value):
        raise UserError(f"--search_space: {name}={value!r}: expected {kind!r}")
    try:
        return kind(value)
    except argparse.ArgumentTypeError as exc:
        raise UserError(f"--search_space: {name}: {exc}") from None


def _integer(item: dataclasses.Field) -> bool:
    """Whether the field's argparse type makes whole numbers (cli's typed numbers carry their cast)."""
    return getattr(item.metadata.get("type"), "cast", None) is int


def _override(name: str, item: dataclasses.Field, value: Any) -> BaseDistribution | None:
    """The distribution a --search_space entry asks for; None when it fixes the setting to one value."""
    if isinstance(value, list):
        if not value:
            raise UserError(f"--search_space: {name}: empty list; give a range [low, high], choices or one value")
        values = [checked(name, item, v) for v in value]
        if len(values) == 2 and all(_is_number(v) for v in value):
            low, high = values
            if not low < high:
                raise UserError(f"--search_space: {name} range [{low}, {high}]: low must be below high")
            if _integer(item):
                return IntDistribution(low, high)
            if name in LOG_SCALED and low <= 0:
                raise UserError(f"--search_space: {name} range [{low}, {high}] is log-scaled; low must be > 0")
            return _float(name, low, high)
        return CategoricalDistribution(tuple(dict.fromkeys(values)))
    if isinstance(value, dict) or value is None:
        raise UserError(f"--search_space: {name}={value!r}: give a value, a range [low, high] or a list of choices")
    checked(name, item, value)
    return None


def _read_overrides(text: str) -> dict[str, Any]:
    if text.lstrip().startswith("{"):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"--search_space: not valid JSON ({exc.msg} at column {exc.colno})") from exc
    elif Path(text).is_file():
        values = read_json(text, "--search_space file")
    else:
        raise UserError(f"--search_space {text}: neither a JSON file nor inline JSON such as '{{\"qubits\": [4, 6]}}'")
    if not isinstance(values, dict):
        raise UserError("--search_space: expected a JSON object mapping setting names to ranges, choices or values")
    return values


def load_search_space(text: str | None, model: str, settings: dict[str, Any] | None = None, scope: str = "model",
                      ) -> tuple[dict[str, BaseDistribution], dict[str, Any]]:
    """The model's default space in `scope` changed by --search_space (inline JSON or a JSON file) and by the
    model's own settings given as flags (`settings`, fixed): the searched distributions and the fixed values."""
    settings = dict(settings or {})
    space = {name: d for name, d in default_space(model, scope).items() if name not in settings}
    overrides = _read_overrides(text) if text else {}
    fields = searchable(model)
    unknown = [key for key in overrides if key not in fields]
    if unknown:
        raise UserError(f"--search_space: unknown key(s) {', '.join(unknown)} for --model {model}; "
                        f"valid keys: {', '.join(fields)}")
    twice = [key for key in overrides if key in settings]
    if twice:
        raise UserError(f"--search_space: {', '.join(twice)} also given as --{' --'.join(twice)}; give each once")
    fixed: dict[str, Any] = settings
    for name, value in overrides.items():
        distribution = _override(name, fields[name], value)
        if distribution is None:
            fixed[name] = checked(name, fields[name], value)
            space.pop(name, None)
        else:
            space[name] = distribution
    return space, fixed
