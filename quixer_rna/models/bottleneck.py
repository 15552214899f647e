"""The classical control for Quixer's circuit: everything Quixer predicts passes through 3n numbers (the Pauli
expectations of n qubits) between a classical embedding and a classical head, which hold nearly all its
parameters. This model keeps that interface and replaces only the circuit: the same embedding (with dropout),
a learned position-weighted sum of the context embeddings (position weights as Quixer's LCU coefficients, the
only order signal either model has), a small layer onto `features` numbers squashed into [-1, 1] like
expectations, and Quixer's head (Linear(features, E), ReLU, Linear(E, V)). What Quixer gains over it is what
the circuit adds over a classical layer of the same width."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..cli import positive_int, rate
from . import register
from .head import feature_head, normalise_features_field


@dataclass
class BottleneckConfig:
    embedding_dim: int = field(default=128, metadata={"type": positive_int, "help": "token embedding size"})
    features: int = field(default=18, metadata={
        "type": positive_int,
        "help": "width of the bottleneck between mixer and head: 3 x the qubits of the Quixer it controls (18 for 6)"})
    dropout: float = field(default=0.1, metadata={"type": rate, "help": "dropout on the embedding"})
    normalise_features: bool = normalise_features_field()

    def __post_init__(self) -> None:
        if self.embedding_dim < 1 or self.features < 1:
            raise ValueError(f"embedding_dim and features must be at least 1, got {self.embedding_dim}, {self.features}")


@register("bottleneck", BottleneckConfig)
class BottleneckModel(nn.Module):
    def __init__(self, vocab_size: int, context_length: int, config: BottleneckConfig) -> None:
        super().__init__()
        embedding_dim, features = config.embedding_dim, config.features
        self.context_length = context_length
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.position_weights = nn.Parameter(torch.empty(context_length).uniform_(0.0, 1.0))
        self.mixer = nn.Linear(embedding_dim, features)
        self.head = feature_head(features, embedding_dim, vocab_size, config.normalise_features)
        nn.init.normal_(self.embedding.weight, 0.0, 1.0)

    @property
    def output_layer(self) -> nn.Linear:
        return self.head[-1]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 2 or tokens.shape[1] != self.context_length:
            raise ValueError(f"tokens must be [B, {self.context_length}], got {tuple(tokens.shape)}")
        weights = self.position_weights / self.position_weights.abs().sum().clamp_min(1e-12)  # L1-normalised, as b
        mixed = torch.einsum("btd,t->bd", self.dropout(self.embedding(tokens)), weights)
        return self.head(torch.tanh(self.mixer(mixed)))
