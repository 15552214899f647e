"""Every trainable model maps context tokens int64 [B, T] to next-token logits [B, V], and is built by name
through `build_model`, so one training loop, one checkpoint format and one tuner serve all.

A model registers itself with `@register("name", ConfigClass)`. Its configuration is a dataclass living
beside it (field metadata: "help", and an argparse "type" or "choices") that holds every default and check:
the trainer scripts turn its fields into flags, the tuner searches them by name, and checkpoints store it as
a plain dict. The model is constructed as `cls(vocab_size, context_length, config)`.

Optional hooks a model may define, which the training loop calls when present (it knows no model by name):
    on_epoch_start(epoch: int) -> dict           e.g. layerwise growth; returns what to log
    extra_metrics() -> dict[str, Tensor]         means over the last forward's windows (e.g. Quixer's
                                                 post-selection probability), averaged per evaluation
    auxiliary_loss() -> Tensor | None            a term added to the training loss (e.g. Quixer's
                                                 post-selection regulariser)
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

from ..errors import UserError

_REGISTRY: dict[str, tuple[type, type]] = {}
# Modules that register models; imported on first use so a script only pays for what it builds.
_MODEL_MODULES = ("quixer_rna.models.quixer", "quixer_rna.models.classical", "quixer_rna.models.bottleneck")


def register(name: str, config: type) -> Callable[[type], type]:
    def decorator(cls: type) -> type:
        _REGISTRY[name] = (cls, config)
        return cls

    return decorator


def _load_all() -> None:
    for module in _MODEL_MODULES:
        importlib.import_module(module)


def available_models() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def _entry(name: str) -> tuple[type, type]:
    _load_all()
    if name not in _REGISTRY:
        raise UserError(f"--model {name}: unknown model; choose from {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def config_class(name: str) -> type:
    return _entry(name)[1]


def make_config(name: str, values: dict[str, Any] | Any) -> Any:
    """The model's config dataclass from a dict (unknown keys are a ValueError naming the valid ones), or a
    config given as such."""
    config_cls = config_class(name)
    if isinstance(values, config_cls):
        return values
    if dataclasses.is_dataclass(values):
        raise TypeError(f"{name}: expected a {config_cls.__name__}, got a {type(values).__name__}")
    valid = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise ValueError(f"{name}: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
    return config_cls(**values)


def config_dict(config: Any) -> dict[str, Any]:
    """A config as plain types (what checkpoints and metrics.json store)."""
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)


def build_model(name: str, vocab_size: int, context_length: int, config: dict[str, Any] | Any) -> Any:
    """Model `name` from its config, or from a dict of its config's fields (a checkpoint's record)."""
    cls, _ = _entry(name)
    return cls(vocab_size, context_length, make_config(name, config))
