"""Every trainable model maps context tokens int64 [B, T] to next-token logits [B, V], and is built
by name through `build_model`, so one training loop, one checkpoint format and one tuner serve all.

A model class registers itself with `@register("name")`. It is constructed as
`cls(vocab_size=V, context_length=T, **config)` where `config` holds only plain types (it is stored
in checkpoints to refuse a resume with different sizes).
Optional hooks a model may define, which the trainer calls when present:
    on_epoch_start(epoch: int) -> dict   e.g. layerwise growth; returns what to log
    extra_metrics() -> dict[str, float]  e.g. Quixer's post-selection probability of the last forward
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from ..errors import UserError

_REGISTRY: dict[str, type] = {}
# Modules that register models; imported on first use so a script only pays for what it builds.
_MODEL_MODULES = ("quixer_rna.models.quixer", "quixer_rna.models.classical")


def register(name: str) -> Callable[[type], type]:
    def decorator(cls: type) -> type:
        _REGISTRY[name] = cls
        return cls

    return decorator


def _load_all() -> None:
    for module in _MODEL_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def available_models() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def build_model(name: str, vocab_size: int, context_length: int, config: dict[str, Any]) -> Any:
    _load_all()
    if name not in _REGISTRY:
        raise UserError(f"--model {name}: unknown model; choose from {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](vocab_size=vocab_size, context_length=context_length, **config)
