"""What a row of the report is called: the model's name as a reader knows it, controls named by what they
control, and the settings that tell apart variants which would otherwise share a name in one track.

A label's `base` is the same for every training fraction of a variant (a scaling series is named by it); its
`detail` is what the run chose for itself (the count models' order), shown in the results tables only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol

from ..errors import UserError
from ..formats.results import ModelResult

COUNT_MODELS = frozenset({"ngram", "markov"})  # counts: no training to converge, the same result whatever the seed
NAMES = {"quixer": "Quixer", "lstm": "LSTM", "transformer": "Transformer", "fnet": "FNet", "bottleneck": "bottleneck control", "ngram": "n-gram",
         "markov": "nucleotide Markov"}
# markov's model_config "tokens" when its k-mer probabilities are summed within each token (the cluster track).
SUMMED_TOKENS = "k-mer probabilities summed per token"


@dataclass(frozen=True)
class Name:
    base: str
    detail: str = ""
    control: bool = False  # a control for Quixer's circuit (the same interface without a trained circuit)


def _config(result: ModelResult, key: str, folder: Path) -> Any:
    if key not in result.model_config:
        raise UserError(f"{folder / 'metrics.json'}: model_config has no '{key}' (a {result.model} result "
                        "of another version); rerun its stage")
    return result.model_config[key]


def model_name(result: ModelResult, folder: Path) -> Name:
    """The row name of one result; a control's name says what it is. A result without the keys its name needs
    is a one-line UserError naming its file."""
    model = result.model
    if model == "bottleneck":
        return Name(f"bottleneck control (classical, {_config(result, 'features', folder)} features)", control=True)
    if model == "quixer" and _config(result, "freeze_circuit", folder):
        return Name("Quixer, frozen circuit", control=True)
    if model == "markov":
        if _config(result, "tokens", folder) == SUMMED_TOKENS:
            return Name("nucleotide Markov, summed over clusters", f"order {_config(result, 'order', folder)}")
        return Name(NAMES[model], f"order {_config(result, 'order', folder)}")
    if model == "ngram":
        return Name(NAMES[model], f"order {_config(result, 'order', folder)}")
    return Name(NAMES.get(model, model))


def tuning_name(model: str, flags: dict[str, Any]) -> str:
    """A tuner's row name from its model and its best trial's trainer flags (best_params.json)."""
    if model == "quixer" and flags.get("freeze_circuit"):
        return "Quixer, frozen circuit"
    return NAMES.get(model, model)


class Labelled(Protocol):
    name: Name
    tuned: bool
    variant: dict[str, Any]
    base: str
    label: str


def _join(name: str, tags: list[str]) -> str:
    return f"{name} ({', '.join(tags)})" if tags else name


def assign_labels(groups: Iterable[Labelled]) -> None:
    """Set each group's `base` (its name, "tuned" when trained with a tuner's best_params.json, and the
    settings that differ between groups of that name, where a group was given them) and `label` (base plus the
    run's own detail)."""
    by_name: dict[tuple[str, bool], list[Labelled]] = {}
    for group in groups:
        by_name.setdefault((group.name.base, group.tuned), []).append(group)
    for (name, _), members in by_name.items():
        variants = {json.dumps(g.variant, sort_keys=True, default=str) for g in members}
        keys = sorted({k for g in members for k in g.variant}) if len(variants) > 1 else []
        differing = [k for k in keys if len({json.dumps(g.variant.get(k), default=str) for g in members}) > 1]
        for group in members:
            tags = ["tuned"] * group.tuned + [f"{k}={group.variant[k]}" for k in differing if k in group.variant]
            group.base = _join(name, tags)
            group.label = _join(name, tags + ([group.name.detail] if group.name.detail else []))
