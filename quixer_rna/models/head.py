"""The head Quixer and its classical control share: a few features (3n Pauli expectations, or the control's
bottleneck) -> Linear(features, E), ReLU, Linear(E, V), optionally standardising the features first.

Near-identity circuits start with expectations that barely vary between windows (a spread of 0.01-0.03 on
raw 6-mers), so the head first sees almost a constant; standardising them across the batch lets it see their
differences from the first step. The control gets the same option so the two stay comparable."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from torch import nn


def normalise_features_field() -> Any:
    """The config switch, one definition for both models."""
    return field(default=False, metadata={
        "help": "standardise each feature across the batch (BatchNorm1d; running statistics at evaluation) "
                "before the head"})


def feature_head(features: int, embedding_dim: int, vocab_size: int, normalise: bool) -> nn.Sequential:
    """Its last layer is the output layer (whose bias the trainer starts at the train unigram)."""
    layers: list[nn.Module] = [nn.BatchNorm1d(features)] if normalise else []
    return nn.Sequential(*layers, nn.Linear(features, embedding_dim), nn.ReLU(), nn.Linear(embedding_dim, vocab_size))
